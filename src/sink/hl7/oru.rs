//! One study's result as an HL7 v2.4 ORU^R01 message: MSH, PID, OBR, then
//! an OBX per value (each eye's grade as CE with its probabilities as NM,
//! the band as ST, the reason and the provenance line as TX), all with
//! result status P (preliminary). Segments end in CR; values are escaped.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::Hl7Config;
use crate::sink::fhir::bundle::provenance_words;
use crate::sink::fhir::identity::{is_nhs_number, DocumentSeed, DocumentSubject};
use crate::sink::fhir::observation::EYE_PROBABILITIES;
use crate::triage::desp::EyeOutcome;
use crate::triage::StudyResult;

/// The segment terminator (HL7 v2 §2.5.1: a carriage return).
pub const SEGMENT_END: char = '\r';

/// `text` as an HL7 v2 field value: the delimiters `| ^ ~ \ &` become the
/// escapes `\F\ \S\ \R\ \E\ \T\` (with MSH-2 `^~\&`), so no value can
/// split a field or a component. Line breaks and other control characters,
/// which could end a segment, become spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '~' => out.push_str("\\R\\"),
            '&' => out.push_str("\\T\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// HL7 TS, to the second.
fn timestamp(t: &NaiveDateTime) -> String {
    t.format("%Y%m%d%H%M%S").to_string()
}

/// A DICOM person name (`Family^Given^Middle^Prefix^Suffix`, alphabetic
/// group) as an XPN (`Family^Given^Middle^Suffix^Prefix`).
fn person_name(dicom: &str) -> String {
    let alphabetic = dicom.split('=').next().unwrap_or_default();
    let parts: Vec<String> = alphabetic.split('^').map(escape).collect();
    let part = |i: usize| parts.get(i).map(String::as_str).unwrap_or_default();
    let xpn = [part(0), part(1), part(2), part(4), part(3)];
    let last = xpn.iter().rposition(|p| !p.is_empty()).map_or(0, |i| i + 1);
    xpn[..last].join("^")
}

/// What one message is made from.
pub struct OruInput<'a> {
    pub study: &'a StudyResult,
    pub subject: &'a DocumentSubject<'a>,
    pub seed: &'a DocumentSeed,
    pub band: &'a str,
    pub shadow: bool,
    /// When the run started: the message time, stable across resumes.
    pub started_at: DateTime<Utc>,
    pub software_version: &'a str,
    /// "id version" of the model that made the findings, if any.
    pub equipment: Option<String>,
}

/// OBX builder: numbers the segments and fills the status (OBX-11), the
/// time (OBX-14) and the model as equipment (OBX-18).
struct Observations<'a> {
    segments: Vec<String>,
    observed: String,
    equipment: &'a str,
}

impl Observations<'_> {
    fn push(&mut self, value_type: &str, code: &str, meaning: &str, value: &str, units: &str) {
        let n = self.segments.len() + 1;
        self.segments.push(format!(
            "OBX|{n}|{value_type}|{code}^{}^L||{value}|{units}|||||P|||{}||||{}",
            escape(meaning),
            self.observed,
            self.equipment
        ));
    }

    fn eye(&mut self, side: &str, code: char, eye: &EyeOutcome) {
        let grade = eye.grade.to_string();
        let value = format!("{}^{}^L", escape(&grade), escape(&eye.grade.words()));
        self.push("CE", &format!("DESP-GRADE-{code}"), &format!("DESP grade, {side} eye"), &value, "");
        for (prob, meaning, pick) in EYE_PROBABILITIES {
            if let Some(p) = pick(eye) {
                let code = format!("{}-{code}", prob.to_uppercase());
                self.push("NM", &code, &format!("{meaning}, {side} eye"), &p.to_string(), "1^^UCUM");
            }
        }
    }
}

