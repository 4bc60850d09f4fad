//! Sinks: findings and rejects → Parquet tables, worklist and `run.json`.
//!
//! A push-model consumer at the end of the pipeline: rows are handed to the
//! Parquet writer a few hundred at a time, which encodes them into row
//! groups of `row_group_rows`, so memory stays flat however long the night
//! is (encoded rows are a fraction of the findings they came from). Tables: `images/` (one row per frame × model), `errors/` and
//! `skipped/` (one row per file or frame without a result) and, once every
//! image is in, `studies/` and the worklist.

pub mod audit;
mod parquet;
pub mod report;
pub mod tables;
pub mod worklist;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::parquet::PartWriter;
pub use report::RunReport;
pub use tables::{ModelStamp, RunStamp};

use crate::error::{Error, Result};
use crate::message::{count_key, Msg, RejectKind, Rejected};
use crate::triage::{Finding, StudyResult};

/// The `[sinks]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Rows per Parquet row group (and per write). Default: 8192.
    pub row_group_rows: usize,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self { row_group_rows: 8192 }
    }
}

/// What the sinks wrote, for `run.json` and the exit code.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Rows in `images/` (frame × model).
    pub image_rows: u64,
    /// Distinct frames that got at least one model's output.
    pub frames_scored: u64,
    /// Files with at least one scored frame.
    pub files_scored: u64,
    pub errors: u64,
    pub errors_by_stage: BTreeMap<String, u64>,
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub studies: u64,
    pub bands: BTreeMap<String, u64>,
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
///
/// # Errors
/// Writing, syncing or renaming fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let io = |source| Error::Output { path: path.to_path_buf(), source };
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The open tables of one run.
pub struct Sinks {
    out: PathBuf,
    run: RunStamp,
    models: Vec<ModelStamp>,
    bands: Vec<String>,
    row_group_rows: usize,
    images: PartWriter,
    errors: PartWriter,
    skipped: PartWriter,
    pending_images: Vec<Finding>,
    pending_errors: Vec<(Rejected, chrono::DateTime<chrono::Utc>)>,
    pending_skipped: Vec<(Rejected, chrono::DateTime<chrono::Utc>)>,
    /// Distinct scored frames and files, by a 64-bit hash of the path (and
    /// frame): a few bytes per image rather than its path.
    frames: HashSet<u64>,
    files: HashSet<u64>,
    counts: Counts,
}

/// Rows gathered before they go to the Parquet writer: enough for
/// efficient column building, few enough that pending findings (each with
/// its header) stay a small part of memory.
const WRITE_ROWS: usize = 512;

impl Sinks {
    /// Creates the table folders and opens this run's part files.
    ///
    /// # Errors
    /// The output folder cannot be written.
    pub fn create(out: &Path, cfg: &SinkConfig, run: RunStamp, models: Vec<ModelStamp>, bands: Vec<String>) -> Result<Self> {
        let tag = run.run_id.clone();
        let rows = cfg.row_group_rows;
        let images = PartWriter::create(&out.join("images"), &tag, &tables::images_batch(&[], &run, &models, &bands), rows)?;
        let errors = PartWriter::create(&out.join("errors"), &tag, &tables::rejected_batch(&[], &run), rows)?;
        let skipped = PartWriter::create(&out.join("skipped"), &tag, &tables::rejected_batch(&[], &run), rows)?;
        Ok(Self {
            out: out.to_path_buf(),
            run,
            models,
            bands,
            row_group_rows: rows.max(1),
            images,
            errors,
            skipped,
            pending_images: Vec::new(),
            pending_errors: Vec::new(),
            pending_skipped: Vec::new(),
            frames: HashSet::new(),
            files: HashSet::new(),
            counts: Counts::default(),
        })
    }

    /// Takes one message; writes a row group whenever one fills.
    ///
    /// # Errors
    /// Writing a full row group fails.
    pub fn push(&mut self, msg: Msg<Finding>) -> Result<()> {
        let now = chrono::Utc::now();
        match msg {
            Ok(finding) => {
                self.counts.image_rows += 1;
                let meta = &finding.scored.meta;
                self.frames.insert(count_key(&(&meta.instance.path, meta.frame_index)));
                self.files.insert(count_key(&meta.instance.path));
                self.pending_images.push(finding);
            }
            Err(r) => match r.kind {
                RejectKind::Error => {
                    self.counts.errors += 1;
                    *self.counts.errors_by_stage.entry(r.stage.to_string()).or_default() += 1;
                    self.pending_errors.push((r, now));
                }
                RejectKind::Skip(key) => {
                    self.counts.skipped += 1;
                    *self.counts.skipped_by_reason.entry(key.to_string()).or_default() += 1;
                    self.pending_skipped.push((r, now));
                }
            },
        }
        self.flush(false)
    }

    fn flush(&mut self, all: bool) -> Result<()> {
        let limit = if all { 1 } else { self.row_group_rows.min(WRITE_ROWS) };
        if self.pending_images.len() >= limit {
            let batch = tables::images_batch(&self.pending_images, &self.run, &self.models, &self.bands);
            self.images.write(&batch)?;
            self.pending_images.clear();
        }
        if self.pending_errors.len() >= limit {
            self.errors.write(&tables::rejected_batch(&self.pending_errors, &self.run))?;
            self.pending_errors.clear();
        }
        if self.pending_skipped.len() >= limit {
            self.skipped.write(&tables::rejected_batch(&self.pending_skipped, &self.run))?;
            self.pending_skipped.clear();
        }
        Ok(())
    }

    /// Flushes and closes the tables, then writes `studies/` and the worklist.
    ///
    /// # Errors
    /// Any output cannot be written.
    pub fn finish(mut self, studies: &[StudyResult]) -> Result<Counts> {
        self.flush(true)?;
        self.images.close()?;
        self.errors.close()?;
        self.skipped.close()?;
        let batch = tables::studies_batch(studies, &self.run);
        let mut part = PartWriter::create(&self.out.join("studies"), &self.run.run_id, &batch, self.row_group_rows)?;
        part.write(&batch)?;
        part.close()?;
        worklist::write(&self.out, studies)?;
        self.counts.frames_scored = self.frames.len() as u64;
        self.counts.files_scored = self.files.len() as u64;
        self.counts.studies = studies.len() as u64;
        for s in studies {
            *self.counts.bands.entry(s.band.clone()).or_default() += 1;
        }
        Ok(self.counts)
    }
}
