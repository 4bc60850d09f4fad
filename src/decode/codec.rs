//! The decoder seam: where a frame's stored values come from, by transfer
//! syntax.
//!
//! A [`FrameCodec`] opens one object's pixel data as a [`FrameSource`],
//! which yields one frame's stored values at a time, so a large multi-frame
//! object never holds more than one decoded frame. [`codec_for`] is the one
//! registry from [`TsKind`] to an adapter:
//! - native data is read straight from the element (here);
//! - RLE and JPEG baseline/extended are decoded by decode itself, one
//!   frame's bytes at a time ([`FragmentCodec`]: `rle.rs`, `jpeg.rs`);
//! - everything else dicom-rs can decode (JPEG lossless, JPEG-LS, JPEG 2000,
//!   ...) goes through dicom-pixeldata (`library.rs`).
//!
//! A new decoder (a faster JPEG one, a reduced-resolution JPEG 2000 one) is
//! one new adapter and one line in [`codec_for`].

use std::borrow::Cow;
use std::ops::Range;

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::attrs::Photometric;
use super::attrs::{native_stream, PixelAttrs, PixelElement};
use super::jpeg::JpegCodec;
use super::library::LibraryCodec;
use super::pixels::{read_frame, Endian, Layout, SampleKind, Stored};
use super::rle::RleCodec;
use super::{fragments, DecodeError};
use crate::dicom::ts::TsKind;

/// A decoder for the pixel data of one family of transfer syntaxes.
///
/// The contract of every [`FrameSource`] it opens: a frame's stored samples
/// as [`Stored`] values (built from native little-endian interleaved bytes
/// through `pixels::read_frame`, RGB for 3 samples unless the photometric
/// interpretation says YBR, which `read_frame` converts), reduced in size
/// (and `Stored::reduced` set) only when `needed` allows it.
pub(crate) trait FrameCodec: Sync {
    /// Prepares the pixel data of `obj` for frame-by-frame reading.
    ///
    /// # Errors
    /// The pixel data element does not have the form the transfer syntax
    /// says, or its fragments cannot be assigned to frames.
    fn open<'a>(
        &'a self,
        obj: &'a DefaultDicomObject,
        a: &PixelAttrs,
        ts: &TsKind,
    ) -> Result<FrameSource<'a>, DecodeError>;
}

/// One object's pixel data, opened by a [`FrameCodec`].
pub(crate) trait Frames {
    /// The stored values of frame `i`.
    ///
    /// `needed`: the smallest Columns × Rows the caller can use; codecs that
    /// can decode a reduced size (JPEG's DCT scaling) may stop there.
    ///
    /// # Errors
    /// The frame is truncated, corrupt or uses an unsupported feature.
    fn frame(&self, i: u32, a: &PixelAttrs, needed: Option<(u32, u32)>) -> Result<Stored, DecodeError>;
}

/// Yields one frame's stored values at a time.
pub(crate) type FrameSource<'a> = Box<dyn Frames + 'a>;

/// A codec that decodes one frame of encapsulated pixel data from that
/// frame's bytes (its fragments joined): the adapter shape for decoders
/// decode runs itself. Fragments are assigned to frames once per object.
pub(crate) trait FragmentCodec: Sync {
    /// Whether a frame starts with a JPEG SOI marker, so that fragments can
    /// be split on it when neither their count nor an offset table tells.
    fn frames_start_with_soi(&self) -> bool;

    /// Decodes one frame; see [`FrameCodec`] for the output contract.
    ///
    /// # Errors
    /// The frame is corrupt, does not match the header, or uses an
    /// unsupported feature.
    fn decode_frame(&self, data: &[u8], a: &PixelAttrs, needed: Option<(u32, u32)>) -> Result<Stored, DecodeError>;
}

/// A [`FragmentCodec`] as a [`FrameCodec`].
pub(crate) struct Encapsulated<C>(pub C);

/// Native (uncompressed) data in the data set's byte order.
pub(crate) struct NativeCodec(pub Endian);

static NATIVE_LITTLE: NativeCodec = NativeCodec(Endian::Little);
static NATIVE_BIG: NativeCodec = NativeCodec(Endian::Big);
static JPEG: Encapsulated<JpegCodec> = Encapsulated(JpegCodec);
static RLE: Encapsulated<RleCodec> = Encapsulated(RleCodec);
static LIBRARY: LibraryCodec = LibraryCodec;

/// The codec registry: which adapter decodes `ts`.
///
/// # Errors
/// The transfer syntax is unknown, or known but without a decoder here
/// (dicom-rs's stubs: "unsupported", not "unknown").
pub(crate) fn codec_for(ts: &TsKind) -> Result<&'static dyn FrameCodec, DecodeError> {
    Ok(match ts {
        TsKind::ImplicitVrLittleEndian | TsKind::ExplicitVrLittleEndian | TsKind::DeflatedExplicitVrLittleEndian => {
            &NATIVE_LITTLE
        }
        TsKind::ExplicitVrBigEndian => &NATIVE_BIG,
        TsKind::JpegBaseline | TsKind::JpegExtended => &JPEG,
        TsKind::RleLossless => &RLE,
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
            Some(_) => &LIBRARY,
        },
    })
}

/// Byte order of values stored outside the pixel data (LUT data).
pub(crate) fn data_set_endian(ts: &TsKind) -> Endian {
    match ts {
        TsKind::ExplicitVrBigEndian => Endian::Big,
        _ => Endian::Little,
    }
}

