//! `run.json`: the audit record of one run — which software, config and
//! models (with digests) ran where and when, on which execution provider,
//! what happened to every input and how long it took.
//!
//! Written and read as one type, [`RunReport`]: `merge` reads the shards'
//! and writes its own (with the list of shards), `evaluate` reads the
//! provenance of the run it scores.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sink::names::RUN_JSON;
use crate::sink::{Counts, ModelStamp};

/// Provenance of one model, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRecord {
    pub id: String,
    pub version: String,
    pub sha256: String,
    /// The card's output labels, in output order.
    #[serde(default)]
    pub labels: Vec<String>,
    pub onnx_path: String,
    pub card_path: String,
    pub card: crate::model::ModelCard,
    /// The model's domain gate, when its card names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Box<ModelRecord>>,
    /// The model's second look, when its card names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_look: Option<Box<ModelRecord>>,
}

impl ModelRecord {
    /// How run.json records a verified model.
    pub fn of(model: &crate::model::VerifiedModel) -> Self {
        let stamp = model.stamp();
        Self {
            id: stamp.id,
            version: stamp.version,
            sha256: stamp.sha256,
            labels: stamp.labels,
            onnx_path: model.onnx_path.display().to_string(),
            card_path: model.card_path.display().to_string(),
            card: model.card.clone(),
            domain: model.domain.as_ref().map(|gate| Box::new(Self::of(&gate.model))),
            second_look: model.second_look.as_ref().map(|look| Box::new(Self::of(&look.model))),
        }
    }

    /// What the tables and the page say of this model.
    pub fn stamp(&self) -> ModelStamp {
        ModelStamp {
            id: self.id.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            labels: self.labels.clone(),
            clinical_use: self.card.clinical_use,
            domain: self.domain.as_ref().map(|gate| Box::new(gate.stamp())),
            second_look: self.second_look.as_ref().map(|look| Box::new(look.stamp())),
        }
    }
}

/// Which ONNX Runtime ran, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub setup_seconds: f64,
    pub ingest_seconds: f64,
    pub pipeline_seconds: f64,
    pub total_seconds: f64,
    /// Frames scored per second of pipeline time.
    pub frames_per_second: f64,
}

/// Input accounting: every file seen ends in exactly one outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    pub roots: Vec<String>,
    pub files_seen: u64,
    pub image_files: u64,
    /// SHA-256 of the list of files seen (paths, one per line, walk order).
    pub file_list_sha256: String,
    /// The DICOMweb inputs, by name and URL only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceRecord>,
}

/// One DICOMweb input of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// `dicomweb:NAME?…`, as given.
    pub input: String,
    pub name: String,
    pub url: String,
    /// The query as planned (relative dates resolved).
    pub query: Vec<(String, String)>,
    pub planned_at: chrono::DateTime<chrono::Utc>,
    pub studies: u64,
    pub instances: u64,
    /// SHA-256 of the frozen `source-manifest.json`.
    pub manifest_sha256: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Finished, but some inputs could not be read.
    CompletedWithErrors,
}

impl Outcome {
    /// The outcome of a run with `errors` unreadable inputs.
    pub fn of(errors: u64) -> Self {
        if errors > 0 {
            Outcome::CompletedWithErrors
        } else {
            Outcome::Ok
        }
    }

    /// The process exit code it maps to (see `nightscreen run --help`).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::CompletedWithErrors => 1,
        }
    }
}

/// One shard of a merged run, as the merged `run.json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    pub tag: String,
    pub run_id: String,
    pub host: String,
    pub attempts: u32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub counts: Counts,
    pub inputs: Option<InputRecord>,
    pub outcome: Outcome,
}

