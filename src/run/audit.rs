//! `OUT/audit.jsonl`: the append-only trail of every run into one output
//! folder — when it started (who, where, on which inputs and config), the
//! band it gave each study, and how it ended.
//!
//! One JSON object per line, only ever appended (never truncated, even by
//! `--overwrite`), so a folder's history survives re-runs; `run.json` says
//! what the latest run did, this file says everything that happened here.
//! It names studies by their StudyInstanceUID and is identifiable, like the
//! worklist. Each line is an [`AuditEvent`] with the common `event`,
//! `run_id` and `at` keys.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::report::ShardSummary;
use crate::dicom::laterality::Laterality;
use crate::error::{Error, Result};
use crate::sink::names::AUDIT;
use crate::sink::Counts;
use crate::triage::{Bands, StudyResult};

/// A model as the trail names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditModel {
    pub id: String,
    pub version: String,
    pub sha256: String,
}

/// One line of the trail; `event` is the variant's snake_case name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// A new run into this folder, before any input is read.
    RunStarted {
        host: String,
        user: String,
        software_version: String,
        config_path: Option<String>,
        config_sha256: String,
        pseudonym_key_id: String,
        shadow: bool,
        /// The shard's tag, for one shard of a sharded run.
        shard: Option<String>,
        models: Vec<AuditModel>,
        inputs: Vec<String>,
        files_seen: u64,
        file_list_sha256: String,
    },
    /// An unfinished run taken up again.
    RunResumed {
        host: String,
        user: String,
        attempt: u32,
        files_seen: u64,
        file_list_sha256: String,
        files_committed: u64,
        files_left: u64,
        commits: u64,
    },
    /// `--retry-failed` un-committed this many fetch failures to do again.
    RunRetried { instances: u64 },
    /// The band a study got, one per study in worklist order.
    StudyBanded { study_uid: String, rank: u32, band: String, reason: String, eyes: BTreeMap<String, String> },
    /// How the run ended.
    RunFinished {
        outcome: super::report::Outcome,
        exit_code: u8,
        frames_scored: u64,
        studies: u64,
        errors: u64,
        skipped: u64,
        bands: BTreeMap<String, u64>,
    },
    /// Shards joined by `merge`.
    RunMerged { shards: Vec<ShardSummary>, studies: u64, counts: Counts },
}

/// What is written: the event with the keys every line has.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    event: &'a AuditEvent,
    run_id: &'a str,
    at: chrono::DateTime<chrono::Utc>,
}

/// The open trail of one run.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    run_id: String,
}

impl AuditLog {
    /// Opens `OUT/audit.jsonl` for appending, creating it if needed.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(out: &Path, run_id: &str) -> Result<Self> {
        let path = out.join(AUDIT);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Output { path: path.clone(), source })?;
        Ok(Self { path, file, run_id: run_id.to_string() })
    }

    /// Appends one event.
    ///
    /// # Errors
    /// The line cannot be written.
    pub fn event(&mut self, event: &AuditEvent) -> Result<()> {
        let line = Line { event, run_id: &self.run_id, at: chrono::Utc::now() };
        // Through a JSON value, whose keys are sorted: the trail's lines keep
        // one key order whatever order the fields are declared in.
        let value = serde_json::to_value(&line).map_err(|e| self.io_error(std::io::Error::other(e)))?;
        let mut bytes = serde_json::to_vec(&value).map_err(|e| self.io_error(std::io::Error::other(e)))?;
        bytes.push(b'\n');
        // One write per line: with O_APPEND a line is never interleaved.
        self.file.write_all(&bytes).map_err(|e| self.io_error(e))
    }

    /// One `study_banded` event per study, in worklist order.
    ///
    /// # Errors
    /// A line cannot be written.
    pub fn studies(&mut self, studies: &[StudyResult], bands: &Bands) -> Result<()> {
        for s in studies {
            let (right, left) = s.detail.eyes();
            let eyes = [(Laterality::Right, right), (Laterality::Left, left)]
                .into_iter()
                .filter_map(|(eye, outcome)| Some((eye.as_str().to_string(), outcome?.grade.to_string())))
                .collect();
            self.event(&AuditEvent::StudyBanded {
                study_uid: s.header.study_uid.0.clone(),
                rank: s.rank,
                band: bands.name(s.band).to_string(),
                reason: s.reason.clone(),
                eyes,
            })?;
        }
        Ok(())
    }

    /// Flushes the trail to disk.
    ///
    /// # Errors
    /// Syncing fails.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_all().map_err(|e| self.io_error(e))
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        Error::Output { path: self.path.clone(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_event_tag_and_common_keys_and_read_back_typed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = AuditLog::open(dir.path(), "run-1").expect("open");
        let finished = AuditEvent::RunFinished {
            outcome: super::super::report::Outcome::CompletedWithErrors,
            exit_code: 1,
            frames_scored: 3,
            studies: 1,
            errors: 1,
            skipped: 0,
            bands: [("URGENT".to_string(), 1)].into(),
        };
        log.event(&finished).expect("event");
        log.sync().expect("sync");
        let text = std::fs::read_to_string(dir.path().join(AUDIT)).expect("read");
        let line = text.lines().next().expect("a line");
        let value: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(value["event"], "run_finished");
        assert_eq!(value["run_id"], "run-1");
        assert_eq!(value["outcome"], "completed_with_errors");
        assert!(value["at"].is_string());
        // Keys in sorted order, as the trail has always had them.
        assert!(line.starts_with("{\"at\":"), "{line}");
        let back: AuditEvent = serde_json::from_str(line).expect("typed");
        assert_eq!(back, finished);
    }
}
