//! `run.json`: the audit record of one run — which software, config and
//! models (with digests) ran where and when, on which execution provider,
//! what happened to every input and how long it took.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Counts;
use crate::error::{Error, Result};

/// Provenance of one model, as recorded.
#[derive(Debug, Serialize)]
pub struct ModelRecord {
    pub id: String,
    pub version: String,
    pub sha256: String,
    pub onnx_path: String,
    pub card_path: String,
    pub card: crate::model::ModelCard,
}

/// Which ONNX Runtime ran, and how.
#[derive(Debug, Serialize)]
pub struct RuntimeRecord {
    pub library: String,
    pub version: String,
    pub execution_provider: String,
    pub available_providers: Vec<String>,
    pub device_requested: String,
    pub intra_op_threads: usize,
    pub decode_threads: usize,
    pub batch_size: usize,
}

/// Wall-clock seconds per phase.
#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub setup_seconds: f64,
    pub ingest_seconds: f64,
    pub pipeline_seconds: f64,
    pub total_seconds: f64,
    /// Frames scored per second of pipeline time.
    pub frames_per_second: f64,
}

/// Input accounting: every file seen ends in exactly one outcome.
#[derive(Debug, Default, Serialize)]
pub struct InputRecord {
    pub roots: Vec<String>,
    pub files_seen: u64,
    pub image_files: u64,
    /// SHA-256 of the list of files seen (paths, one per line, walk order).
    pub file_list_sha256: String,
}

/// The whole `run.json`.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub software: &'static str,
    pub software_version: &'static str,
    pub run_id: String,
    /// When the run's first attempt started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// 1, plus one per resume after an interruption.
    pub attempts: u32,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub host: String,
    /// Who ran it: the login name and the numeric user id.
    pub user: String,
    pub config_path: Option<String>,
    pub config_sha256: String,
    pub config: String,
    /// Which key made the analyst tables' pseudonyms (never the key).
    pub pseudonym_key_id: String,
    pub models: Vec<ModelRecord>,
    pub runtime: RuntimeRecord,
    pub inputs: InputRecord,
    pub counts: Counts,
    pub timings: Timings,
    /// "ok", or "completed_with_errors" when some inputs could not be read.
    pub outcome: &'static str,
    /// Shadow mode: the worklist is marked not for clinical use.
    pub shadow: bool,
    /// This run's slice of a sharded run, if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    pub exit_code: u8,
}

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShardRecord {
    pub index: usize,
    pub count: usize,
}

impl RunReport {
    /// Writes `OUT/run.json`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, out: &Path) -> Result<()> {
        let path = out.join("run.json");
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Output { path: path.clone(), source: std::io::Error::other(e) })?;
        super::write_atomically(&path, &json)
    }
}

/// This machine's name, for the audit trail.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// Who is running this process: `$USER` (or `$LOGNAME`) and the uid the
/// kernel gives it, which a changed environment cannot fake.
pub fn user() -> String {
    use std::os::unix::fs::MetadataExt;
    let name = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    match std::fs::metadata("/proc/self") {
        Ok(meta) if name.is_empty() => format!("uid {}", meta.uid()),
        Ok(meta) => format!("{name} (uid {})", meta.uid()),
        Err(_) => name,
    }
}
