//! One study's result as a FHIR R4 Bundle: a preliminary DiagnosticReport,
//! an Observation per finding (each DESP eye, or the study's placement),
//! the Device (model) that made them and the ImagingStudy they are about.
//!
//! The Bundle is a **transaction** rather than a collection: the file is
//! meant for a FHIR server (or an integration engine that posts it), and a
//! transaction says how each entry lands. Every entry is conditional, so
//! sending a bundle twice changes nothing: our own resources (report,
//! observations) are `PUT` by their derived identifier, and the ImagingStudy
//! and Device, which the record may hold already, are created only if no
//! resource has their identifier (`ifNoneExist`). The Patient is not an
//! entry: the record holds them, and references name them by identifier.

use super::identity::{DocumentSeed, DocumentSubject};
use super::model::*;
use super::observation::{eye_observation, placement_observation, ObservationBase, EYES};
use super::FhirConfig;
use crate::sink::worklist::SHADOW_NOTICE;
use crate::sink::ModelStamp;
use crate::triage::StudyResult;

/// nightscreen's own codes (observation and component codes), a local
/// code system documented in README ("FHIR and HL7 v2").
pub const NIGHTSCREEN_CODES: &str = "urn:nightscreen:code";
/// Worklist band names as codes.
pub const BAND_CODES: &str = "urn:nightscreen:band";
/// Where the model digests live as identifiers.
pub const MODEL_SHA256: &str = "urn:nightscreen:model-sha256";
/// Identifiers that are URIs (our derived `urn:uuid:`s).
pub const URI_SYSTEM: &str = "urn:ietf:rfc:3986";
pub const DICOM_UID_SYSTEM: &str = "urn:dicom:uid";
pub const DICOM_CODES: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub(super) const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const DIAGNOSTIC_SECTION: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const IDENTIFIER_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

/// Everything one study's bundle is made from.
pub struct BundleInput<'a> {
    pub study: &'a StudyResult,
    pub subject: &'a DocumentSubject<'a>,
    pub seed: &'a DocumentSeed,
    /// The models that scored the study; the first made the findings.
    pub models: Vec<&'a ModelStamp>,
    pub band: &'a str,
    pub shadow: bool,
    /// When the run started (stable across resumes), FHIR instant.
    pub issued: &'a str,
    pub software_version: &'a str,
}

/// Free text as FHIR `string`s allow it: control characters and unusual
/// whitespace become spaces, ends are trimmed.
pub fn clean_text(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if matches!(c, '\r' | '\n' | '\t') || !(c.is_control() || c.is_whitespace()) { c } else { ' ' })
        .collect();
    cleaned.trim().to_string()
}

/// A FHIR `code`: no whitespace but single inner spaces.
pub(super) fn clean_code(s: &str) -> String {
    clean_text(s).split_whitespace().collect::<Vec<_>>().join(" ")
}

fn entry(seed: &DocumentSeed, role: &str) -> String {
    format!("urn:uuid:{}", seed.uuid(role))
}

pub(super) fn own_identifier(full_url: &str) -> Identifier {
    Identifier { kind: None, system: URI_SYSTEM.into(), value: full_url.into() }
}

/// A conditional update of one of our resources by its identifier.
fn put(kind: &str, full_url: &str) -> Request {
    Request { method: Method::Put, url: format!("{kind}?identifier={URI_SYSTEM}|{full_url}"), if_none_exist: None }
}

fn create_if_none(kind: &str, identifier: &Identifier) -> Request {
    Request {
        method: Method::Post,
        url: kind.into(),
        if_none_exist: Some(format!("identifier={}|{}", identifier.system, identifier.value)),
    }
}

/// The sentence every report ends with; SHADOW first in shadow runs.
pub fn provenance_words(software_version: &str, shadow: bool) -> String {
    let made = format!("Made by a machine (nightscreen {software_version}): preliminary, not verified by a grader.");
    if shadow {
        format!("{SHADOW_NOTICE}. {made}")
    } else {
        made
    }
}

