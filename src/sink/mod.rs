//! Sinks: the run's outputs, each a component behind one contract
//! ([`Output`]), and the loop that feeds them whole input files.
//!
//! A push-model consumer at the end of the pipeline that takes whole input
//! files ([`crate::run::ledger`]): rows are handed to the Parquet writer a
//! few hundred at a time, which encodes them into row groups of
//! `row_group_rows`, so memory stays flat however long the night is. Every
//! `checkpoint_seconds` each output makes what it received durable and the
//! run's state is committed ([`crate::run::checkpoint`]), so a killed run
//! resumes from there. Tables: `images/` (one row per frame × model),
//! `errors/` and `skipped/` (one row per file or frame without a result)
//! and, once every image is in, `studies/` and the worklist (CSV, JSON and
//! a self-contained HTML page, [`html`], which shows each study's
//! thumbnails from `thumbnails/`, [`thumbnails`]). `run` and `merge` publish
//! the ranked studies through the same [`Outputs::publish`]; a new output
//! (DICOM SR, FHIR) is one new [`Output`]. Result documents for the record:
//! FHIR R4 bundles ([`fhir`]) always, HL7 v2 ORU messages ([`hl7`]) when
//! `[sinks] hl7` is on.

pub mod failures;
pub mod fhir;
pub mod hl7;
pub mod html;
pub mod names;
pub mod outputs;
mod parquet;
pub mod sr;
pub mod tables;
pub mod thumbnails;
pub mod worklist;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use serde::{Deserialize, Serialize};

pub use self::parquet::PartWriter;
pub use tables::{ModelStamp, RunStamp, Table};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::{count_key, FileDone, LookAnswer, Msg, RejectKind};
use crate::run::checkpoint::{file_key, Checkpoint};
use crate::run::ledger::{CompleteFile, Ledger};
use crate::run::shard::Shard;
use crate::triage::{Bands, Finding, StudyBook, StudyResult, TriageMode};

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
    /// Also write an HL7 v2.4 ORU^R01 per study under `hl7/` (`[hl7]`
    /// names the applications and facilities). Default: false.
    pub hl7: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self { row_group_rows: 8192, checkpoint_seconds: 30.0, shadow: false, hl7: false }
    }
}

/// What the sinks wrote, for `run.json` and the exit code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Rows in `images/` (frame × model).
    pub image_rows: u64,
    /// Distinct frames that got at least one model's output.
    pub frames_scored: u64,
    /// Files with at least one scored frame.
    pub files_scored: u64,
    /// Image rows a second look answered, and those it could not look at
    /// (the programme then treats the finding as not ruled out).
    #[serde(default)]
    pub second_looks: u64,
    #[serde(default)]
    pub second_looks_failed: u64,
    pub errors: u64,
    pub errors_by_stage: BTreeMap<String, u64>,
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub studies: u64,
    pub bands: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds `other`'s row counts to these (studies and bands are set from
    /// the ranked list, not added).
    pub fn add(&mut self, other: &Counts) {
        self.image_rows += other.image_rows;
        self.frames_scored += other.frames_scored;
        self.files_scored += other.files_scored;
        self.second_looks += other.second_looks;
        self.second_looks_failed += other.second_looks_failed;
        self.errors += other.errors;
        self.skipped += other.skipped;
        for (stage, n) in &other.errors_by_stage {
            *self.errors_by_stage.entry(stage.clone()).or_default() += n;
        }
        for (reason, n) in &other.skipped_by_reason {
            *self.skipped_by_reason.entry(reason.clone()).or_default() += n;
        }
    }

    /// Sets the study and band counts from the ranked studies.
    pub fn set_studies(&mut self, studies: &[StudyResult], bands: &Bands) {
        self.studies = studies.len() as u64;
        self.bands.clear();
        for s in studies {
            *self.bands.entry(bands.name(s.band).to_string()).or_default() += 1;
        }
    }
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

