//! `OUT/audit.jsonl`: the append-only trail of every run into one output
//! folder — when it started (who, where, on which inputs and config), the
//! band it gave each study, and how it ended.
//!
//! One JSON object per line, only ever appended (never truncated, even by
//! `--overwrite`), so a folder's history survives re-runs; `run.json` says
//! what the latest run did, this file says everything that happened here.
//! It names studies by their StudyInstanceUID and is identifiable, like the
//! worklist.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::dicom::laterality::Laterality;
use crate::error::{Error, Result};
use crate::triage::{Bands, StudyResult};

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
        let path = out.join("audit.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Output { path: path.clone(), source })?;
        Ok(Self { path, file, run_id: run_id.to_string() })
    }

    /// Appends one event (`fields` is an object merged after the common
    /// `event`, `run_id` and `at` keys).
    ///
    /// # Errors
    /// The line cannot be written.
    pub fn event(&mut self, event: &str, fields: Value) -> Result<()> {
        let mut line = json!({ "event": event, "run_id": self.run_id, "at": chrono::Utc::now() });
        if let (Some(line), Value::Object(extra)) = (line.as_object_mut(), fields) {
            line.extend(extra);
        }
        let mut bytes = serde_json::to_vec(&line).map_err(|e| self.io_error(std::io::Error::other(e)))?;
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
            let eyes: serde_json::Map<String, Value> = [(Laterality::Right, right), (Laterality::Left, left)]
                .into_iter()
                .filter_map(|(eye, outcome)| Some((eye.as_str().to_string(), json!(outcome?.grade.to_string()))))
                .collect();
            let band = bands.name(s.band);
            self.event(
                "study_banded",
                json!({ "study_uid": s.header.study_uid.0, "rank": s.rank, "band": band, "reason": s.reason, "eyes": eyes }),
            )?;
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