/// The report's conclusion: the band and the worklist's reason in words.
pub fn conclusion(band: &str, reason: &str, software_version: &str, shadow: bool) -> String {
    format!("{band}: {}. {}", clean_text(reason), provenance_words(software_version, shadow))
}

fn patient(cfg: &FhirConfig, subject: &DocumentSubject<'_>) -> Reference {
    let system = if super::identity::is_nhs_number(subject.patient_id) {
        &cfg.nhs_number_system
    } else {
        &cfg.patient_id_system
    };
    Reference {
        reference: String::new(),
        kind: "Patient".into(),
        identifier: Some(Identifier { kind: None, system: system.clone(), value: subject.patient_id.into() }),
    }
}

fn imaging_study(cfg: &FhirConfig, input: &BundleInput<'_>, subject: Reference) -> ImagingStudy {
    let header = &input.study.header;
    let mut identifier = vec![Identifier {
        kind: None,
        system: DICOM_UID_SYSTEM.into(),
        value: format!("urn:oid:{}", input.subject.study_uid),
    }];
    let accession = clean_text(&header.accession_number);
    if !accession.is_empty() {
        identifier.push(Identifier {
            kind: Some(CodeableConcept::coded(Coding::new(IDENTIFIER_TYPE, "ACSN", "Accession ID"), "")),
            system: cfg.accession_system.clone(),
            value: accession,
        });
    }
    ImagingStudy {
        identifier,
        status: ImagingStudyStatus::Available,
        modality: input
            .study
            .modalities
            .iter()
            .map(|m| clean_code(m))
            .filter(|m| !m.is_empty())
            .map(|m| Coding::new(DICOM_CODES, &m, ""))
            .collect(),
        subject,
        description: clean_text(&header.study_description),
    }
}

fn device(model: &ModelStamp, software_version: &str) -> Device {
    let version = |kind: &str, value: &str| DeviceVersion { kind: CodeableConcept::text(kind), value: value.into() };
    Device {
        identifier: vec![Identifier { kind: None, system: MODEL_SHA256.into(), value: model.sha256.clone() }],
        manufacturer: "nightscreen".into(),
        device_name: vec![DeviceName { name: clean_text(&model.id), kind: DeviceNameType::ModelName }],
        version: vec![
            version("model", &clean_text(&model.version)),
            version("software", &format!("nightscreen {software_version}")),
        ],
        note: if model.clinical_use {
            Vec::new()
        } else {
            vec![Annotation { text: "Not for clinical use (the model card says so).".into() }]
        },
    }
}

