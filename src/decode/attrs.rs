//! The Image Pixel attributes (group 0028) decode reads from the object
//! itself, so it never depends on what ingest chose to keep in `Header`.
//!
//! Values are read with the one attribute reader (`crate::dicom::attrs`):
//! missing or malformed values become errors that name the attribute, since
//! that is what someone fixing the file needs to know.

use std::borrow::Cow;

use dicom_core::value::{PrimitiveValue, Value};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

use super::pixels::Endian;
use super::DecodeError;
pub(crate) use crate::dicom::attrs::{int, required, text};
pub(crate) use crate::dicom::photometric::Photometric;

pub(crate) type Obj = InMemDicomObject;

/// Which of the three pixel data elements holds the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PixelElement {
    /// (7FE0,0010): integer samples.
    Int,
    /// (7FE0,0008) Float Pixel Data, 32-bit IEEE.
    Float,
    /// (7FE0,0009) Double Float Pixel Data, 64-bit IEEE.
    Double,
}

/// The attributes needed to find and interpret the stored samples.
#[derive(Debug, Clone)]
pub(crate) struct PixelAttrs {
    pub rows: u32,
    pub cols: u32,
    pub samples: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub planar: bool,
    pub photometric: Photometric,
    pub frames: u32,
    pub element: PixelElement,
}

impl PixelAttrs {
    /// # Errors
    /// A required attribute is missing or not a number in range.
    pub fn read(obj: &Obj) -> Result<Self, DecodeError> {
        let element = if obj.get(tags::PIXEL_DATA).is_some() {
            PixelElement::Int
        } else if obj.get(tags::FLOAT_PIXEL_DATA).is_some() {
            PixelElement::Float
        } else if obj.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some() {
            PixelElement::Double
        } else {
            return Err(DecodeError::MissingAttribute { name: "PixelData" });
        };
        let rows = required(obj, tags::ROWS, "Rows")?;
        let cols = required(obj, tags::COLUMNS, "Columns")?;
        let samples = int(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
        let bits_allocated = match element {
            PixelElement::Int => required(obj, tags::BITS_ALLOCATED, "BitsAllocated")?,
            PixelElement::Float => 32,
            PixelElement::Double => 64,
        };
        let bits_stored = int(obj, tags::BITS_STORED, "BitsStored")?.unwrap_or(bits_allocated);
        let signed = int::<u16>(obj, tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0) == 1;
        let planar = int::<u16>(obj, tags::PLANAR_CONFIGURATION, "PlanarConfiguration")?.unwrap_or(0) == 1;
        let photometric = match text(obj, tags::PHOTOMETRIC_INTERPRETATION) {
            Some(s) if !s.is_empty() => Photometric::parse(&s),
            // Lenient: the sample count says enough to show the image.
            _ if samples == 3 => Photometric::Rgb,
            _ => Photometric::Monochrome2,
        };
        // Some writers put 0 for single-frame objects.
        let frames = int::<u32>(obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1).max(1);
        if rows == 0 || cols == 0 {
            return Err(DecodeError::InvalidAttribute { name: "Rows/Columns", value: format!("{rows}x{cols}") });
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32 | 64) {
            return Err(DecodeError::Unsupported(format!("BitsAllocated {bits_allocated}")));
        }
        Ok(Self { rows, cols, samples, bits_allocated, bits_stored, signed, planar, photometric, frames, element })
    }
}

/// The value's bytes as they were in the file. dicom-rs decodes OW/OL/OF
/// into numbers in native order; turning them back into the file's byte
/// order lets one reader handle 8-bit data in OW, or 32-bit data in OW,
/// under either endianness.
pub(crate) fn file_bytes(value: &PrimitiveValue, endian: Endian) -> Option<Cow<'_, [u8]>> {
    macro_rules! words {
        ($v:expr) => {
            match endian {
                Endian::Little => $v.iter().flat_map(|w| w.to_le_bytes()).collect(),
                Endian::Big => $v.iter().flat_map(|w| w.to_be_bytes()).collect(),
            }
        };
    }
    Some(Cow::Owned(match value {
        // Bytes already: no copy of what may be most of the file.
        PrimitiveValue::U8(v) => return Some(Cow::Borrowed(v.as_slice())),
        PrimitiveValue::U16(v) => words!(v),
        PrimitiveValue::I16(v) => words!(v),
        PrimitiveValue::U32(v) => words!(v),
        PrimitiveValue::I32(v) => words!(v),
        PrimitiveValue::U64(v) => words!(v),
        PrimitiveValue::I64(v) => words!(v),
        PrimitiveValue::F32(v) => words!(v),
        PrimitiveValue::F64(v) => words!(v),
        PrimitiveValue::Empty => Vec::new(),
        _ => return None,
    }))
}

/// The byte stream of a native (not encapsulated) pixel data element.
///
/// 8-bit samples in an OW element of a big-endian object are packed into
/// words low byte first, so pydicom swaps each word back; so do we.
pub(crate) fn native_stream(
    obj: &Obj,
    element: PixelElement,
    endian: Endian,
    bits_allocated: u16,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    let endian = if bits_allocated == 8 { Endian::Little } else { endian };
    let tag = match element {
        PixelElement::Int => tags::PIXEL_DATA,
        PixelElement::Float => tags::FLOAT_PIXEL_DATA,
        PixelElement::Double => tags::DOUBLE_FLOAT_PIXEL_DATA,
    };
    let e = obj.get(tag).ok_or(DecodeError::MissingAttribute { name: "PixelData" })?;
    match e.value() {
        Value::Primitive(p) => file_bytes(p, endian)
            .ok_or_else(|| DecodeError::InvalidAttribute { name: "PixelData", value: format!("VR {}", e.vr()) }),
        Value::PixelSequence(_) => {
            Err(DecodeError::Invalid("pixel data is encapsulated but the transfer syntax is native".into()))
        }
        Value::Sequence(_) => Err(DecodeError::InvalidAttribute { name: "PixelData", value: "a sequence".into() }),
    }
}

/// Finds `tag` for `frame`: at the top level, else in the per-frame
/// functional group item for this frame, else in the shared one
/// (enhanced multi-frame objects keep rescale and window there, inside
/// `seq`).
pub(crate) fn frame_attr(obj: &Obj, frame: u32, seq: dicom_core::Tag, tag: dicom_core::Tag) -> Option<&InMemElement> {
    if let Some(e) = obj.get(tag) {
        return Some(e);
    }
    let in_group = |group: dicom_core::Tag, index: usize| -> Option<&InMemElement> {
        let item = obj.get(group)?.items()?.get(index)?;
        item.get(seq)?.items()?.first()?.get(tag)
    };
    in_group(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, frame as usize)
        .or_else(|| in_group(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0))
}

/// First value of a decimal attribute, if it parses.
pub(crate) fn first_float(e: Option<&InMemElement>) -> Option<f64> {
    e?.to_multi_float64().ok()?.first().copied().filter(|v| v.is_finite())
}
