//! Where a frame's stored values come from, by transfer syntax.
//!
//! Native data is read straight from the element; RLE and JPEG
//! baseline/extended are decoded here frame by frame (see `rle.rs`,
//! `jpeg.rs`); everything else (JPEG lossless, JPEG-LS, JPEG 2000, ...)
//! goes through dicom-pixeldata one frame at a time, so a large
//! multi-frame object never holds more than one decoded frame.

use std::borrow::Cow;
use std::ops::Range;

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_encoding::adapters::PixelDataObject;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::attrs::{native_stream, Photometric, PixelAttrs, PixelElement};
use super::pixels::{read_frame, Endian, Layout, SampleKind, Stored};
use super::{fragments, jpeg, rle, DecodeError};
use crate::dicom::ts::{Codestream, TsKind};

/// How the pixel data of one object is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Implicit/explicit VR little endian, deflated (inflated on read), or
    /// explicit VR big endian.
    Native(Endian),
    Jpeg,
    Rle,
    /// dicom-pixeldata's registry.
    Library,
}

impl Codec {
    /// # Errors
    /// The transfer syntax is unknown, or known but without a decoder here.
    pub fn for_transfer_syntax(ts: &TsKind) -> Result<Self, DecodeError> {
        Ok(match ts {
            TsKind::ImplicitVrLittleEndian
            | TsKind::ExplicitVrLittleEndian
            | TsKind::DeflatedExplicitVrLittleEndian => Codec::Native(Endian::Little),
            TsKind::ExplicitVrBigEndian => Codec::Native(Endian::Big),
            TsKind::JpegBaseline | TsKind::JpegExtended => Codec::Jpeg,
            TsKind::RleLossless => Codec::Rle,
            _ => match TransferSyntaxRegistry.get(ts.uid()) {
                None => {
                    return Err(DecodeError::UnsupportedTransferSyntax {
                        uid: ts.uid().to_string(),
                        name: "unknown".into(),
                    })
                }
                Some(found) if !found.can_decode_all() => {
                    return Err(DecodeError::UnsupportedTransferSyntax {
                        uid: ts.uid().to_string(),
                        name: found.name().to_string(),
                    })
                }
                Some(_) => Codec::Library,
            },
        })
    }

    /// Byte order of values stored outside the pixel data (LUT data).
    pub fn endian(self) -> Endian {
        match self {
            Codec::Native(e) => e,
            _ => Endian::Little,
        }
    }
}

