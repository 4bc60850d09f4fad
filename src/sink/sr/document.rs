//! One study's SR as a DICOM file: the header (Patient and General Study
//! copied from the study's header, a new SR Document Series, equipment,
//! SR Document General with its flags and evidence) around the content
//! tree ([`super::content`]), checked value by value first so a study
//! with odd header values gets no document rather than an invalid one.

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

use super::codes::dcm;
use super::evidence::ImageEvidence;
use super::items::{coded, sop_reference, template, with_children};
use super::uids::{is_valid_uid, SrUids};
use super::{content, SrConfig};
use crate::dicom::write::{put, put_seq};
use crate::sink::{ModelStamp, RunStamp};
use crate::triage::StudyResult;

/// Comprehensive 3D SR Storage.
pub const COMPREHENSIVE_3D_SR: &str = uids::COMPREHENSIVE3_DSR_STORAGE;

/// What one study's SR is made from.
pub struct Report<'a> {
    pub study: &'a StudyResult,
    /// The study's scored images, sorted by series and instance.
    pub images: &'a [ImageEvidence],
    pub band_name: &'a str,
    pub run: &'a RunStamp,
    pub models: &'a [ModelStamp],
    pub cfg: &'a SrConfig,
    pub uids: SrUids,
    pub device_uid: &'a str,
    pub shadow: bool,
    /// Some model of the study is not validated for clinical use.
    pub not_for_clinical_use: bool,
}

impl Report<'_> {
    /// "nightscreen <version>".
    pub fn software(&self) -> String {
        format!("nightscreen {}", self.run.software_version)
    }
}

/// Why a study gets no SR (counted by [`NoDocument::key`], logged without
/// patient data).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoDocument {
    #[error("the study has no StudyInstanceUID")]
    NoStudyUid,
    #[error("no scored image of the study is in the evidence journal")]
    NoEvidence,
    #[error("{attribute} is not a valid UID")]
    InvalidUid { attribute: &'static str },
    #[error("{attribute} does not fit its DICOM value representation")]
    BadValue { attribute: &'static str },
    #[error("the document could not be encoded: {0}")]
    Encode(String),
}

impl NoDocument {
    /// The reason's count key in `sr-summary.json`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NoStudyUid => "no_study_uid",
            Self::NoEvidence => "no_evidence",
            Self::InvalidUid { .. } => "invalid_uid",
            Self::BadValue { .. } => "bad_header_value",
            Self::Encode(_) => "encode",
        }
    }
}

/// A copied identifier as it must be: exact, or no document (a truncated
/// patient id would file the result under someone else).
fn exact(attribute: &'static str, value: &str, max_chars: usize) -> Result<String, NoDocument> {
    let bad = value.chars().count() > max_chars || value.contains('\\') || value.chars().any(char::is_control);
    if bad {
        Err(NoDocument::BadValue { attribute })
    } else {
        Ok(value.to_string())
    }
}

/// Descriptive text cut to fit (LO: 64 characters, no backslash).
fn fitted(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).map(|c| if c == '\\' { '/' } else { c }).take(64).collect()
}

fn uid(attribute: &'static str, value: &str) -> Result<(), NoDocument> {
    if is_valid_uid(value) {
        Ok(())
    } else {
        Err(NoDocument::InvalidUid { attribute })
    }
}

/// The SR file's bytes.
///
/// # Errors
/// A header value the document would copy is not valid DICOM, or the
/// object cannot be encoded.
pub fn encode(r: &Report<'_>) -> Result<Vec<u8>, NoDocument> {
    let obj = dataset(r)?;
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(COMPREHENSIVE_3D_SR)
                .media_storage_sop_instance_uid(r.uids.instance.as_str()),
        )
        .map_err(|e| NoDocument::Encode(e.to_string()))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| NoDocument::Encode(e.to_string()))?;
    Ok(bytes)
}

