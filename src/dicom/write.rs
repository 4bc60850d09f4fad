//! Helpers for building a data set in memory: one element, a sequence, a
//! code item. Synth writes its photographs with them; a result writer (a
//! DICOM SR) can build its content tree with the same calls.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// Puts one element (replacing any with the same tag).
pub fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, value.into()));
}

/// Puts a sequence of `items` (empty is a valid, zero-item sequence).
pub fn put_seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

/// A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning).
pub fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put(&mut item, tags::CODE_VALUE, VR::SH, value);
    put(&mut item, tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme);
    put(&mut item, tags::CODE_MEANING, VR::LO, meaning);
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_item_holds_its_three_attributes() {
        let mut obj = InMemDicomObject::new_empty();
        put_seq(&mut obj, tags::ANATOMIC_REGION_SEQUENCE, vec![code("5665001", "SCT", "Retina")]);
        put_seq(&mut obj, tags::ACQUISITION_CONTEXT_SEQUENCE, Vec::new());
        let items = obj.get(tags::ANATOMIC_REGION_SEQUENCE).and_then(|e| e.items()).expect("items");
        assert_eq!(items.len(), 1);
        let text = |tag| items[0].get(tag).and_then(|e| e.to_str().ok()).map(|s| s.into_owned());
        assert_eq!(text(tags::CODE_VALUE).as_deref(), Some("5665001"));
        assert_eq!(text(tags::CODING_SCHEME_DESIGNATOR).as_deref(), Some("SCT"));
        assert_eq!(text(tags::CODE_MEANING).as_deref(), Some("Retina"));
        let empty = obj.get(tags::ACQUISITION_CONTEXT_SEQUENCE).and_then(|e| e.items()).expect("sequence");
        assert!(empty.is_empty());
        put(&mut obj, tags::MODALITY, VR::CS, "OP");
        put(&mut obj, tags::MODALITY, VR::CS, "OT");
        assert_eq!(obj.get(tags::MODALITY).and_then(|e| e.to_str().ok()).as_deref(), Some("OT"));
    }
}