/// The study's bundle.
pub fn build(cfg: &FhirConfig, input: &BundleInput<'_>) -> Bundle {
    let seed = input.seed;
    let subject = patient(cfg, input.subject);
    let (report_url, study_url) = (entry(seed, "report"), entry(seed, "imaging-study"));
    let mut entries = Vec::new();

    let study = imaging_study(cfg, input, subject.clone());
    let study_request = create_if_none("ImagingStudy", &study.identifier[0]);
    entries.push(Entry {
        full_url: study_url.clone(),
        resource: Resource::ImagingStudy(study),
        request: study_request,
    });

    let device_urls: Vec<String> = input.models.iter().map(|m| entry(seed, &format!("device {}", m.sha256))).collect();
    for (model, url) in input.models.iter().zip(&device_urls) {
        let device = device(model, input.software_version);
        let request = create_if_none("Device", &device.identifier[0]);
        entries.push(Entry { full_url: url.clone(), resource: Resource::Device(device), request });
    }

    let base = ObservationBase {
        subject: &subject,
        study_url: &study_url,
        device_url: device_urls.first().map(String::as_str),
        effective: input.study.header.study_datetime.map(|t| t.format("%Y-%m-%d").to_string()),
        issued: input.issued,
    };
    let (right, left) = input.study.detail.eyes();
    let mut observations = Vec::new();
    for (eye, outcome) in EYES.into_iter().zip([right, left]) {
        if let Some(outcome) = outcome {
            let url = entry(seed, &format!("observation {}", eye.0));
            observations.push((url.clone(), eye_observation(cfg, &base, &url, eye, outcome)));
        }
    }
    if observations.is_empty() {
        let url = entry(seed, "observation placement");
        observations.push((url.clone(), placement_observation(&base, &url, input)));
    }

    let report = DiagnosticReport {
        identifier: vec![own_identifier(&report_url)],
        status: Status::Preliminary,
        category: vec![CodeableConcept::coded(Coding::new(DIAGNOSTIC_SECTION, "RAD", "Radiology"), "Imaging")],
        code: CodeableConcept::coded(
            Coding::new(&cfg.report_code.system, &cfg.report_code.code, &cfg.report_code.display),
            &cfg.report_code.display,
        ),
        subject: subject.clone(),
        effective_date_time: base.effective.clone(),
        issued: input.issued.into(),
        imaging_study: vec![Reference::to(&study_url)],
        result: observations.iter().map(|(url, _)| Reference::to(url)).collect(),
        conclusion: conclusion(input.band, &input.study.reason, input.software_version, input.shadow),
    };
    for (url, obs) in observations {
        let request = put("Observation", &url);
        entries.push(Entry { full_url: url, resource: Resource::Observation(Box::new(obs)), request });
    }
    let request = put("DiagnosticReport", &report_url);
    entries.push(Entry { full_url: report_url, resource: Resource::DiagnosticReport(report), request });
    Bundle { id: seed.uuid("bundle"), kind: "transaction", entry: entries }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::{Header, StudyUid};
    use crate::privacy::PseudonymKey;
    use crate::sink::fhir::identity::NoDocument;
    use crate::sink::RunStamp;
    use crate::triage::desp::{EyeOutcome, EyeProbs};
    use crate::triage::{Bands, StudyDetail};

    fn study(header: Header, detail: StudyDetail) -> StudyResult {
        StudyResult {
            rank: 1,
            band: Bands::new(vec!["URGENT".into()]).find("URGENT").expect("band"),
            score: Some(0.7),
            reason: "R3 suspected\u{0}|^~\\&\n".into(),
            header: Arc::new(header),
            modalities: vec![" OP\u{b} ".into(), "\t".into()],
            images_scored: 2,
            files_failed: 0,
            files_skipped: 0,
            models: vec!["dr 1".into()],
            detail,
        }
    }

    fn key() -> PseudonymKey {
        PseudonymKey::from_hex(&"ab".repeat(32), "test").expect("key")
    }

    fn bundle_json(study: &StudyResult, shadow: bool) -> serde_json::Value {
        let run = RunStamp { run_id: "r".into(), software_version: "1".into(), config_sha256: "c".into(), key: key() };
        let model = ModelStamp {
            id: "dr".into(),
            version: "1".into(),
            sha256: "ab".into(),
            labels: vec![],
            clinical_use: false,
            domain: None,
            second_look: None,
        };
        let subject = DocumentSubject::of(study, &key()).expect("subject");
        let seed = DocumentSeed::new(subject.study_uid, &run, std::slice::from_ref(&model), shadow);
        let input = BundleInput {
            study,
            subject: &subject,
            seed: &seed,
            models: vec![&model],
            band: "URGENT",
            shadow,
            issued: "2026-12-01T00:00:00Z",
            software_version: "1",
        };
        serde_json::to_value(build(&FhirConfig::default(), &input)).expect("json")
    }

    fn header(patient_id: &str) -> Header {
        Header {
            study_uid: StudyUid::new("1.2.826.0.1.3680043.8.498.7"),
            patient_id: patient_id.into(),
            accession_number: "\u{c}A|1\u{0}".into(),
            study_description: " \u{a0} ".into(),
            ..Header::default()
        }
    }

    #[test]
    fn hostile_header_text_is_cleaned_and_empty_fields_are_left_out() {
        let eye = EyeOutcome {
            grade: "R3M0".parse().expect("grade"),
            probs: EyeProbs { referable: Some(0.9), r3: None, m1: Some(0.1), gradable: 0.95 },
        };
        let s = study(header("NS1"), StudyDetail::Desp { right: Some(eye), left: None });
        let json = bundle_json(&s, true);
        let text = json.to_string();
        assert!(!text.contains("\\u0000") && !text.contains("\\f") && !text.contains("\\u000b"), "{text}");
        assert!(!text.contains("\"description\""), "blank description left out");
        assert!(!text.contains("\"\""), "no empty strings: {text}");
        let entries = json["entry"].as_array().expect("entries");
        let kinds: Vec<&str> = entries.iter().map(|e| e["resource"]["resourceType"].as_str().unwrap_or("")).collect();
        assert_eq!(kinds, ["ImagingStudy", "Device", "Observation", "DiagnosticReport"], "one eye, one observation");
        let study = &entries[0]["resource"];
        assert_eq!(study["identifier"][1]["value"], "A|1");
        assert_eq!(study["modality"].as_array().map(Vec::len), Some(1), "blank modality dropped");
        assert_eq!(study["subject"]["identifier"]["system"], "urn:nightscreen:patient-id");
        let obs = &entries[2]["resource"];
        let codes: Vec<&str> = obs["component"]
            .as_array()
            .expect("components")
            .iter()
            .filter_map(|c| c["code"]["coding"][0]["code"].as_str())
            .collect();
        assert_eq!(codes, ["272741003", "p-referable", "p-m1", "p-gradable"], "absent p(R3) left out");
        assert_eq!(obs["component"][0]["valueCodeableConcept"]["coding"][0]["code"], "24028007");
        let conclusion = entries[3]["resource"]["conclusion"].as_str().expect("conclusion");
        assert!(conclusion.starts_with("URGENT: R3 suspected |^~\\&. SHADOW"), "{conclusion}");
        assert!(conclusion.contains("not verified"), "{conclusion}");
        assert_eq!(entries[1]["resource"]["note"][0]["text"], "Not for clinical use (the model card says so).");
    }

    #[test]
    fn an_nhs_number_claims_the_nhs_system_and_rules_studies_get_a_placement() {
        let s = study(header("9434765919"), StudyDetail::None);
        let json = bundle_json(&s, false);
        let entries = json["entry"].as_array().expect("entries");
        let report = &entries[entries.len() - 1]["resource"];
        assert_eq!(report["subject"]["identifier"]["system"], "https://fhir.nhs.uk/Id/nhs-number");
        let obs = &entries[2]["resource"];
        assert_eq!(obs["code"]["coding"][0]["code"], "worklist-placement");
        assert_eq!(obs["valueCodeableConcept"]["coding"][0]["code"], "URGENT");
        assert!(!report["conclusion"].as_str().unwrap_or("SHADOW").contains("SHADOW"));
        assert_eq!(json, bundle_json(&s, false), "the same result, the same bundle");
    }

    #[test]
    fn studies_without_a_usable_uid_or_patient_get_no_document() {
        let cases = [
            ("", "P1", NoDocument::NoStudyUid),
            ("1.2.x", "P1", NoDocument::MalformedStudyUid),
            ("1.2", " ", NoDocument::NoPatientId),
            ("1.2", "P\u{0}1", NoDocument::MalformedPatientId),
        ];
        for (uid, patient, reason) in cases {
            let h = Header { study_uid: StudyUid::new(uid), patient_id: patient.into(), ..Header::default() };
            let s = study(h, StudyDetail::None);
            assert_eq!(DocumentSubject::of(&s, &key()).map(|_| ()), Err(reason), "{uid:?} {patient:?}");
        }
    }
}
