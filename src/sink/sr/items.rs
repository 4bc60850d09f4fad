//! SR content items (PS3.3 C.17.3): one function per value type, each an
//! item of a ContentSequence with its relationship to the parent.

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::codes::Code;
use super::evidence::ImageEvidence;
use crate::dicom::write::{code, put, put_seq};

/// How an item relates to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rel {
    Contains,
    HasConceptMod,
    HasObsContext,
    HasAcqContext,
}

impl Rel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Contains => "CONTAINS",
            Self::HasConceptMod => "HAS CONCEPT MOD",
            Self::HasObsContext => "HAS OBS CONTEXT",
            Self::HasAcqContext => "HAS ACQ CONTEXT",
        }
    }
}

/// A code as a one-item code sequence's item.
pub fn coded(c: &Code) -> InMemDicomObject {
    code(&c.value, &c.scheme, &c.meaning)
}

fn item(rel: Rel, value_type: &str, name: &Code) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    put(&mut obj, tags::RELATIONSHIP_TYPE, VR::CS, rel.as_str());
    put(&mut obj, tags::VALUE_TYPE, VR::CS, value_type);
    put_seq(&mut obj, tags::CONCEPT_NAME_CODE_SEQUENCE, vec![coded(name)]);
    obj
}

/// Adds children to an item (a ContentSequence).
pub fn with_children(mut obj: InMemDicomObject, children: Vec<InMemDicomObject>) -> InMemDicomObject {
    if !children.is_empty() {
        put_seq(&mut obj, tags::CONTENT_SEQUENCE, children);
    }
    obj
}

/// Marks a container as an instance of a DCMR template.
pub fn template(obj: &mut InMemDicomObject, id: &str) {
    let mut t = InMemDicomObject::new_empty();
    put(&mut t, tags::MAPPING_RESOURCE, VR::CS, "DCMR");
    put(&mut t, tags::TEMPLATE_IDENTIFIER, VR::CS, id);
    put_seq(obj, tags::CONTENT_TEMPLATE_SEQUENCE, vec![t]);
}

pub fn container(rel: Rel, name: &Code, children: Vec<InMemDicomObject>) -> InMemDicomObject {
    let mut obj = item(rel, "CONTAINER", name);
    put(&mut obj, tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS");
    with_children(obj, children)
}

pub fn text(rel: Rel, name: &Code, value: &str) -> InMemDicomObject {
    let mut obj = item(rel, "TEXT", name);
    put(&mut obj, tags::TEXT_VALUE, VR::UT, value);
    obj
}

pub fn code_item(rel: Rel, name: &Code, value: &Code) -> InMemDicomObject {
    let mut obj = item(rel, "CODE", name);
    put_seq(&mut obj, tags::CONCEPT_CODE_SEQUENCE, vec![coded(value)]);
    obj
}

pub fn uidref(rel: Rel, name: &Code, uid: &str) -> InMemDicomObject {
    let mut obj = item(rel, "UIDREF", name);
    put(&mut obj, tags::UID, VR::UI, uid);
    obj
}

/// A number as DICOM's decimal string: fixed point with enough digits
/// that an f32 probability reads back within 1e-9, never over DS's 16
/// characters for values of probability size.
pub fn decimal(value: f64) -> String {
    let fixed = format!("{value:.9}");
    let text = fixed.trim_end_matches('0').trim_end_matches('.');
    if text.len() <= 16 {
        text.to_string()
    } else {
        format!("{value:.9e}")
    }
}

/// A NUM item; the value also as FloatingPointValue, exactly.
pub fn num(rel: Rel, name: &Code, value: f64, unit: &Code) -> InMemDicomObject {
    let mut obj = item(rel, "NUM", name);
    let mut measured = InMemDicomObject::new_empty();
    put_seq(&mut measured, tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![coded(unit)]);
    put(&mut measured, tags::NUMERIC_VALUE, VR::DS, decimal(value));
    put(&mut measured, tags::FLOATING_POINT_VALUE, VR::FD, value);
    put_seq(&mut obj, tags::MEASURED_VALUE_SEQUENCE, vec![measured]);
    obj
}

/// An IMAGE item referencing one instance (with its scored frames when it
/// has more than one).
pub fn image(rel: Rel, name: &Code, img: &ImageEvidence) -> InMemDicomObject {
    let mut obj = item(rel, "IMAGE", name);
    put_seq(&mut obj, tags::REFERENCED_SOP_SEQUENCE, vec![sop_reference(img, true)]);
    obj
}

/// A ReferencedSOPSequence item: class and instance (and frames, when
/// `frames` and the instance is multi-frame).
pub fn sop_reference(img: &ImageEvidence, frames: bool) -> InMemDicomObject {
    let mut r = InMemDicomObject::new_empty();
    put(&mut r, tags::REFERENCED_SOP_CLASS_UID, VR::UI, img.sop_class_uid.as_str());
    put(&mut r, tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, img.sop_instance_uid.as_str());
    if frames && img.frames > 1 && !img.scored_frames.is_empty() {
        let numbers: Vec<String> = img.scored_frames.iter().map(|&f| (u64::from(f) + 1).to_string()).collect();
        put(&mut r, tags::REFERENCED_FRAME_NUMBER, VR::IS, dicom_core::PrimitiveValue::Strs(numbers.into()));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_fit_ds_and_keep_an_f32_to_1e_9() {
        for p in [0.0f32, 1.0, 0.123_456_79, 0.999_999_94, 1e-8, 3.4e-5] {
            let text = decimal(f64::from(p));
            assert!(text.len() <= 16, "{text}");
            let back: f64 = text.parse().expect("number");
            assert!((back - f64::from(p)).abs() < 1e-9, "{p} -> {text}");
        }
        assert!(decimal(123_456_789_012.5).len() <= 16);
        assert_eq!((decimal(1200.0).as_str(), decimal(0.0).as_str()), ("1200", "0"));
    }

    #[test]
    fn a_num_item_holds_its_value_twice_and_its_unit() {
        let name = Code::new("P", "99X", "p");
        let obj = num(Rel::Contains, &name, 0.25, &Code::new("1", "UCUM", "no units"));
        let measured = obj.get(tags::MEASURED_VALUE_SEQUENCE).and_then(|e| e.items()).expect("measured");
        let ds = measured[0].get(tags::NUMERIC_VALUE).and_then(|e| e.to_str().ok()).expect("ds");
        assert_eq!(ds, "0.25");
        assert_eq!(measured[0].get(tags::FLOATING_POINT_VALUE).and_then(|e| e.to_float64().ok()), Some(0.25));
    }
}