/// Yields one frame's stored values at a time.
pub(crate) enum Source<'a> {
    Native { stream: Cow<'a, [u8]>, layout: Layout, ybr: bool },
    Jpeg { fragments: &'a [Vec<u8>], frames: Vec<Range<usize>> },
    Rle { fragments: &'a [Vec<u8>], frames: Vec<Range<usize>> },
    Library { obj: &'a DefaultDicomObject, ts: TsKind },
}

impl<'a> Source<'a> {
    /// Prepares the pixel data of `obj` for frame-by-frame reading.
    ///
    /// # Errors
    /// The pixel data element does not have the form the transfer syntax
    /// says, or its fragments cannot be assigned to frames.
    pub fn new(obj: &'a DefaultDicomObject, a: &PixelAttrs, codec: Codec, ts: &TsKind) -> Result<Self, DecodeError> {
        if a.element != PixelElement::Int && !matches!(codec, Codec::Native(_)) {
            return Err(DecodeError::Invalid("float pixel data in an encapsulated transfer syntax".into()));
        }
        Ok(match codec {
            Codec::Native(endian) => Source::Native {
                stream: native_stream(obj, a.element, endian, a.bits_allocated)?,
                layout: layout(a, endian, a.photometric == Photometric::YbrFull422, int_bits(a)),
                ybr: a.photometric.is_ybr(),
            },
            Codec::Jpeg | Codec::Rle => {
                let fragments = encapsulated(obj)?;
                let offsets = obj.get(tags::PIXEL_DATA).and_then(|e| e.value().offset_table()).unwrap_or(&[]);
                let frames = fragments::split(fragments, offsets, a.frames, codec == Codec::Jpeg)?;
                if codec == Codec::Jpeg {
                    Source::Jpeg { fragments, frames }
                } else {
                    Source::Rle { fragments, frames }
                }
            }
            Codec::Library => Source::Library { obj, ts: ts.clone() },
        })
    }

    /// The stored values of frame `i`.
    ///
    /// # Errors
    /// The frame is truncated, corrupt or uses an unsupported feature.
    /// `needed`: the smallest Columns × Rows the caller can use; codecs that
    /// can decode a reduced size (JPEG's DCT scaling) may stop there.
    pub fn frame(&self, i: u32, a: &PixelAttrs, needed: Option<(u32, u32)>) -> Result<Stored, DecodeError> {
        match self {
            Source::Native { stream, layout, ybr } => {
                let bits = layout.frame_bits();
                let start = u64::from(i) * bits;
                let have = stream.len() as u64;
                if (start + bits).div_ceil(8) > have {
                    return Err(DecodeError::Truncated { frame: i, offset: start / 8, needed: bits.div_ceil(8), have });
                }
                read_frame(stream, start, layout, *ybr)
            }
            Source::Jpeg { fragments, frames } => {
                let data = fragments::frame_bytes(fragments, frame_range(frames, i)?);
                let (px, channels, (cols, rows)) = jpeg::decode_frame(&data, &a.photometric, a.rows, a.cols, needed)?;
                if u16::from(channels) != a.samples {
                    return Err(DecodeError::Invalid(format!(
                        "JPEG frame has {channels} components, SamplesPerPixel is {}",
                        a.samples
                    )));
                }
                let jpeg_attrs = PixelAttrs { bits_allocated: 8, planar: false, rows, cols, ..a.clone() };
                let bits = a.bits_stored.min(8);
                let mut stored = if bits == 8 {
                    // Already interleaved unsigned bytes: keep the codec's buffer.
                    Stored::from_bytes(px, channels)
                } else {
                    read_frame(&px, 0, &layout(&jpeg_attrs, Endian::Little, false, bits), false)?
                };
                if (cols, rows) != (a.cols, a.rows) {
                    stored.reduced = Some((cols, rows));
                }
                Ok(stored)
            }
            Source::Rle { fragments, frames } => {
                let data = fragments::frame_bytes(fragments, frame_range(frames, i)?);
                if !matches!(a.bits_allocated, 8 | 16 | 32) {
                    return Err(DecodeError::Unsupported(format!("RLE with BitsAllocated {}", a.bits_allocated)));
                }
                let bytes = usize::from(a.bits_allocated / 8);
                let px = rle::decode_frame(&data, a.rows as usize * a.cols as usize, usize::from(a.samples), bytes)?;
                let l = decoded_layout(a, int_bits(a));
                read_frame(&px, 0, &l, a.photometric.is_ybr())
            }
            Source::Library { obj, ts } => {
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
                // Codecs other than JPEG 2000 (which applies the inverse
                // colour transform itself) hand back YBR as stored.
                read_frame(px.data(), 0, &l, a.photometric.is_ybr() && !is_j2k)
            }
        }
    }
}

fn frame_range(frames: &[Range<usize>], i: u32) -> Result<Range<usize>, DecodeError> {
    frames.get(i as usize).cloned().ok_or_else(|| DecodeError::Invalid(format!("no fragments for frame {i}")))
}

fn encapsulated(obj: &DefaultDicomObject) -> Result<&[Vec<u8>], DecodeError> {
    match obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
        Some(Value::PixelSequence(seq)) => Ok(seq.fragments()),
        Some(_) => Err(DecodeError::Invalid("transfer syntax is encapsulated but pixel data is not".into())),
        None => Err(DecodeError::MissingAttribute { name: "PixelData" }),
    }
}

/// Significant bits of native integer data: BitsStored.
fn int_bits(a: &PixelAttrs) -> u16 {
    a.bits_stored
}

/// Layout of a frame a codec has decoded: interleaved, little endian
/// (dicom-rs returns native order; we build for x86-64 only), no 4:2:2.
fn decoded_layout(a: &PixelAttrs, bits: u16) -> Layout {
    layout(&PixelAttrs { planar: false, ..a.clone() }, Endian::Little, false, bits)
}

fn layout(a: &PixelAttrs, endian: Endian, ybr422: bool, bits: u16) -> Layout {
    Layout {
        rows: a.rows,
        cols: a.cols,
        samples: a.samples,
        bits_allocated: a.bits_allocated,
        kind: match a.element {
            PixelElement::Int => SampleKind::Int { bits, signed: a.signed },
            PixelElement::Float | PixelElement::Double => SampleKind::Float,
        },
        planar: a.planar,
        endian,
        ybr422,
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
        .and_then(|f| j2k_siz(f));
    match siz {
        Some((signed, precision)) if signed != a.signed => precision,
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
        j2k_size(&data).ok_or_else(|| {
            DecodeError::Invalid(format!("JPEG 2000 frame {i}: no SIZ marker segment (image size) in the codestream"))
        })?
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

/// (width, height, components) of the image from the SIZ marker segment
/// (ISO 15444-1 A.5.1): Xsiz - XOsiz, Ysiz - YOsiz, Csiz. SIZ must follow
/// SOC at the start of the codestream, which is where the decoder reads
/// it (not searched for: a lookalike earlier in a JP2 box must not count).
pub(crate) fn j2k_size(data: &[u8]) -> Option<(u32, u32, usize)> {
    let data = j2k_codestream(data)?;
    if !data.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return None;
    }
    // SOC(2) SIZ(2) Lsiz(2) Rsiz(2), then Xsiz Ysiz XOsiz YOsiz (u32 each).
    let u32_at = |k: usize| -> Option<u32> {
        let b = data.get(8 + 4 * k..12 + 4 * k)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let width = u32_at(0)?.checked_sub(u32_at(2)?)?;
    let height = u32_at(1)?.checked_sub(u32_at(3)?)?;
    let c = data.get(40..42)?;
    Some((width, height, usize::from(u16::from_be_bytes([c[0], c[1]]))))
}

/// The codestream: the data itself, or the contents of the contiguous
/// codestream box (`jp2c`) of a JP2 file (ISO 15444-1 I.4), which is what
/// openjp2 decodes when the data starts with the JP2 signature box.
fn j2k_codestream(data: &[u8]) -> Option<&[u8]> {
    const JP2_SIGNATURE: [u8; 8] = [0, 0, 0, 12, b'j', b'P', b' ', b' '];
    if !data.starts_with(&JP2_SIGNATURE) {
        return Some(data);
    }
    let mut pos = 0usize;
    while let Some(head) = data.get(pos..pos + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let (start, end) = match len {
            0 => (pos + 8, data.len()),
            1 => {
                let x = data.get(pos + 8..pos + 16)?;
                let xl = u64::from_be_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
                (pos + 16, pos.checked_add(usize::try_from(xl).ok()?)?)
            }
            n => (pos + 8, pos.checked_add(n)?),
        };
        if &head[4..8] == b"jp2c" {
            return data.get(start..end.min(data.len()));
        }
        if end <= pos {
            return None;
        }
        pos = end;
    }
    None
}

/// (signed, precision) of the first component, from the SIZ marker
/// segment (ISO 15444-1 A.5.1), in a raw codestream or a JP2 file.
pub(crate) fn j2k_siz(data: &[u8]) -> Option<(bool, u16)> {
    let at = data.windows(4).take(4096).position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
    // SOC(2) SIZ(2) Lsiz(2) Rsiz(2) 8 x u32 Csiz(2), then Ssiz.
    let ssiz = *data.get(at + 2 + 2 + 2 + 2 + 32 + 2)?;
    Some((ssiz & 0x80 != 0, u16::from(ssiz & 0x7F) + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn j2k_siz_gives_signedness_and_precision() {
        let mut d = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        d.extend_from_slice(&[0; 32]);
        d.extend_from_slice(&[0, 1, 0x80 | 12, 1, 1]);
        assert_eq!(j2k_siz(&d), Some((true, 13)));
        assert_eq!(j2k_siz(&[0; 10]), None);
        // Xsiz 720, Ysiz 512, XOsiz 8, YOsiz 0, tiles, then Csiz 1.
        let mut s = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [720u32, 512, 8, 0, 512, 512, 0, 0] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        s.extend_from_slice(&[0, 1, 15, 1, 1]);
        assert_eq!(j2k_size(&s), Some((712, 512, 1)));
        assert_eq!(j2k_size(&s[..40]), None);
        // Only at the start of the codestream, or of a JP2 file's jp2c box.
        assert_eq!(j2k_size(&[&[0, 0][..], &s].concat()), None);
        let mut jp2 = vec![0, 0, 0, 12, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
        jp2.extend_from_slice(&[0, 0, 0, 12, b'x', b'm', b'l', b' ', 0xFF, 0x4F, 0xFF, 0x51]);
        jp2.extend_from_slice(&[0, 0, 0, 0, b'j', b'p', b'2', b'c']);
        jp2.extend_from_slice(&s);
        assert_eq!(j2k_size(&jp2), Some((712, 512, 1)));
    }
}
