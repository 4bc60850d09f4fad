//! The dicom-rs adapter: every transfer syntax decode does not decode
//! itself (JPEG lossless, JPEG-LS, JPEG 2000 and HTJ2K, deflated image
//! frames, ...) goes through dicom-pixeldata, one frame at a time.
//!
//! Before a frame reaches the third-party decoder, its codestream header is
//! checked against the DICOM header; after, the decoded bytes get the
//! bit-depth and colour treatment pydicom gives them.

use dicom_dictionary_std::tags;
use dicom_encoding::adapters::PixelDataObject;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;

use super::attrs::PixelAttrs;
use super::codec::{decoded_layout, FrameCodec, FrameSource, Frames};
use super::pixels::{read_frame, Stored};
use super::{j2k, jpeg, DecodeError};
use crate::dicom::ts::{Codestream, TsKind};

/// Decodes through dicom-pixeldata's transfer syntax registry.
pub(crate) struct LibraryCodec;

impl FrameCodec for LibraryCodec {
    fn open<'a>(
        &'a self,
        obj: &'a DefaultDicomObject,
        _a: &PixelAttrs,
        ts: &TsKind,
    ) -> Result<FrameSource<'a>, DecodeError> {
        Ok(Box::new(LibraryFrames { obj, ts: ts.clone() }))
    }
}

struct LibraryFrames<'a> {
    obj: &'a DefaultDicomObject,
    ts: TsKind,
}

impl Frames for LibraryFrames<'_> {
    // dicom-rs decodes at full size: `needed` is for a reduced-resolution
    // JPEG 2000 adapter to use.
    fn frame(&self, i: u32, a: &PixelAttrs, _needed: Option<(u32, u32)>) -> Result<Stored, DecodeError> {
        let (obj, ts) = (self.obj, &self.ts);
        check_codestream(obj, a, ts, i)?;
        let px = obj.decode_pixel_data_frame(i).map_err(DecodeError::Pixels)?;
        let is_j2k = ts.is_jpeg2000();
        let bits = if is_j2k {
            j2k_bits(obj, a, i)
        } else if ts.is_jpeg_ls() && !a.signed {
            // pydicom corrects JPEG-LS only for signed data.
            a.bits_allocated
        } else {
            a.bits_stored
        };
        let l = decoded_layout(a, bits);
        // Codecs other than JPEG 2000 (which applies the inverse colour
        // transform itself) hand back YBR as stored.
        read_frame(px.data(), 0, &l, a.photometric.is_ybr() && !is_j2k)
    }
}

/// JPEG 2000 codestreams record their own signedness and precision (SIZ).
/// When the signedness disagrees with PixelRepresentation, pydicom
/// re-interprets the low `precision` bits (this is what fixes
/// `J2K_pixelrep_mismatch.dcm`); otherwise it keeps the decoded values.
fn j2k_bits(obj: &DefaultDicomObject, a: &PixelAttrs, frame: u32) -> u16 {
    let siz = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.value().fragments())
        .and_then(|f| if f.len() == a.frames as usize { f.get(frame as usize) } else { f.first() })
        .and_then(|f| j2k::siz(f));
    match siz {
        Some(siz) if siz.signed != a.signed => siz.precision,
        Some(_) => a.bits_allocated,
        None => a.bits_stored,
    }
}

/// Checks that frame `i`'s codestream declares the image the DICOM header
/// describes, before a third-party decoder sees it: those decoders size
/// their buffers from the codestream's own header (up to 65535² samples
/// for JPEG, 2³²-1 per side for JPEG 2000), and dicom-rs's JPEG 2000 and
/// JPEG adapters copy a larger decoded image into a Rows x Columns buffer
/// with an unchecked slice index, which panics. The header's size has
/// already passed `max_pixels_per_frame`, so a codestream that matches it
/// is bounded too.
///
/// # Errors
/// The frame's codestream header is missing or disagrees with Rows,
/// Columns or SamplesPerPixel.
fn check_codestream(obj: &DefaultDicomObject, a: &PixelAttrs, ts: &TsKind, i: u32) -> Result<(), DecodeError> {
    if *ts == TsKind::DeflatedImageFrame {
        return check_inflated_frame(obj, a, i);
    }
    let Some(kind) = ts.codestream() else { return Ok(()) };
    // The bytes dicom-rs will hand to the decoder (None: it will fail to
    // find the frame itself, with its own error).
    let Some(data) = obj.frame_pixel_data(i) else { return Ok(()) };
    let (width, height, components) = if kind == Codestream::Jpeg2000 {
        let siz = j2k::siz(&data).ok_or_else(|| {
            DecodeError::Invalid(format!("JPEG 2000 frame {i}: no SIZ marker segment (image size) in the codestream"))
        })?;
        (siz.width, siz.height, siz.components)
    } else {
        let h = jpeg::scan_header(&data)?;
        // jpeg-decoder returns two bytes a sample above 8 bits, which the
        // adapter copies into a buffer sized by BitsAllocated (panics if 8).
        if kind == Codestream::JpegLossless && h.precision > 8 && a.bits_allocated < 16 {
            return Err(DecodeError::Invalid(format!(
                "JPEG lossless frame {i} has sample precision {}, over BitsAllocated {}",
                h.precision, a.bits_allocated
            )));
        }
        (u32::from(h.width), u32::from(h.height), h.component_ids.len())
    };
    if (width, height, components) != (a.cols, a.rows, usize::from(a.samples)) {
        return Err(DecodeError::Invalid(format!(
            "{} frame {i} declares {width}x{height} with {components} components, \
             but Columns x Rows is {}x{} with SamplesPerPixel {}",
            kind.label(),
            a.cols,
            a.rows,
            a.samples
        )));
    }
    Ok(())
}

/// dicom-rs inflates a Deflated Image Frame Compression fragment to its
/// end, however large; inflate it here first (discarding the bytes) and
/// refuse one that holds more than a frame.
fn check_inflated_frame(obj: &DefaultDicomObject, a: &PixelAttrs, i: u32) -> Result<(), DecodeError> {
    use std::io::Read;
    let Some(fragment) = obj.get(tags::PIXEL_DATA).and_then(|e| e.value().fragments()).and_then(|f| f.get(i as usize))
    else {
        return Ok(()); // dicom-rs reports the missing frame itself
    };
    let frame_bytes =
        (u64::from(a.rows) * u64::from(a.cols) * u64::from(a.samples) * u64::from(a.bits_allocated)).div_ceil(8);
    let mut inflated = flate2::read::DeflateDecoder::new(fragment.as_slice()).take(frame_bytes + 1);
    let n = std::io::copy(&mut inflated, &mut std::io::sink()).unwrap_or(0);
    if n > frame_bytes {
        return Err(DecodeError::Invalid(format!(
            "deflated frame {i} inflates to more than the {frame_bytes} bytes \
             Rows x Columns x SamplesPerPixel x BitsAllocated give"
        )));
    }
    Ok(())
}
