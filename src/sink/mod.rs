//! Sinks: findings and rejects → Parquet tables, worklist and `run.json`.
//!
//! A push-model consumer at the end of the pipeline that takes whole input
//! files ([`ledger`]): rows are handed to the Parquet writer a few hundred
//! at a time, which encodes them into row groups of `row_group_rows`, so
//! memory stays flat however long the night is. Every `checkpoint_seconds`
//! the open part files are closed and the run's state committed
//! ([`checkpoint`]), so a killed run resumes from there. Tables: `images/`
//! (one row per frame × model), `errors/` and `skipped/` (one row per file
//! or frame without a result) and, once every image is in, `studies/` and
//! the worklist (CSV, JSON and a self-contained HTML page, [`html`], which
//! shows each study's thumbnails from `thumbnails/`, [`thumbnails`]).

pub mod audit;
pub mod checkpoint;
pub mod failures;
pub mod html;
pub mod ledger;
pub mod outdir;
mod parquet;
pub mod report;
pub mod tables;
pub mod thumbnails;
pub mod worklist;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use self::parquet::PartWriter;
pub use checkpoint::{Checkpoint, Fingerprint};
pub use ledger::{CompleteFile, Ledger};
pub use report::RunReport;
pub use tables::{ModelStamp, RunStamp};

use crate::error::{Error, Result};
use crate::message::{count_key, Msg, RejectKind, Rejected};
use crate::triage::{Finding, StudyBook, StudyResult};

/// The `[sinks]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Rows per Parquet row group (and per write). Default: 8192.
    pub row_group_rows: usize,
    /// Seconds between commits: a killed run redoes at most this much work
    /// when started again. Each commit closes one part file per table, so
    /// much shorter intervals mean many small files. Default: 30.
    pub checkpoint_seconds: f64,
    /// Shadow mode, for a pilot beside human graders: everything is
    /// recorded as usual, but every worklist row is marked "SHADOW — not
    /// for clinical use". Also `--shadow`. Default: false.
    pub shadow: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self { row_group_rows: 8192, checkpoint_seconds: 30.0, shadow: false }
    }
}

/// What the sinks wrote, for `run.json` and the exit code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

/// Syncs a folder, so renames into it survive a power loss.
///
/// # Errors
/// The folder cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let io = |source| Error::Output { path: dir.to_path_buf(), source };
    std::fs::File::open(dir).map_err(io)?.sync_all().map_err(io)
}

/// Where a run writes: its own files (run.json, checkpoint, worklist,
/// thumbnails, audit trail) under `run`, its Parquet parts under `tables`,
/// named `part-<part_prefix>...`. A shard's `run` is `OUT/shards/<tag>/`
/// and its prefix its tag, so shards sharing OUT never touch each other's
/// files while `OUT/<table>/*.parquet` reads as their union.
#[derive(Debug, Clone, PartialEq)]
pub struct OutPaths {
    pub run: PathBuf,
    pub tables: PathBuf,
    pub part_prefix: String,
    pub shard: Option<crate::shard::Shard>,
}

impl OutPaths {
    /// One process, everything in `out`.
    pub fn single(out: &Path) -> Self {
        Self { run: out.to_path_buf(), tables: out.to_path_buf(), part_prefix: String::new(), shard: None }
    }

    /// One shard of a run into `out`.
    pub fn shard(out: &Path, shard: crate::shard::Shard) -> Self {
        Self {
            run: out.join(SHARDS_DIR).join(shard.tag()),
            tables: out.to_path_buf(),
            part_prefix: format!("{}-", shard.tag()),
            shard: Some(shard),
        }
    }
}

/// A finished shard's studies, with what the merged worklist needs of them,
/// for `nightscreen merge`. Identifiable (study headers), like the
/// worklist beside it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardHandoff {
    pub studies: Vec<StudyResult>,
    pub thumbnails: Vec<thumbnails::ThumbEntry>,
    pub failures: Vec<failures::FailedFile>,
}