/// The study's ORU^R01, segments ended by CR.
pub fn build(cfg: &Hl7Config, input: &OruInput<'_>) -> String {
    let header = &input.study.header;
    let now = format!("{}+0000", timestamp(&input.started_at.naive_utc()));
    let control_id = format!("NS{}", input.seed.hex("hl7 message control id", 18));
    let msh = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{now}||ORU^R01^ORU_R01|{control_id}|{}|2.4|||AL|NE|GBR",
        escape(&cfg.sending_application),
        escape(&cfg.sending_facility),
        escape(&cfg.receiving_application),
        escape(&cfg.receiving_facility),
        cfg.processing_id.code(),
    );
    let patient_id = escape(input.subject.patient_id);
    let pid3 = if is_nhs_number(input.subject.patient_id) {
        format!("{patient_id}^^^{}^NH", escape(&cfg.nhs_assigning_authority))
    } else {
        format!("{patient_id}^^^{}^MR", escape(&cfg.local_assigning_authority))
    };
    let pid = format!("PID|1||{pid3}||{}", person_name(&header.patient_name));
    let study_time = header.study_datetime.as_ref().map(timestamp).unwrap_or_default();
    let obr = format!(
        "OBR|1||{}|{}^{}^L|||{study_time}|||||||||||||||{now}|||P",
        escape(&header.accession_number),
        escape(&cfg.service_code),
        escape(&cfg.service_text),
    );
    let equipment = input.equipment.as_deref().map(escape).unwrap_or_default();
    let mut obx = Observations { segments: Vec::new(), observed: now.clone(), equipment: &equipment };
    let (right, left) = input.study.detail.eyes();
    if let Some(eye) = right {
        obx.eye("right", 'R', eye);
    }
    if let Some(eye) = left {
        obx.eye("left", 'L', eye);
    }
    obx.push("ST", "BAND", "Worklist band", &escape(input.band), "");
    obx.push("TX", "REASON", "Reason for the band", &escape(&input.study.reason), "");
    let provenance = provenance_words(input.software_version, input.shadow);
    obx.push("TX", "PROVENANCE", "How this result was made", &escape(&provenance), "");
    let mut message = String::new();
    for segment in [msh, pid, obr].into_iter().chain(obx.segments) {
        message.push_str(&segment);
        message.push(SEGMENT_END);
    }
    message
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::message::{Header, StudyUid};
    use crate::privacy::PseudonymKey;
    use crate::sink::RunStamp;
    use crate::triage::desp::EyeProbs;
    use crate::triage::{Bands, StudyDetail};

    fn message(patient_id: &str, shadow: bool) -> String {
        let key = PseudonymKey::from_hex(&"ab".repeat(32), "test").expect("key");
        let eye = EyeOutcome {
            grade: "R2M1".parse().expect("grade"),
            probs: EyeProbs { referable: Some(0.8), r3: Some(0.1), m1: None, gradable: 0.9 },
        };
        let study = StudyResult {
            rank: 1,
            band: Bands::new(vec!["URGENT".into()]).find("URGENT").expect("band"),
            score: Some(0.8),
            reason: "R2 | M1 ^ suspected".into(),
            header: Arc::new(Header {
                study_uid: StudyUid::new("1.2.3"),
                patient_id: patient_id.into(),
                patient_name: "O'Neil^Ann".into(),
                accession_number: "A&1".into(),
                ..Header::default()
            }),
            modalities: vec![],
            images_scored: 1,
            files_failed: 0,
            files_skipped: 0,
            models: vec![],
            detail: StudyDetail::Desp { right: None, left: Some(eye) },
        };
        let run =
            RunStamp { run_id: "r".into(), software_version: "1".into(), config_sha256: "c".into(), key: key.clone() };
        let subject = DocumentSubject::of(&study, &key).expect("subject");
        let seed = DocumentSeed::new(subject.study_uid, &run, &[], shadow);
        let input = OruInput {
            study: &study,
            subject: &subject,
            seed: &seed,
            band: "URGENT",
            shadow,
            started_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            software_version: "1",
            equipment: Some("dr 1".into()),
        };
        build(&Hl7Config::default(), &input)
    }

    #[test]
    fn a_message_has_its_segments_its_values_escaped_and_says_shadow_in_shadow_runs() {
        let text = message("9434765919", true);
        assert!(text.ends_with(SEGMENT_END) && !text.contains('\n'));
        let segments: Vec<&str> = text.split(SEGMENT_END).filter(|s| !s.is_empty()).collect();
        let msh = "MSH|^~\\&|NIGHTSCREEN|DESP-AI|RIS|TRUST|20231114221320+0000||ORU^R01^ORU_R01|NS";
        assert!(segments[0].starts_with(msh), "{}", segments[0]);
        assert_eq!(segments[1], "PID|1||9434765919^^^NHS^NH||O'Neil^Ann", "an NHS number with its authority");
        assert!(segments[2].starts_with("OBR|1||A\\T\\1|NSAI^"), "{}", segments[2]);
        let codes: Vec<&str> = segments[3..]
            .iter()
            .map(|s| s.split('|').nth(3).and_then(|c| c.split('^').next()).unwrap_or_default())
            .collect();
        assert_eq!(codes, ["DESP-GRADE-L", "P-REFERABLE-L", "P-R3-L", "P-GRADABLE-L", "BAND", "REASON", "PROVENANCE"]);
        assert!(segments[8].contains("|TX|REASON^Reason for the band^L||R2 \\F\\ M1 \\S\\ suspected|"));
        assert!(segments[9].contains("SHADOW — not for clinical use. Made by a machine"), "{}", segments[9]);
        assert!(segments[3..].iter().all(|s| s.split('|').nth(11) == Some("P") && s.ends_with("||||dr 1")));
        let local = message("NS1", false);
        assert!(local.contains("PID|1||NS1^^^NIGHTSCREEN^MR|") && !local.contains("SHADOW"));
        let control_id = |m: &str| m.split('|').nth(9).map(str::to_string);
        assert_ne!(control_id(&text), control_id(&local), "shadow and clinical messages differ");
        assert_eq!(control_id(&local), control_id(&message("NS1", false)), "the same result, the same id");
    }

    #[test]
    fn escaping_leaves_no_delimiter_and_no_segment_break_in_hostile_text() {
        let hostile = "R3|M1^x~y\\z&w\rOBX|99|ST|EVIL\n\u{0}end";
        let escaped = escape(hostile);
        assert_eq!(escaped, "R3\\F\\M1\\S\\x\\R\\y\\E\\z\\T\\w OBX\\F\\99\\F\\ST\\F\\EVIL  end");
        for delimiter in ['|', '^', '~', '&', '\r', '\n'] {
            assert!(!escaped.contains(delimiter), "{delimiter:?} left in {escaped:?}");
        }
        // Every backslash left starts one of the five escapes.
        let mut rest = escaped.as_str();
        while let Some(at) = rest.find('\\') {
            let esc = &rest[at..at + 3];
            assert!(["\\F\\", "\\S\\", "\\R\\", "\\E\\", "\\T\\"].contains(&esc), "{esc:?}");
            rest = &rest[at + 3..];
        }
        assert_eq!(escape("  plain words  "), "plain words");
    }

    #[test]
    fn dicom_names_become_xpn_with_suffix_before_prefix() {
        assert_eq!(person_name("SYNTHETIC^ALICE"), "SYNTHETIC^ALICE");
        assert_eq!(person_name("Doe^John^Q^Dr^Jr"), "Doe^John^Q^Jr^Dr");
        assert_eq!(person_name("O|Brien^Ann=ideographic"), "O\\F\\Brien^Ann");
        assert_eq!(person_name(""), "");
    }
}