/// The whole `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub software: String,
    pub software_version: String,
    pub run_id: String,
    /// When the merge was made (merged runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the run's first attempt started (a merge: its first shard's).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// 1, plus one per resume after an interruption (a merge: its shards' most).
    pub attempts: u32,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub host: String,
    /// Who ran it: the login name and the numeric user id.
    pub user: String,
    pub config_path: Option<String>,
    pub config_sha256: String,
    pub config: String,
    /// The configured worklist bands, most urgent first.
    #[serde(default)]
    pub bands: Vec<String>,
    /// Which key made the analyst tables' pseudonyms (never the key).
    pub pseudonym_key_id: String,
    pub models: Vec<ModelRecord>,
    /// The runtime, inputs and timings of a run that scored images (not a merge's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<InputRecord>,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// `ok`, or `completed_with_errors` when some inputs could not be read.
    pub outcome: Outcome,
    /// Shadow mode: the worklist is marked not for clinical use.
    pub shadow: bool,
    /// This run's slice of a sharded run, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRecord>,
    /// The shards a merged run joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<ShardSummary>>,
    pub exit_code: u8,
}

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        crate::sink::write_json(&out.join(RUN_JSON), self, true)
    }

    /// Reads `OUT/run.json`; `None` when there is none (the run never finished).
    ///
    /// # Errors
    /// The file cannot be read, or is not a record this version reads.
    pub fn read(out: &Path) -> Result<Option<Self>> {
        let path = out.join(RUN_JSON);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Output { path, source }),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|source| Error::Record { path, source })
    }

    /// What the tables and the page say of the run's models.
    pub fn model_stamps(&self) -> Vec<ModelStamp> {
        self.models.iter().map(ModelRecord::stamp).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        let now = chrono::Utc::now();
        RunReport {
            software: "nightscreen".into(),
            software_version: "1".into(),
            run_id: "r".into(),
            merged_at: None,
            started_at: now,
            attempts: 2,
            finished_at: now,
            host: "h".into(),
            user: "u (uid 1)".into(),
            config_path: None,
            config_sha256: "c".into(),
            config: "[triage]\n".into(),
            bands: vec!["URGENT".into(), "ROUTINE".into()],
            pseudonym_key_id: "k".into(),
            models: Vec::new(),
            runtime: None,
            inputs: Some(InputRecord {
                roots: vec!["/in".into()],
                files_seen: 3,
                image_files: 2,
                ..Default::default()
            }),
            counts: Counts { errors: 1, ..Counts::default() },
            timings: Some(Timings::default()),
            outcome: Outcome::of(1),
            shadow: false,
            shard: Some(ShardRecord { index: 1, count: 4 }),
            shards: None,
            exit_code: Outcome::of(1).exit_code(),
        }
    }

    #[test]
    fn a_report_reads_back_as_written_with_its_fields_named_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(RunReport::read(dir.path()).expect("read").is_none(), "no run.json: an unfinished run");
        let written = report();
        written.write(dir.path()).expect("write");
        let value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(RUN_JSON)).expect("read")).expect("json");
        assert_eq!((value["outcome"].as_str(), value["exit_code"].as_u64()), (Some("completed_with_errors"), Some(1)));
        assert_eq!(value["inputs"]["files_seen"], 3);
        assert_eq!(value["shard"]["index"], 1);
        assert!(value.get("merged_at").is_none() && value.get("shards").is_none() && value.get("runtime").is_none());
        let back = RunReport::read(dir.path()).expect("read").expect("present");
        assert_eq!((back.bands, back.attempts, back.inputs), (written.bands, 2, written.inputs));
        std::fs::write(dir.path().join(RUN_JSON), b"{\"run_id\": 1}").expect("write");
        assert!(matches!(RunReport::read(dir.path()), Err(Error::Record { .. })));
    }

    #[test]
    fn outcomes_map_to_their_names_and_exit_codes() {
        assert_eq!((Outcome::of(0), Outcome::of(0).exit_code()), (Outcome::Ok, 0));
        assert_eq!(serde_json::to_string(&Outcome::Ok).expect("json"), "\"ok\"");
        assert_eq!(Outcome::of(2).exit_code(), 1);
    }
}