/// Writes `value` as JSON (pretty when `pretty`) to `path`, atomically.
///
/// # Errors
/// Serialising or writing fails.
pub fn write_json(path: &Path, value: &impl Serialize, pretty: bool) -> Result<()> {
    let json = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) };
    let bytes = json.map_err(|e| Error::Output { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
    write_atomically(path, &bytes)
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
    pub shard: Option<Shard>,
}

impl OutPaths {
    /// One process, everything in `out`.
    pub fn single(out: &Path) -> Self {
        Self { run: out.to_path_buf(), tables: out.to_path_buf(), part_prefix: String::new(), shard: None }
    }

    /// One shard of a run into `out`.
    pub fn shard(out: &Path, shard: Shard) -> Self {
        Self {
            run: out.join(names::SHARDS_DIR).join(shard.tag()),
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

/// What every output is given once every input is in: the ranked studies
/// and what the run (or the merged shards) gathered for them.
pub struct Published<'a> {
    pub studies: &'a [StudyResult],
    pub thumbnails: &'a [thumbnails::ThumbEntry],
    pub failures: &'a [failures::FailedFile],
    /// The run's provenance, as the page heads it (shadow mode included).
    pub page: html::PageInfo<'a>,
}

/// One output of a run: the contract every writer keeps, so `run` and
/// `merge` drive them alike and a new one (SR, FHIR) is one new component.
pub trait Output {
    /// Every row of one complete input file (row tables, thumbnails, failures).
    ///
    /// # Errors
    /// Writing fails.
    fn file(&mut self, _file: &CompleteFile) -> Result<()> {
        Ok(())
    }

    /// Makes what [`Output::file`] received durable and records it in the
    /// checkpoint about to be saved.
    ///
    /// # Errors
    /// Closing, syncing or recording fails.
    fn commit(&mut self, _state: &mut Checkpoint) -> Result<()> {
        Ok(())
    }

    /// Writes what needs the ranked studies (studies table, worklist, page).
    ///
    /// # Errors
    /// Writing fails.
    fn publish(&mut self, _run: &Published<'_>) -> Result<()> {
        Ok(())
    }
}

/// A run's outputs, driven in order.
pub struct Outputs(Vec<Box<dyn Output>>);

impl Outputs {
    /// What a run (or one shard of it) writes, taking over `state`'s
    /// committed parts.
    ///
    /// # Errors
    /// An output folder cannot be created, or the thumbnail syncer started.
    pub fn for_run(
        paths: &OutPaths,
        cfg: &Config,
        run: &RunStamp,
        models: &[ModelStamp],
        bands: &Bands,
        state: &Checkpoint,
        sr: &sr::SrSetup,
    ) -> Result<Self> {
        let row_group_rows = cfg.sinks.row_group_rows.max(1);
        let tag = format!("{}{}", paths.part_prefix, run.run_id);
        let mut list: Vec<Box<dyn Output>> = vec![
            Box::new(outputs::RowTables::create(paths, run, models, bands, row_group_rows, state)?),
            Box::new(outputs::Thumbnails::start(&paths.run, &run.key)?),
            Box::new(outputs::Failures::new(&paths.run, &run.key)),
            Box::new(outputs::StudiesTable::new(&paths.tables, &tag, run, row_group_rows)),
            Box::new(outputs::WorklistFiles::new(&paths.run)),
            Box::new(outputs::WorklistPage::new(&paths.run, &run.key)),
            Box::new(sr::SrReports::create(paths, run, models, sr, state)?),
        ];
        let documents = fhir::DocumentRun {
            run: run.clone(),
            models: models.to_vec(),
            // The model whose findings the documents report: DESP's grader.
            grading_model: (cfg.triage.mode == TriageMode::Desp).then(|| cfg.triage.desp.model.clone()),
            owns_dirs: paths.shard.is_none(),
        };
        list.push(Box::new(fhir::FhirBundles::create(&paths.tables, &cfg.fhir, &documents)?));
        if cfg.sinks.hl7 {
            list.push(Box::new(hl7::OruMessages::create(&paths.tables, &cfg.hl7, &documents)?));
        }
        if paths.shard.is_some() {
            list.push(Box::new(outputs::Handoff::new(&paths.run)));
        }
        Ok(Self(list))
    }

    /// What `merge` writes into OUT from the shards' studies: one ranked
    /// studies part in place of the shards', the worklist and the failures.
    pub fn for_merge(out: &Path, run: &RunStamp) -> Self {
        Self(vec![
            Box::new(outputs::StudiesTable::replacing_shards(out, run)),
            Box::new(outputs::WorklistFiles::new(out)),
            Box::new(outputs::WorklistPage::new(out, &run.key)),
            Box::new(outputs::Failures::new(out, &run.key)),
        ])
    }

    fn file(&mut self, file: &CompleteFile) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.file(file))
    }

    fn commit(&mut self, state: &mut Checkpoint) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.commit(state))
    }

    /// Hands the ranked studies to every output.
    ///
    /// # Errors
    /// An output cannot be written.
    pub fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.publish(run))
    }
}

