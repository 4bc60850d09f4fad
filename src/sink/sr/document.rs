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
    // Local time, as the copied study date and time are (no timezone offset
    // is written: it would apply to those too).
    let scored =
        r.images.iter().map(|i| i.scored_at).max().unwrap_or_else(chrono::Utc::now).with_timezone(&chrono::Local);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dicom::laterality::{FundusField, Laterality};
    use crate::message::{Header, StudyUid};
    use crate::privacy::PseudonymKey;
    use crate::triage::desp::{EyeOutcome, EyeProbs, Grade, RGrade};
    use crate::triage::{Band, StudyDetail};

    fn study(header: Header, files_failed: u32) -> StudyResult {
        let outcome = EyeOutcome {
            grade: Grade::Graded { r: RGrade::R2, m1: true },
            probs: EyeProbs { referable: Some(0.8), r3: Some(0.1), m1: Some(0.7), gradable: 0.99 },
        };
        StudyResult {
            rank: 1,
            band: serde_json::from_str::<Band>("1").expect("band"),
            score: Some(0.8),
            reason: "R2 suspected".into(),
            header: Arc::new(header),
            modalities: vec!["OP".into()],
            images_scored: 1,
            files_failed,
            files_skipped: 0,
            models: vec!["dr-screen 1.0".into()],
            detail: StudyDetail::Desp { right: Some(outcome), left: None },
        }
    }

    fn header() -> Header {
        Header {
            study_uid: StudyUid("1.2.3".into()),
            patient_id: "NS1".into(),
            patient_name: "DOE^JANE".into(),
            accession_number: "A1".into(),
            ..Header::default()
        }
    }

    fn image() -> ImageEvidence {
        ImageEvidence {
            study_uid: "1.2.3".into(),
            series_uid: "1.2.3.4".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.77.1.5.1".into(),
            sop_instance_uid: "1.2.3.4.5".into(),
            modality: "OP".into(),
            laterality: Laterality::Right,
            field: FundusField::default(),
            rows: 10,
            columns: 12,
            frames: 1,
            scored_frames: vec![0],
            hits: Vec::new(),
            scored_at: chrono::Utc::now(),
        }
    }

    fn with_report<T>(study: &StudyResult, images: &[ImageEvidence], f: impl FnOnce(&Report<'_>) -> T) -> T {
        let run = RunStamp {
            run_id: "r".into(),
            software_version: "0.1.0".into(),
            config_sha256: "c".into(),
            key: PseudonymKey::from_hex(&"ab".repeat(32), "test").expect("key"),
        };
        let models = [ModelStamp {
            id: "dr-screen".into(),
            version: "1.0".into(),
            sha256: "aa".into(),
            labels: vec![],
            clinical_use: false,
            domain: None,
            second_look: None,
        }];
        let cfg = SrConfig::default();
        let report = Report {
            study,
            images,
            band_name: "ROUTINE",
            run: &run,
            models: &models,
            cfg: &cfg,
            uids: super::super::sr_uids("1.2.3", "0.1.0", "c", &models, false, b""),
            device_uid: "2.25.1",
            shadow: false,
            not_for_clinical_use: true,
        };
        f(&report)
    }

    fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
        obj.get(tag).and_then(|e| e.to_str().ok()).map(|s| s.into_owned()).unwrap_or_default()
    }

    #[test]
    fn the_header_copies_the_study_and_flags_a_partial_preliminary_unverified_result() {
        let obj = with_report(&study(header(), 1), &[image()], dataset).expect("dataset");
        assert_eq!(text(&obj, tags::STUDY_INSTANCE_UID), "1.2.3");
        assert_eq!(text(&obj, tags::PATIENT_ID), "NS1");
        assert_eq!(text(&obj, tags::SOP_CLASS_UID), COMPREHENSIVE_3D_SR);
        assert_eq!(text(&obj, tags::COMPLETION_FLAG), "PARTIAL", "a file of the study failed");
        assert_eq!(text(&obj, tags::PRELIMINARY_FLAG), "PRELIMINARY");
        assert_eq!(text(&obj, tags::VERIFICATION_FLAG), "UNVERIFIED");
        let bytes = with_report(&study(header(), 0), &[image()], encode).expect("encode");
        assert_eq!(&bytes[128..132], b"DICM");
    }

    #[test]
    fn odd_header_values_give_no_document_rather_than_an_invalid_one() {
        let cases = [
            (Header { study_uid: StudyUid(String::new()), ..header() }, "no_study_uid"),
            (Header { study_uid: StudyUid("1.2.abc".into()), ..header() }, "invalid_uid"),
            (Header { patient_id: "A\\B".into(), ..header() }, "bad_header_value"),
            (Header { accession_number: "X".repeat(17), ..header() }, "bad_header_value"),
        ];
        for (h, key) in cases {
            let err = with_report(&study(h, 0), &[image()], dataset).err().map(|e| e.key());
            assert_eq!(err, Some(key));
        }
        let err = with_report(&study(header(), 0), &[], dataset).err().map(|e| e.key());
        assert_eq!(err, Some("no_evidence"));
        let bad_sop = ImageEvidence { sop_instance_uid: "1.02".into(), ..image() };
        let err = with_report(&study(header(), 0), &[bad_sop], dataset).err().map(|e| e.key());
        assert_eq!(err, Some("invalid_uid"));
        // Descriptions are cut to fit instead.
        let long = Header { study_description: "d\\".repeat(50), ..header() };
        let obj = with_report(&study(long, 0), &[image()], dataset).expect("dataset");
        assert_eq!(text(&obj, tags::STUDY_DESCRIPTION).chars().count(), 64);
    }
}