/// The handoff's file name in a shard's folder.
pub const HANDOFF: &str = "shard-studies.json";

/// Where shards keep their own files under OUT.
pub const SHARDS_DIR: &str = "shards";

/// The per-row tables, in the order their writers are kept.
pub const ROW_TABLES: [&str; 3] = ["images", "errors", "skipped"];

/// The open tables of one run.
pub struct Sinks {
    /// The run's own folder ([`OutPaths::run`]).
    out: PathBuf,
    tables: PathBuf,
    part_prefix: String,
    shard: Option<crate::shard::Shard>,
    run: RunStamp,
    models: Vec<ModelStamp>,
    bands: Vec<String>,
    row_group_rows: usize,
    shadow: bool,
    checkpoint_every: Duration,
    last_commit: Instant,
    /// Part files open since the last commit, by [`ROW_TABLES`] index;
    /// opened with their first row, so a quiet table adds no empty files.
    parts: [Option<PartWriter>; 3],
    pending_images: Vec<Finding>,
    pending_errors: Vec<(Rejected, chrono::DateTime<chrono::Utc>)>,
    pending_skipped: Vec<(Rejected, chrono::DateTime<chrono::Utc>)>,
    /// Distinct scored frames and files, by a 64-bit hash of the path (and
    /// frame): a few bytes per image rather than its path.
    frames: HashSet<u64>,
    files: HashSet<u64>,
    /// Everything committed, plus the files completed since.
    state: Checkpoint,
    completed: Vec<String>,
    completed_instances: u64,
    /// Thumbnails written since the last commit (recorded by the next),
    /// and the thread that syncs them meanwhile.
    completed_thumbs: Vec<thumbnails::ThumbEntry>,
    thumb_syncer: thumbnails::Syncer,
}

/// Rows gathered before they go to the Parquet writer: enough for
/// efficient column building, few enough that pending findings (each with
/// its header) stay a small part of memory.
const WRITE_ROWS: usize = 512;

impl Sinks {
    /// Creates the table folders and takes over the run's committed state
    /// (empty for a new run).
    ///
    /// # Errors
    /// The output folder cannot be written.
    pub fn create(
        paths: &OutPaths,
        cfg: &SinkConfig,
        run: RunStamp,
        models: Vec<ModelStamp>,
        bands: Vec<String>,
        state: Checkpoint,
    ) -> Result<Self> {
        let out = paths.run.as_path();
        for dir in ROW_TABLES.iter().map(|t| paths.tables.join(t)).chain([out.join(thumbnails::DIR)]) {
            std::fs::create_dir_all(&dir).map_err(|source| Error::Output { path: dir, source })?;
        }
        Ok(Self {
            out: out.to_path_buf(),
            tables: paths.tables.clone(),
            part_prefix: paths.part_prefix.clone(),
            shard: paths.shard,
            run,
            models,
            bands,
            row_group_rows: cfg.row_group_rows.max(1),
            shadow: cfg.shadow,
            checkpoint_every: Duration::from_secs_f64(cfg.checkpoint_seconds.max(0.0)),
            last_commit: Instant::now(),
            parts: [None, None, None],
            pending_images: Vec::new(),
            pending_errors: Vec::new(),
            pending_skipped: Vec::new(),
            frames: state.frame_keys.iter().copied().collect(),
            files: state.file_keys.iter().copied().collect(),
            state,
            completed: Vec::new(),
            completed_instances: 0,
            completed_thumbs: Vec::new(),
            thumb_syncer: thumbnails::Syncer::start(&out.join(thumbnails::DIR))?,
        })
    }

    /// Takes every row of one complete input file.
    ///
    /// # Errors
    /// Writing rows fails.
    pub fn push_file(&mut self, file: CompleteFile) -> Result<()> {
        self.completed.push(checkpoint::file_key(&file.path));
        self.completed_instances += u64::from(file.instance);
        for row in file.rows {
            self.push(row)?;
        }
        Ok(())
    }