/// The SR's data set.
///
/// # Errors
/// As [`encode`].
pub fn dataset(r: &Report<'_>) -> Result<InMemDicomObject, NoDocument> {
    let h = &r.study.header;
    if h.study_uid.0.is_empty() {
        return Err(NoDocument::NoStudyUid);
    }
    uid("StudyInstanceUID", h.study_uid.as_str())?;
    if r.images.is_empty() {
        return Err(NoDocument::NoEvidence);
    }
    for img in r.images {
        uid("SeriesInstanceUID", &img.series_uid)?;
        uid("SOPInstanceUID", &img.sop_instance_uid)?;
        uid("SOPClassUID", &img.sop_class_uid)?;
    }
    let patient_id = exact("PatientID", &h.patient_id, 64)?;
    let patient_name = exact("PatientName", &h.patient_name, 64)?;
    let accession = exact("AccessionNumber", &h.accession_number, 16)?;

    let mut o = InMemDicomObject::new_empty();
    // UTF-8: names and the series description may be beyond ASCII.
    put(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(&mut o, tags::SOP_CLASS_UID, VR::UI, COMPREHENSIVE_3D_SR);
    put(&mut o, tags::SOP_INSTANCE_UID, VR::UI, r.uids.instance.as_str());
    // Patient and General Study, from the study's header.
    put(&mut o, tags::PATIENT_NAME, VR::PN, patient_name);
    put(&mut o, tags::PATIENT_ID, VR::LO, patient_id);
    put(&mut o, tags::PATIENT_BIRTH_DATE, VR::DA, "");
    put(&mut o, tags::PATIENT_SEX, VR::CS, "");
    put(&mut o, tags::STUDY_INSTANCE_UID, VR::UI, h.study_uid.as_str());
    let (date, time) = h
        .study_datetime
        .map_or((String::new(), String::new()), |t| (t.format("%Y%m%d").to_string(), t.format("%H%M%S").to_string()));
    put(&mut o, tags::STUDY_DATE, VR::DA, date);
    put(&mut o, tags::STUDY_TIME, VR::TM, time);
    put(&mut o, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    put(&mut o, tags::STUDY_ID, VR::SH, "");
    put(&mut o, tags::ACCESSION_NUMBER, VR::SH, accession);
    put(&mut o, tags::STUDY_DESCRIPTION, VR::LO, fitted(&h.study_description));
    // SR Document Series: a new one.
    put(&mut o, tags::MODALITY, VR::CS, "SR");
    put(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, r.uids.series.as_str());
    put(&mut o, tags::SERIES_NUMBER, VR::IS, r.cfg.series_number.to_string());
    let description = if r.shadow {
        "SHADOW — nightscreen AI triage — not verified"
    } else {
        "nightscreen AI triage — not verified"
    };
    put(&mut o, tags::SERIES_DESCRIPTION, VR::LO, description);
    put_seq(&mut o, tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, Vec::new());
    // General and Enhanced General Equipment.
    put(&mut o, tags::MANUFACTURER, VR::LO, "nightscreen");
    put(&mut o, tags::MANUFACTURER_MODEL_NAME, VR::LO, "nightscreen");
    put(&mut o, tags::DEVICE_SERIAL_NUMBER, VR::LO, fitted(r.device_uid));
    let versions: Vec<String> = std::iter::once(r.software())
        .chain(r.models.iter().map(|m| fitted(&format!("{} {}", m.id, m.version))))
        .collect();
    put(&mut o, tags::SOFTWARE_VERSIONS, VR::LO, dicom_core::PrimitiveValue::Strs(versions.into()));
    // SR Document General.
    put(&mut o, tags::INSTANCE_NUMBER, VR::IS, "1");
    let complete = if r.study.files_failed > 0 { "PARTIAL" } else { "COMPLETE" };
    put(&mut o, tags::COMPLETION_FLAG, VR::CS, complete);
    put(&mut o, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    put(&mut o, tags::PRELIMINARY_FLAG, VR::CS, "PRELIMINARY");
    let scored = r.images.iter().map(|i| i.scored_at).max().unwrap_or_else(chrono::Utc::now);
    put(&mut o, tags::CONTENT_DATE, VR::DA, scored.format("%Y%m%d").to_string());
    put(&mut o, tags::CONTENT_TIME, VR::TM, scored.format("%H%M%S").to_string());
    put_seq(&mut o, tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![coded(&r.cfg.procedure)]);
    put_seq(
        &mut o,
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![evidence(h.study_uid.as_str(), r.images)],
    );
    put_seq(&mut o, tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE, vec![scheme(r.cfg)]);
    // SR Document Content: the root container.
    put(&mut o, tags::VALUE_TYPE, VR::CS, "CONTAINER");
    put_seq(&mut o, tags::CONCEPT_NAME_CODE_SEQUENCE, vec![coded(&dcm("126000", "Imaging Measurement Report"))]);
    put(&mut o, tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    template(&mut o, "1500");
    Ok(with_children(o, content::tree(r)))
}

/// The study's images, by series.
fn evidence(study_uid: &str, images: &[ImageEvidence]) -> InMemDicomObject {
    let mut series: Vec<InMemDicomObject> = Vec::new();
    for chunk in images.chunk_by(|a, b| a.series_uid == b.series_uid) {
        let mut s = InMemDicomObject::new_empty();
        put_seq(&mut s, tags::REFERENCED_SOP_SEQUENCE, chunk.iter().map(|i| sop_reference(i, false)).collect());
        put(&mut s, tags::SERIES_INSTANCE_UID, VR::UI, chunk[0].series_uid.as_str());
        series.push(s);
    }
    let mut study = InMemDicomObject::new_empty();
    put_seq(&mut study, tags::REFERENCED_SERIES_SEQUENCE, series);
    put(&mut study, tags::STUDY_INSTANCE_UID, VR::UI, study_uid);
    study
}

fn scheme(cfg: &SrConfig) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    put(&mut item, tags::CODING_SCHEME_DESIGNATOR, VR::SH, cfg.scheme.designator.as_str());
    put(&mut item, tags::CODING_SCHEME_NAME, VR::ST, cfg.scheme.name.as_str());
    put(&mut item, tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION, VR::ST, cfg.scheme.responsible_organization.as_str());
    item
}