/// The sinks of one run: its outputs, its counts and its committed state.
pub struct Sinks {
    /// The run's own folder ([`OutPaths::run`]).
    out: PathBuf,
    run: RunStamp,
    models: Vec<ModelStamp>,
    bands: Bands,
    shadow: bool,
    outputs: Outputs,
    checkpoint_every: Duration,
    last_commit: Instant,
    /// Distinct scored frames and files, by [`count_key`] of the source (and
    /// frame): a few bytes per image rather than its path.
    frames: HashSet<u64>,
    files: HashSet<u64>,
    /// Everything committed, plus the files completed since.
    state: Checkpoint,
    completed: Vec<String>,
    /// Image instances among the files completed since the last commit:
    /// ingest's verdict on each file, the run's one instance count.
    completed_instances: u64,
}

impl Sinks {
    /// Creates the outputs and takes over the run's committed state (empty
    /// for a new run).
    ///
    /// # Errors
    /// The output folder cannot be written.
    pub fn create(
        paths: &OutPaths,
        cfg: &Config,
        run: RunStamp,
        models: Vec<ModelStamp>,
        bands: Bands,
        state: Checkpoint,
        sr: &sr::SrSetup,
    ) -> Result<Self> {
        let outputs = Outputs::for_run(paths, cfg, &run, &models, &bands, &state, sr)?;
        Ok(Self {
            out: paths.run.clone(),
            run,
            models,
            bands,
            shadow: cfg.sinks.shadow,
            outputs,
            checkpoint_every: Duration::from_secs_f64(cfg.sinks.checkpoint_seconds.max(0.0)),
            last_commit: Instant::now(),
            frames: state.frame_keys.iter().copied().collect(),
            files: state.file_keys.iter().copied().collect(),
            state,
            completed: Vec::new(),
            completed_instances: 0,
        })
    }