    fn push(&mut self, msg: Msg<Finding>) -> Result<()> {
        let now = chrono::Utc::now();
        match msg {
            Ok(finding) => {
                self.state.counts.image_rows += 1;
                let meta = &finding.scored.meta;
                // One thumbnail per frame, however many models scored it.
                if self.frames.insert(count_key(&[
                    meta.instance.path.as_os_str().as_encoded_bytes(),
                    &meta.frame_index.to_be_bytes(),
                ])) {
                    if let Some((entry, path)) = thumbnails::write(
                        &self.out.join(thumbnails::DIR),
                        &self.run.key,
                        meta,
                        finding.scored.attention.as_ref(),
                    )? {
                        self.completed_thumbs.push(entry);
                        self.thumb_syncer.push(path);
                    }
                }
                self.files.insert(count_key(&[meta.instance.path.as_os_str().as_encoded_bytes()]));
                self.pending_images.push(finding);
            }
            Err(r) => match r.kind {
                RejectKind::Error => {
                    self.state.failures.push(failures::FailedFile {
                        path: r.path.display().to_string(),
                        stage: r.stage.to_string(),
                        frame: r.frame,
                        reason: r.reason.clone(),
                        file_pseudonym: self.run.key.file_pseudonym(&r.path),
                    });
                    let counts = &mut self.state.counts;
                    counts.errors += 1;
                    *counts.errors_by_stage.entry(r.stage.to_string()).or_default() += 1;
                    self.pending_errors.push((r, now));
                }
                RejectKind::Skip(key) => {
                    let counts = &mut self.state.counts;
                    counts.skipped += 1;
                    *counts.skipped_by_reason.entry(key.to_string()).or_default() += 1;
                    self.pending_skipped.push((r, now));
                }
            },
        }
        self.flush(false)
    }

    /// Hands pending rows of each table to its part file (opening one if
    /// needed) once there are enough of them, or any at all with `all`.
    fn flush(&mut self, all: bool) -> Result<()> {
        let limit = if all { 1 } else { self.row_group_rows.min(WRITE_ROWS) };
        if self.pending_images.len() >= limit {
            let batch = tables::images_batch(&self.pending_images, &self.run, &self.models, &self.bands);
            self.write(0, &batch)?;
            self.pending_images.clear();
        }
        if self.pending_errors.len() >= limit {
            let batch = tables::rejected_batch(&self.pending_errors, &self.run);
            self.write(1, &batch)?;
            self.pending_errors.clear();
        }
        if self.pending_skipped.len() >= limit {
            let batch = tables::rejected_batch(&self.pending_skipped, &self.run);
            self.write(2, &batch)?;
            self.pending_skipped.clear();
        }
        Ok(())
    }

    fn write(&mut self, table: usize, batch: &arrow_array::RecordBatch) -> Result<()> {
        if self.parts[table].is_none() {
            let tag = format!("{}{}-{:05}", self.part_prefix, self.run.run_id, self.state.commits + 1);
            self.parts[table] =
                Some(PartWriter::create(&self.tables.join(ROW_TABLES[table]), &tag, batch, self.row_group_rows)?);
        }
        match &mut self.parts[table] {
            Some(part) => part.write(batch),
            None => Ok(()),
        }
    }

    /// Commits when `checkpoint_seconds` have passed since the last commit.
    ///
    /// # Errors
    /// As [`Sinks::commit`].
    pub fn commit_if_due(&mut self, book: &StudyBook) -> Result<()> {
        if self.last_commit.elapsed() >= self.checkpoint_every && !self.completed.is_empty() {
            self.commit(book)?;
        }
        Ok(())
    }

