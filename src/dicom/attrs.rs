//! The one attribute reader: text and integer values of a data set, with
//! DICOM's padding removed in one place.
//!
//! Ingest reads its header with it (leniently: a bad value is as good as
//! none there), decode reads the Image Pixel attributes with it (strictly:
//! a bad value is an error that names the attribute, since that is what
//! someone fixing the file needs to know).

use dicom_core::Tag;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;

/// An attribute that is missing, or whose value is not what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    #[error("missing attribute {name}")]
    Missing { name: &'static str },
    #[error("invalid {name}: {value:?}")]
    Invalid { name: &'static str, value: String },
}

/// Removes DICOM value padding: trailing NUL and whitespace, leading
/// whitespace.
pub fn trim_padding(s: &str) -> &str {
    s.trim_end_matches(|c: char| c == '\0' || c.is_whitespace()).trim_start()
}

/// A string attribute, padding removed; `None` when absent or not text.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    Some(trim_padding(&s).to_string())
}

/// An integer attribute; absent or empty is `None`.
///
/// # Errors
/// The value is not an integer, or does not fit `T`.
pub fn int<T: TryFrom<i64>>(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<Option<T>, AttrError> {
    match obj.get(tag) {
        Some(e) => parse_int(e, name),
        None => Ok(None),
    }
}

/// An integer attribute where a bad value is as good as none (ingest's
/// header is for grouping and routing; decode reads strictly).
pub fn int_or_none<T: TryFrom<i64>>(obj: &InMemDicomObject, tag: Tag) -> Option<T> {
    obj.get(tag).and_then(|e| parse_int(e, "").ok().flatten())
}

/// An integer attribute that must be present.
///
/// # Errors
/// The attribute is absent or empty, or as [`int`].
pub fn required<T: TryFrom<i64>>(obj: &InMemDicomObject, tag: Tag, name: &'static str) -> Result<T, AttrError> {
    int(obj, tag, name)?.ok_or(AttrError::Missing { name })
}

fn parse_int<T: TryFrom<i64>>(e: &InMemElement, name: &'static str) -> Result<Option<T>, AttrError> {
    if e.value().primitive().is_some_and(|p| p.multiplicity() == 0) {
        return Ok(None);
    }
    let bad = || AttrError::Invalid { name, value: e.to_str().map(|s| s.into_owned()).unwrap_or_else(|_| "?".into()) };
    let v: i64 = e.to_int().map_err(|_| bad())?;
    T::try_from(v).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;

    use super::*;

    fn obj() -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        o.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from(" OP \0")));
        o.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(480u16)));
        o.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::Empty));
        o.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("many")));
        o.put(DataElement::new(tags::SERIES_NUMBER, VR::IS, PrimitiveValue::from("-3")));
        o
    }

    #[test]
    fn text_loses_its_padding() {
        assert_eq!(text(&obj(), tags::MODALITY).as_deref(), Some("OP"));
        assert_eq!(text(&obj(), tags::PATIENT_ID), None);
        assert_eq!(trim_padding("1.2.3\0"), "1.2.3");
        assert_eq!(trim_padding(" DOE^J \t"), "DOE^J");
    }

    #[test]
    fn integers_are_absent_empty_valid_or_named_errors() {
        let o = obj();
        assert_eq!(int::<u32>(&o, tags::ROWS, "Rows"), Ok(Some(480)));
        assert_eq!(int::<u32>(&o, tags::COLUMNS, "Columns"), Ok(None));
        assert_eq!(int::<u32>(&o, tags::BITS_ALLOCATED, "BitsAllocated"), Ok(None));
        assert_eq!(int::<i32>(&o, tags::SERIES_NUMBER, "SeriesNumber"), Ok(Some(-3)));
        assert_eq!(
            int::<u32>(&o, tags::SERIES_NUMBER, "SeriesNumber"),
            Err(AttrError::Invalid { name: "SeriesNumber", value: "-3".into() })
        );
        assert!(matches!(int::<u32>(&o, tags::NUMBER_OF_FRAMES, "NumberOfFrames"), Err(AttrError::Invalid { .. })));
        assert_eq!(int_or_none::<u32>(&o, tags::SERIES_NUMBER), None);
        assert_eq!(int_or_none::<i32>(&o, tags::SERIES_NUMBER), Some(-3));
        assert_eq!(required::<u32>(&o, tags::ROWS, "Rows"), Ok(480));
        assert_eq!(required::<u32>(&o, tags::COLUMNS, "Columns"), Err(AttrError::Missing { name: "Columns" }));
        assert_eq!(AttrError::Invalid { name: "Rows", value: "x".into() }.to_string(), DECODE_STYLE_INVALID_ROWS);
    }

    /// How decode's error rows have always said it.
    const DECODE_STYLE_INVALID_ROWS: &str = "invalid Rows: \"x\"";
}
