//! `OUT/failed_files.csv`: every input file (or frame) that could not be
//! read, with its path, for whoever has to fix or re-send it.
//!
//! The analyst tables name files only by pseudonym, because paths often
//! carry patient names or accession numbers; this list keeps the path and
//! is identifiable, like the worklist. `file_pseudonym` joins it to
//! `errors/`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name under OUT.
pub const FILE_NAME: &str = "failed_files.csv";

/// One error row's identifiable side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedFile {
    pub path: String,
    pub stage: String,
    pub frame: Option<u32>,
    pub reason: String,
    pub file_pseudonym: String,
}

/// Writes the list, sorted by path, through a temporary file.
///
/// # Errors
/// The file cannot be written.
pub fn write(out: &Path, failures: &[FailedFile]) -> Result<()> {
    let path = out.join(FILE_NAME);
    let mut sorted: Vec<&FailedFile> = failures.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path).then(a.frame.cmp(&b.frame)));
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Output { path: path.clone(), source: std::io::Error::other(e) };
    w.write_record(["path", "stage", "frame", "reason", "file_pseudonym"]).map_err(csv_err)?;
    for f in sorted {
        w.serialize(f).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Output { path: path.clone(), source: std::io::Error::other(e.to_string()) })?;
    super::write_atomically(&path, &bytes)
}
