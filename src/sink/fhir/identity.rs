//! Who and what a result document is about, shared by the FHIR and HL7
//! writers: whether a study can have a document at all, which patient
//! identifier system its PatientID may claim, and the deterministic ids
//! that make re-writing (and re-sending) a document change nothing.

use sha2::{Digest, Sha256};

use crate::privacy::{Kind, PseudonymKey};
use crate::sink::{ModelStamp, RunStamp};
use crate::triage::StudyResult;

/// Why a study gets no result document. Counted and logged by reason
/// (never with the study's identifiers); the run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoDocument {
    /// No StudyInstanceUID: nothing to file the result under.
    NoStudyUid,
    /// A StudyInstanceUID that is not a DICOM UID (digits and dots,
    /// at most 64 characters, no empty or zero-led component).
    MalformedStudyUid,
    /// No PatientID: the record could not attach the result to anyone.
    NoPatientId,
    /// A PatientID with control characters: written as is it would break
    /// the documents, cleaned it would name someone else.
    MalformedPatientId,
}

impl NoDocument {
    /// The reason as logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoStudyUid => "no StudyInstanceUID",
            Self::MalformedStudyUid => "StudyInstanceUID is not a valid UID",
            Self::NoPatientId => "no PatientID",
            Self::MalformedPatientId => "PatientID has control characters",
        }
    }
}

/// What a document needs of a study: its UID, its patient and its file name.
#[derive(Debug, Clone)]
pub struct DocumentSubject<'a> {
    pub study_uid: &'a str,
    pub patient_id: &'a str,
    /// The studies table's `study_pseudonym`: the document's file name.
    pub study_pseudonym: String,
}

impl<'a> DocumentSubject<'a> {
    /// The study's subject, or why it cannot have a document.
    ///
    /// # Errors
    /// The study lacks a usable StudyInstanceUID or PatientID.
    pub fn of(study: &'a StudyResult, key: &PseudonymKey) -> Result<Self, NoDocument> {
        let study_uid = study.header.study_uid.as_str();
        if study_uid.is_empty() {
            return Err(NoDocument::NoStudyUid);
        }
        if !is_dicom_uid(study_uid) {
            return Err(NoDocument::MalformedStudyUid);
        }
        // DICOM pads values with spaces (and some writers with NUL).
        let patient_id = study.header.patient_id.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if patient_id.is_empty() {
            return Err(NoDocument::NoPatientId);
        }
        if patient_id.chars().any(char::is_control) {
            return Err(NoDocument::MalformedPatientId);
        }
        let study_pseudonym = key.pseudonym(Kind::Study, study_uid).ok_or(NoDocument::NoStudyUid)?;
        Ok(Self { study_uid, patient_id, study_pseudonym })
    }
}

/// A DICOM UID (PS3.5 §9.1): components of digits separated by dots, none
/// empty or with a leading zero, at most 64 characters. Also what the
/// `urn:oid:` form needs.
pub fn is_dicom_uid(uid: &str) -> bool {
    uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

/// Whether `id` is an NHS number: ten digits whose last is the modulus-11
/// check digit of the first nine (weights 10 down to 2; a remainder giving
/// check 10 is never issued, check 11 is written 0).
pub fn is_nhs_number(id: &str) -> bool {
    let digits: Vec<u32> = id.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != 10 || id.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9].iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        c => c,
    };
    check == digits[9]
}

/// Everything a study's documents are derived from: the study, the
/// software, the config, the models and shadow mode (a shadow result must
/// never replace a clinical one on the server). Same inputs, same ids.
#[derive(Debug, Clone)]
pub struct DocumentSeed {
    digest: [u8; 32],
}

impl DocumentSeed {
    pub fn new(study_uid: &str, run: &RunStamp, models: &[ModelStamp], shadow: bool) -> Self {
        let mut h = Sha256::new();
        let mode: &[u8] = if shadow { b"shadow" } else { b"clinical" };
        let parts = [b"nightscreen result document".as_slice(), study_uid.as_bytes(), run.software_version.as_bytes()];
        for part in parts.into_iter().chain([run.config_sha256.as_bytes(), mode]) {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let mut digests: Vec<&str> = models.iter().map(|m| m.sha256.as_str()).collect();
        digests.sort_unstable();
        for d in digests {
            h.update((d.len() as u64).to_be_bytes());
            h.update(d.as_bytes());
        }
        Self { digest: h.finalize().into() }
    }

    fn derive(&self, role: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.digest);
        h.update(role.as_bytes());
        h.finalize().into()
    }

    /// A UUID for one part of the documents (`role`, e.g. "observation right"),
    /// in the RFC 9562 version 8 (custom) layout.
    pub fn uuid(&self, role: &str) -> String {
        let mut b = self.derive(role);
        b[6] = (b[6] & 0x0f) | 0x80;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(&b[..16]);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }

    /// `len` upper-case hex digits for one part (HL7 message control ids).
    pub fn hex(&self, role: &str, len: usize) -> String {
        let mut h = hex::encode_upper(self.derive(role));
        h.truncate(len);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_pass_the_modulus_11_check_and_others_do_not() {
        // Published test numbers (9 million range) and a hand-checked one.
        for valid in ["9434765919", "9999999999", "4010232137", "9434765870"] {
            assert!(is_nhs_number(valid), "{valid} is valid");
        }
        for invalid in
            ["9434765918", "943476591", "94347659190", "NS00000001", "943 476 5919", "", "１２３４５６７８９０"]
        {
            assert!(!is_nhs_number(invalid), "{invalid:?} is not an NHS number");
        }
        // Check digit 10 is never issued: 000000006 sums to 12, remainder 1.
        assert!((0..10).all(|last| !is_nhs_number(&format!("000000006{last}"))));
    }

    #[test]
    fn only_well_formed_uids_are_taken() {
        assert!(is_dicom_uid("1.2.826.0.1.3680043.8.498.1"));
        for bad in ["", "1..2", "1.02", ".1", "1.2.", "1.2.3a", "1.2 3", &"1.".repeat(40)] {
            assert!(!is_dicom_uid(bad), "{bad:?}");
        }
    }

    #[test]
    fn seeds_give_stable_distinct_version_8_uuids() {
        let run = RunStamp {
            run_id: "r1".into(),
            software_version: "1".into(),
            config_sha256: "c".into(),
            key: PseudonymKey::from_hex(&"ab".repeat(32), "test").expect("key"),
        };
        let other_run = RunStamp { run_id: "r2".into(), ..run.clone() };
        let a = DocumentSeed::new("1.2.3", &run, &[], false);
        let same = DocumentSeed::new("1.2.3", &other_run, &[], false);
        assert_eq!(a.uuid("report"), same.uuid("report"), "the run id is not an input");
        assert_ne!(a.uuid("report"), a.uuid("device"));
        assert_ne!(a.uuid("report"), DocumentSeed::new("1.2.4", &run, &[], false).uuid("report"));
        assert_ne!(a.uuid("report"), DocumentSeed::new("1.2.3", &run, &[], true).uuid("report"), "shadow");
        let newer = RunStamp { config_sha256: "d".into(), ..run.clone() };
        assert_ne!(a.uuid("report"), DocumentSeed::new("1.2.3", &newer, &[], false).uuid("report"));
        let id = a.uuid("report");
        assert_eq!((id.len(), &id[14..15]), (36, "8"));
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "RFC 9562 variant: {id}");
        assert_eq!(a.hex("msg", 18).len(), 18);
    }
}