    /// Takes every row of one complete input file.
    ///
    /// # Errors
    /// Writing rows fails.
    pub fn push_file(&mut self, file: CompleteFile) -> Result<()> {
        self.completed.push(file_key(&file.source));
        self.completed_instances += u64::from(file.instance);
        let counts = &mut self.state.counts;
        for row in &file.rows {
            match row {
                Ok(finding) => {
                    counts.image_rows += 1;
                    match finding.scored.second_look {
                        Some(LookAnswer::Scored(_)) => counts.second_looks += 1,
                        Some(LookAnswer::Failed(_)) => counts.second_looks_failed += 1,
                        None => {}
                    }
                    let meta = &finding.scored.meta;
                    let source = meta.instance.source.key_bytes();
                    self.frames.insert(count_key(&[source, &meta.frame_index.to_be_bytes()]));
                    self.files.insert(count_key(&[source]));
                }
                Err(r) => match r.kind {
                    RejectKind::Error => {
                        counts.errors += 1;
                        *counts.errors_by_stage.entry(r.stage.to_string()).or_default() += 1;
                    }
                    RejectKind::Skip(key) => {
                        counts.skipped += 1;
                        *counts.skipped_by_reason.entry(key.to_string()).or_default() += 1;
                    }
                },
            }
        }
        self.outputs.file(&file)
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

    /// Has every output make its rows durable, then records them, the files
    /// completed since the last commit and the study book in
    /// `checkpoint.json`.
    ///
    /// # Errors
    /// A part file or the checkpoint cannot be written.
    pub fn commit(&mut self, book: &StudyBook) -> Result<()> {
        self.outputs.commit(&mut self.state)?;
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

    /// The committed state (after [`Sinks::finish`], the whole run's).
    pub fn state(&self) -> &Checkpoint {
        &self.state
    }

    /// Commits the last files, ranks the studies and publishes them to
    /// every output (empty row tables get a part, so readers find their
    /// schema; then `studies/`, the worklist, the page and the failures).
    ///
    /// # Errors
    /// Any output cannot be written.
    pub fn finish(&mut self, book: StudyBook) -> Result<(Counts, Vec<StudyResult>)> {
        self.commit(&book)?;
        let studies = book.finish();
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
        self.outputs.publish(&Published {
            studies: &studies,
            thumbnails: &self.state.thumbnails,
            failures: &self.state.failures,
            page,
        })?;
        let mut counts = self.state.counts.clone();
        counts.frames_scored = self.frames.len() as u64;
        counts.files_scored = self.files.len() as u64;
        counts.set_studies(&studies, &self.bands);
        Ok((counts, studies))
    }
}

/// The sinks' loop: rows and decode's per-file counts in, whole files out
/// to the study book and the outputs, with a commit whenever one is due.
///
/// # Errors
/// An output cannot be written; returning drops the receivers, which stops
/// every stage.
pub fn run(
    rx_rows: Receiver<Msg<Finding>>,
    rx_done: Receiver<FileDone>,
    book: &mut StudyBook,
    sinks: &mut Sinks,
) -> Result<()> {
    let mut ledger = Ledger::new();
    let take = |file: CompleteFile, book: &mut StudyBook, sinks: &mut Sinks| -> Result<()> {
        for row in &file.rows {
            match row {
                Ok(finding) => book.add_finding(finding),
                Err(rejected) => book.add_rejected(rejected),
            }
        }
        sinks.push_file(file)?;
        sinks.commit_if_due(book)
    };
    let (mut rows_open, mut done_open) = (true, true);
    while rows_open || done_open {
        let complete = select! {
            recv(rx_rows) -> row => match row {
                Ok(row) => ledger.arrive(row),
                Err(_) => { rows_open = false; None }
            },
            recv(rx_done) -> done => match done {
                Ok(done) => ledger.expect(done),
                Err(_) => { done_open = false; None }
            },
        };
        if let Some(file) = complete {
            take(file, book, sinks)?;
        }
    }
    for file in ledger.drain() {
        take(file, book, sinks)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_row_counts_and_take_studies_from_the_ranked_list() {
        let shard = |errors: u64| Counts {
            image_rows: 4,
            errors,
            errors_by_stage: [("decode".to_string(), errors)].into(),
            studies: 9,
            bands: [("URGENT".to_string(), 9)].into(),
            ..Counts::default()
        };
        let mut total = Counts::default();
        total.add(&shard(1));
        total.add(&shard(2));
        assert_eq!((total.image_rows, total.errors, total.errors_by_stage["decode"]), (8, 3, 3));
        total.set_studies(&[], &Bands::new(Vec::new()));
        assert_eq!((total.studies, total.bands.len()), (0, 0), "studies and bands come from the list, not the sum");
    }
}
