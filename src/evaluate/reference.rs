//! The reference standard: a programme's human grades, one row per eye, in
//! the format `nightscreen synth` writes as `truth.csv`
//! (`study_uid, patient_id, eye, r_grade, m_grade, gradable, outcome`).
//!
//! Programmes fill this from their grading system, so every row is checked
//! and a bad one is refused with its line number rather than guessed at.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Error;
use crate::dicom::laterality::Laterality;

/// One eye's reference grade.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceEye {
    pub study_uid: String,
    /// `Right` or `Left`: the reference grades one eye per row.
    pub eye: Laterality,
    pub gradable: bool,
    /// Retinopathy grade 0–3 (meaningless when not gradable).
    pub retinopathy: u8,
    pub maculopathy: bool,
}

impl ReferenceEye {
    /// R2, R3 or M1 on a gradable eye: the DESP referral threshold.
    pub fn referable(&self) -> bool {
        self.gradable && (self.retinopathy >= 2 || self.maculopathy)
    }
}

/// Every eye of the reference, and each study's reference outcome.
#[derive(Debug, Default)]
pub struct Reference {
    pub eyes: Vec<ReferenceEye>,
    /// Study UID → outcome column (a band name such as "URGENT"), when given.
    pub outcomes: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct Row {
    study_uid: String,
    eye: String,
    r_grade: String,
    m_grade: String,
    gradable: String,
    #[serde(default)]
    outcome: String,
}

/// Reads and checks a reference CSV.
///
/// # Errors
/// The file cannot be read, a required column is missing, or a row holds a
/// value that is not a grade (the error names the line).
pub fn read(path: &Path) -> Result<Reference, Error> {
    let bad = |line: u64, what: String| Error::Reference { path: path.to_path_buf(), line, what };
    let mut reader = csv::Reader::from_path(path).map_err(|e| reading(path, e))?;
    let mut reference = Reference::default();
    let mut seen = BTreeMap::new();
    for row in reader.deserialize::<Row>() {
        let row = row.map_err(|e| reading(path, e))?;
        // Header is line 1; records follow one per line.
        let line = reference.eyes.len() as u64 + 2;
        let uid = row.study_uid.trim().to_string();
        if uid.is_empty() {
            return Err(bad(line, "empty study_uid".into()));
        }
        let eye = match row.eye.trim().to_ascii_uppercase().as_str() {
            "R" | "RIGHT" | "OD" => Laterality::Right,
            "L" | "LEFT" | "OS" => Laterality::Left,
            other => return Err(bad(line, format!("eye {other:?} is not R or L"))),
        };
        if let Some(first) = seen.insert((uid.clone(), eye), line) {
            return Err(bad(line, format!("a second grade for this eye (first on line {first})")));
        }
        let gradable = parse_bool(&row.gradable)
            .ok_or_else(|| bad(line, format!("gradable {:?} is not true or false", row.gradable)))?;
        let (retinopathy, maculopathy) = if gradable {
            let r = parse_grade(&row.r_grade, 'R', 3)
                .ok_or_else(|| bad(line, format!("r_grade {:?} is not R0–R3", row.r_grade)))?;
            let m = parse_grade(&row.m_grade, 'M', 1)
                .ok_or_else(|| bad(line, format!("m_grade {:?} is not M0 or M1", row.m_grade)))?;
            (r, m == 1)
        } else {
            (0, false)
        };
        if !row.outcome.trim().is_empty() {
            reference.outcomes.insert(uid.clone(), row.outcome.trim().to_string());
        }
        reference.eyes.push(ReferenceEye { study_uid: uid, eye, gradable, retinopathy, maculopathy });
    }
    if reference.eyes.is_empty() {
        return Err(Error::Reference { path: path.to_path_buf(), line: 1, what: "no graded eyes".into() });
    }
    Ok(reference)
}

fn reading(path: &Path, source: csv::Error) -> Error {
    Error::ReferenceCsv { path: PathBuf::from(path), source }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" => Some(true),
        "false" | "0" | "no" | "n" => Some(false),
        _ => None,
    }
}

/// "R2", "r2" or "2" → 2, when no more than `max`.
fn parse_grade(text: &str, letter: char, max: u8) -> Option<u8> {
    let text = text.trim();
    let digits = text.strip_prefix(letter).or_else(|| text.strip_prefix(letter.to_ascii_lowercase())).unwrap_or(text);
    digits.parse::<u8>().ok().filter(|&g| g <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Reference, Error> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("truth.csv");
        std::fs::write(&path, text).expect("write");
        read(&path)
    }

    #[test]
    fn reads_synth_rows_and_names_the_bad_line() {
        let header = "study_uid,patient_id,eye,r_grade,m_grade,gradable,outcome\n";
        let good = read_text(&format!("{header}1.2,P,R,R3,M0,true,URGENT\n1.2,P,L,U,U,false,URGENT\n")).expect("good");
        assert_eq!(good.eyes.len(), 2);
        assert!(good.eyes[0].referable() && !good.eyes[1].referable());
        assert_eq!(good.outcomes["1.2"], "URGENT");

        let err =
            read_text(&format!("{header}1.2,P,R,R3,M0,true,URGENT\n1.2,P,L,R7,M0,true,URGENT\n")).expect_err("R7");
        assert!(err.to_string().contains("line 3") && err.to_string().contains("R7"), "{err}");
        let twice = read_text(&format!("{header}1.2,P,R,R0,M0,true,\n1.2,P,right,R0,M0,true,\n")).expect_err("twice");
        assert!(twice.to_string().contains("first on line 2"), "{twice}");
        assert!(read_text("study_uid,eye\n1.2,R\n").is_err(), "missing columns");
    }
}
