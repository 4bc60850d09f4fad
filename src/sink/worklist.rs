//! The graders' worklist: one row per study, most urgent first, each saying
//! why in words. Unlike the analyst tables it carries patient identifiers,
//! because a grader must find the patient; keep it where clinical data lives.
//! The same rows go to `worklist.html` ([`super::html`]).

use std::path::Path;

use serde::{Serialize, Serializer};

use crate::error::{Error, Result};
use crate::triage::{Bands, Grade, StudyResult};

/// What every row of a shadow-mode worklist says first.
pub const SHADOW_NOTICE: &str = "SHADOW — not for clinical use";

/// One worklist row, as written to CSV and JSON.
#[derive(Debug, Serialize)]
pub struct WorklistRow<'a> {
    /// The study the row shows, for the page's own cells (thumbnails, eyes).
    #[serde(skip)]
    pub study: &'a StudyResult,
    /// [`SHADOW_NOTICE`] in shadow mode, else empty: on every row, so no
    /// copy or filter of the list loses it.
    pub notice: &'a str,
    pub rank: u32,
    pub band: &'a str,
    pub score: Option<f32>,
    pub reason: &'a str,
    /// DESP grade of each eye ("R2M0", "U"), empty when not graded.
    #[serde(serialize_with = "grade_text")]
    pub right_eye: Option<Grade>,
    #[serde(serialize_with = "grade_text")]
    pub left_eye: Option<Grade>,
    pub patient_id: &'a str,
    pub patient_name: &'a str,
    pub accession_number: &'a str,
    pub study_datetime: Option<String>,
    pub study_description: &'a str,
    pub modalities: String,
    pub images_scored: u32,
    pub files_failed: u32,
    pub files_skipped: u32,
    pub study_uid: &'a str,
    pub models: String,
}

/// The worklist's rows, in the studies' order (most urgent first): the
/// one definition that CSV, JSON and HTML all write.
pub fn rows<'a>(studies: &'a [StudyResult], bands: &'a Bands, shadow: bool) -> Vec<WorklistRow<'a>> {
    studies
        .iter()
        .map(|s| WorklistRow {
            study: s,
            notice: if shadow { SHADOW_NOTICE } else { "" },
            rank: s.rank,
            band: bands.name(s.band),
            score: s.score.map(|v| (v * 10_000.0).round() / 10_000.0),
            reason: &s.reason,
            right_eye: s.detail.eyes().0.map(|e| e.grade),
            left_eye: s.detail.eyes().1.map(|e| e.grade),
            patient_id: &s.header.patient_id,
            patient_name: &s.header.patient_name,
            accession_number: &s.header.accession_number,
            study_datetime: s.header.study_datetime.map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string()),
            study_description: &s.header.study_description,
            modalities: s.modalities.join("/"),
            images_scored: s.images_scored,
            files_failed: s.files_failed,
            files_skipped: s.files_skipped,
            study_uid: s.header.study_uid.as_str(),
            models: s.models.join("; "),
        })
        .collect()
}

/// A grade as its text ("R2M1", "U"); an eye not graded as "", as the
/// worklist has always written it.
fn grade_text<S: Serializer>(grade: &Option<Grade>, out: S) -> std::result::Result<S::Ok, S::Error> {
    match grade {
        Some(grade) => out.collect_str(grade),
        None => out.serialize_str(""),
    }
}

/// Writes `worklist.csv` and `worklist.json` of [`rows`] into `out` (via
/// temporary files).
///
/// # Errors
/// A file cannot be written.
pub fn write(out: &Path, rows: &[WorklistRow<'_>]) -> Result<()> {
    let csv_path = out.join(super::names::WORKLIST_CSV);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| Error::Output { path, source: e }
    };
    let mut csv_bytes = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut csv_bytes);
        for row in rows {
            w.serialize(row).map_err(|e| Error::Output { path: csv_path.clone(), source: std::io::Error::other(e) })?;
        }
        w.flush().map_err(io(&csv_path))?;
    }
    if rows.is_empty() {
        // csv writes the header with the first row; an empty worklist still
        // gets one, taken from the row type so it cannot drift from it.
        csv_bytes = csv_header().map_err(|source| Error::Output { path: csv_path.clone(), source })?;
    }
    super::write_atomically(&csv_path, &csv_bytes)?;
    let json_path = out.join(super::names::WORKLIST_JSON);
    let json = serde_json::to_vec_pretty(rows)
        .map_err(|e| Error::Output { path: json_path.clone(), source: std::io::Error::other(e) })?;
    super::write_atomically(&json_path, &json)
}

/// The CSV header line of [`WorklistRow`]: what csv writes before a row.
fn csv_header() -> std::io::Result<Vec<u8>> {
    // Any row gives the header: one of an empty study in a one-band table.
    let bands = Bands::new(vec![String::new()]);
    let study = StudyResult {
        rank: 0,
        band: bands.last(),
        score: None,
        reason: String::new(),
        header: Default::default(),
        modalities: Vec::new(),
        images_scored: 0,
        files_failed: 0,
        files_skipped: 0,
        models: Vec::new(),
        detail: Default::default(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows(std::slice::from_ref(&study), &bands, false) {
        w.serialize(row).map_err(std::io::Error::other)?;
    }
    let bytes = w.into_inner().map_err(|e| std::io::Error::other(e.to_string()))?;
    let end = bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| i + 1);
    Ok(bytes[..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_worklist_has_the_row_types_header() {
        let header = String::from_utf8(csv_header().expect("header")).expect("utf-8");
        assert_eq!(
            header,
            "notice,rank,band,score,reason,right_eye,left_eye,patient_id,patient_name,accession_number,\
             study_datetime,study_description,modalities,images_scored,files_failed,files_skipped,study_uid,models\n"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), &[]).expect("write");
        assert_eq!(std::fs::read_to_string(dir.path().join(super::super::names::WORKLIST_CSV)).expect("csv"), header);
    }
}