/// Opens the pixel data of `obj` with `codec`, refusing float pixel data
/// anywhere but in a native transfer syntax.
///
/// # Errors
/// As [`FrameCodec::open`], and float data in an encapsulated syntax.
pub(crate) fn open<'a>(
    codec: &'a dyn FrameCodec,
    obj: &'a DefaultDicomObject,
    a: &PixelAttrs,
    ts: &TsKind,
) -> Result<FrameSource<'a>, DecodeError> {
    if a.element != PixelElement::Int && !ts.is_native() {
        return Err(DecodeError::Invalid("float pixel data in an encapsulated transfer syntax".into()));
    }
    codec.open(obj, a, ts)
}

impl FrameCodec for NativeCodec {
    fn open<'a>(
        &'a self,
        obj: &'a DefaultDicomObject,
        a: &PixelAttrs,
        _ts: &TsKind,
    ) -> Result<FrameSource<'a>, DecodeError> {
        let endian = self.0;
        Ok(Box::new(NativeFrames {
            stream: native_stream(obj, a.element, endian, a.bits_allocated)?,
            layout: layout(a, endian, a.photometric == Photometric::YbrFull422, int_bits(a)),
            ybr: a.photometric.is_ybr(),
        }))
    }
}

struct NativeFrames<'a> {
    stream: Cow<'a, [u8]>,
    layout: Layout,
    ybr: bool,
}

impl Frames for NativeFrames<'_> {
    fn frame(&self, i: u32, _a: &PixelAttrs, _needed: Option<(u32, u32)>) -> Result<Stored, DecodeError> {
        // Frames are addressed in bits: 1-bit frames need not start on a byte.
        let bits = self.layout.frame_bits();
        let start = u64::from(i) * bits;
        let have = self.stream.len() as u64;
        if (start + bits).div_ceil(8) > have {
            return Err(DecodeError::Truncated { frame: i, offset: start / 8, needed: bits.div_ceil(8), have });
        }
        read_frame(&self.stream, start, &self.layout, self.ybr)
    }
}

impl<C: FragmentCodec> FrameCodec for Encapsulated<C> {
    fn open<'a>(
        &'a self,
        obj: &'a DefaultDicomObject,
        a: &PixelAttrs,
        _ts: &TsKind,
    ) -> Result<FrameSource<'a>, DecodeError> {
        let fragments = encapsulated(obj)?;
        let offsets = obj.get(tags::PIXEL_DATA).and_then(|e| e.value().offset_table()).unwrap_or(&[]);
        let frames = fragments::split(fragments, offsets, a.frames, self.0.frames_start_with_soi())?;
        Ok(Box::new(FragmentFrames { codec: &self.0, fragments, frames }))
    }
}

struct FragmentFrames<'a, C> {
    codec: &'a C,
    fragments: &'a [Vec<u8>],
    frames: Vec<Range<usize>>,
}

impl<C: FragmentCodec> Frames for FragmentFrames<'_, C> {
    fn frame(&self, i: u32, a: &PixelAttrs, needed: Option<(u32, u32)>) -> Result<Stored, DecodeError> {
        let range = self
            .frames
            .get(i as usize)
            .cloned()
            .ok_or_else(|| DecodeError::Invalid(format!("no fragments for frame {i}")))?;
        let data = fragments::frame_bytes(self.fragments, range);
        self.codec.decode_frame(&data, a, needed)
    }
}

fn encapsulated(obj: &DefaultDicomObject) -> Result<&[Vec<u8>], DecodeError> {
    match obj.get(tags::PIXEL_DATA).map(|e| e.value()) {
        Some(Value::PixelSequence(seq)) => Ok(seq.fragments()),
        Some(_) => Err(DecodeError::Invalid("transfer syntax is encapsulated but pixel data is not".into())),
        None => Err(DecodeError::MissingAttribute { name: "PixelData" }),
    }
}

/// Significant bits of native integer data: BitsStored.
pub(crate) fn int_bits(a: &PixelAttrs) -> u16 {
    a.bits_stored
}

/// Layout of a frame a codec has decoded: interleaved, little endian
/// (dicom-rs returns native order; we build for x86-64 only), no 4:2:2.
pub(crate) fn decoded_layout(a: &PixelAttrs, bits: u16) -> Layout {
    layout(&PixelAttrs { planar: false, ..a.clone() }, Endian::Little, false, bits)
}

pub(crate) fn layout(a: &PixelAttrs, endian: Endian, ybr422: bool, bits: u16) -> Layout {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_picks_an_adapter_or_says_why_not() {
        for ts in [TsKind::ImplicitVrLittleEndian, TsKind::JpegBaseline, TsKind::RleLossless, TsKind::Jpeg2000] {
            assert!(codec_for(&ts).is_ok(), "{ts}");
        }
        let Err(unknown) = codec_for(&TsKind::Other("1.2.3.4".into())) else {
            panic!("an unknown syntax has no codec")
        };
        assert!(matches!(unknown, DecodeError::UnsupportedTransferSyntax { ref name, .. } if name == "unknown"));
        assert_eq!(data_set_endian(&TsKind::ExplicitVrBigEndian), Endian::Big);
        assert_eq!(data_set_endian(&TsKind::RleLossless), Endian::Little);
    }
}
