//! The manifest: every instance a DICOMweb input will fetch, planned once
//! by QIDO-RS and frozen in OUT, so a resumed or retried run fetches the
//! same instances whatever arrived at the server since.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::message::{SeriesUid, SopInstanceUid, StudyUid, WebInstance};

/// The file in the run's folder holding every remote input's manifest.
pub const FILE_NAME: &str = "source-manifest.json";
const FORMAT: u32 = 1;

/// One remote input's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The input as given (`dicomweb:NAME?…`): what a resumed run must match.
    pub input: String,
    pub source: String,
    /// The server's root, as configured (never holding credentials).
    pub url: String,
    /// The study query as sent, relative dates resolved.
    pub query: Vec<(String, String)>,
    pub planned_at: chrono::DateTime<chrono::Utc>,
    /// Requests the plan took (studies windows, series, instances).
    pub requests: u32,
    pub studies: Vec<PlannedStudy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStudy {
    pub study: StudyUid,
    /// NumberOfStudyRelatedInstances, when the server said.
    pub instances_in_study: Option<u32>,
    pub series: Vec<PlannedSeries>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSeries {
    pub series: SeriesUid,
    pub modality: String,
    pub instances: Vec<PlannedInstance>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedInstance {
    pub sop: SopInstanceUid,
    pub sop_class: String,
    /// AvailableTransferSyntaxUID, when the server's search returns it
    /// (Orthanc 1.10 does not; the fetch asks for the stored syntax anyway).
    pub transfer_syntax: Option<String>,
    pub instance_number: Option<i64>,
}

impl Manifest {
    /// Every instance, study by study, series by series.
    pub fn instances(&self) -> impl Iterator<Item = (WebInstance, &PlannedInstance)> + '_ {
        self.studies.iter().flat_map(move |st| {
            st.series.iter().flat_map(move |se| {
                se.instances.iter().map(move |i| {
                    (WebInstance::new(&self.source, st.study.clone(), se.series.clone(), i.sop.clone()), i)
                })
            })
        })
    }

    pub fn instance_count(&self) -> usize {
        self.studies.iter().flat_map(|s| &s.series).map(|s| s.instances.len()).sum()
    }
}

/// The manifests file as written.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestFile {
    format: u32,
    manifests: Vec<Manifest>,
}

/// Why the frozen manifests cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {error}")]
    Read { path: std::path::PathBuf, error: String },
    #[error("cannot write {path}: {error}")]
    Write { path: std::path::PathBuf, error: String },
}

/// The manifests frozen in `dir`, if a run wrote them.
///
/// # Errors
/// The file exists but cannot be read or parsed.
pub fn load(dir: &Path) -> Result<Option<Vec<Manifest>>, ManifestError> {
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ManifestError::Read { path, error: e.to_string() }),
    };
    let file: ManifestFile =
        serde_json::from_str(&text).map_err(|e| ManifestError::Read { path: path.clone(), error: e.to_string() })?;
    if file.format != FORMAT {
        return Err(ManifestError::Read { path, error: format!("format {} is not {FORMAT}", file.format) });
    }
    Ok(Some(file.manifests))
}

/// Writes the manifests atomically into `dir`; returns the file's SHA-256.
///
/// # Errors
/// The file cannot be written.
pub fn save(dir: &Path, manifests: &[Manifest]) -> Result<String, ManifestError> {
    let path = dir.join(FILE_NAME);
    let file = ManifestFile { format: FORMAT, manifests: manifests.to_vec() };
    let bytes = serde_json::to_vec_pretty(&file)
        .map_err(|e| ManifestError::Write { path: path.clone(), error: e.to_string() })?;
    crate::sink::write_atomically(&path, &bytes).map_err(|e| ManifestError::Write { path, error: e.to_string() })?;
    Ok(digest(&bytes))
}

/// SHA-256 of the manifests file in `dir`, for run.json.
pub fn file_digest(dir: &Path) -> Option<String> {
    std::fs::read(dir.join(FILE_NAME)).ok().map(|b| digest(&b))
}

fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}