    /// Closes the open part files and records them, the files completed
    /// since the last commit and the study book in `checkpoint.json`.
    ///
    /// # Errors
    /// A part file or the checkpoint cannot be written.
    pub fn commit(&mut self, book: &StudyBook) -> Result<()> {
        self.flush(true)?;
        for (table, part) in self.parts.iter_mut().enumerate() {
            if let Some(part) = part.take() {
                let path = part.close()?;
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.state.parts.entry(ROW_TABLES[table].to_string()).or_default().push(name);
            }
        }
        for table in ROW_TABLES {
            sync_dir(&self.tables.join(table))?;
        }
        self.thumb_syncer.wait()?;
        self.state.thumbnails.append(&mut self.completed_thumbs);
        self.state.files.extend(self.completed.drain(..));
        self.state.instances += std::mem::take(&mut self.completed_instances);
        self.state.frame_keys = self.frames.iter().copied().collect();
        self.state.file_keys = self.files.iter().copied().collect();
        self.state.book = book.snapshot();
        self.state.commits += 1;
        self.state.save(&self.out)?;
        self.last_commit = Instant::now();
        log::debug!("commit {}: {} files committed", self.state.commits, self.state.files.len());
        Ok(())
    }

    /// The name of the run's last part files (an empty table's, studies).
    fn part_tag(&self) -> String {
        format!("{}{}", self.part_prefix, self.run.run_id)
    }

    /// The committed state (after [`Sinks::finish`], the whole run's).
    pub fn state(&self) -> &Checkpoint {
        &self.state
    }

    /// Commits the last files, gives every table at least one (possibly
    /// empty) part so readers find its schema, then orders the worklist
    /// and writes `studies/` and the worklist files.
    ///
    /// # Errors
    /// Any output cannot be written.
    pub fn finish(&mut self, book: StudyBook) -> Result<(Counts, Vec<StudyResult>)> {
        self.commit(&book)?;
        let studies = book.finish();
        let studies = studies.as_slice();
        for (i, table) in ROW_TABLES.iter().enumerate() {
            if self.state.parts.get(*table).is_none_or(Vec::is_empty) {
                let empty = if i == 0 {
                    tables::images_batch(&[], &self.run, &self.models, &self.bands)
                } else {
                    tables::rejected_batch(&[], &self.run)
                };
                PartWriter::create(&self.tables.join(table), &self.part_tag(), &empty, self.row_group_rows)?.close()?;
            }
        }
        let batch = tables::studies_batch(studies, &self.run);
        let mut part = PartWriter::create(&self.tables.join("studies"), &self.part_tag(), &batch, self.row_group_rows)?;
        part.write(&batch)?;
        part.close()?;
        let rows = worklist::rows(studies, self.shadow);
        worklist::write(&self.out, &rows)?;
        let page = html::PageInfo {
            run_id: &self.run.run_id,
            software_version: &self.run.software_version,
            started_at: self.state.started_at,
            finished_at: chrono::Utc::now(),
            attempts: self.state.attempt,
            models: &self.models,
            bands: &self.bands,
            shadow: self.shadow,
        };
        html::write(&self.out, studies, &rows, &self.state.thumbnails, &self.run.key, &page)?;
        failures::write(&self.out, &self.state.failures)?;
        if self.shard.is_some() {
            let handoff = ShardHandoff {
                studies: studies.to_vec(),
                thumbnails: self.state.thumbnails.clone(),
                failures: self.state.failures.clone(),
            };
            let json = serde_json::to_vec(&handoff)
                .map_err(|e| Error::Output { path: self.out.join(HANDOFF), source: std::io::Error::other(e) })?;
            write_atomically(&self.out.join(HANDOFF), &json)?;
        }
        let mut counts = self.state.counts.clone();
        counts.frames_scored = self.frames.len() as u64;
        counts.files_scored = self.files.len() as u64;
        counts.studies = studies.len() as u64;
        for s in studies {
            *counts.bands.entry(s.band.clone()).or_default() += 1;
        }
        Ok((counts, studies.to_vec()))
    }
}
