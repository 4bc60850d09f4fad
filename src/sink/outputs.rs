//! The run's outputs as [`Output`] components: the row tables, the
//! thumbnails, the failures list, the studies table, the worklist files,
//! the worklist page and a shard's hand-off to `merge`.
//!
//! Each wraps one writer of this folder and keeps what it holds between
//! commits; [`super::Outputs`] decides which a run or a merge has.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

use super::names::{HANDOFF, THUMBNAILS};
use super::{
    failures, html, sync_dir, thumbnails, worklist, ModelStamp, OutPaths, Output, PartWriter, Published, RunStamp,
    ShardHandoff, Table,
};
use crate::error::{Error, Result};
use crate::message::{RejectKind, Rejected};
use crate::privacy::PseudonymKey;
use crate::run::checkpoint::Checkpoint;
use crate::run::ledger::CompleteFile;
use crate::triage::{Bands, Finding};

/// Rows gathered before they go to the Parquet writer: enough for
/// efficient column building, few enough that pending findings (each with
/// its header) stay a small part of memory.
const WRITE_ROWS: usize = 512;

/// `images/`, `errors/` and `skipped/`: rows as files complete, one part
/// file per table per commit, opened with its first row so a quiet table
/// adds no empty files.
pub struct RowTables {
    tables: PathBuf,
    part_prefix: String,
    run: RunStamp,
    models: Vec<ModelStamp>,
    bands: Bands,
    row_group_rows: usize,
    /// Commits so far: the next part files are numbered one more.
    commits: u64,
    parts: BTreeMap<Table, PartWriter>,
    /// Tables with at least one committed part.
    committed: BTreeSet<Table>,
    pending_images: Vec<Finding>,
    pending_errors: Vec<(Rejected, chrono::DateTime<chrono::Utc>)>,
    pending_skipped: Vec<(Rejected, chrono::DateTime<chrono::Utc>)>,
}

impl RowTables {
    /// Creates the table folders and takes over `state`'s committed parts.
    ///
    /// # Errors
    /// A folder cannot be created.
    pub fn create(
        paths: &OutPaths,
        run: &RunStamp,
        models: &[ModelStamp],
        bands: &Bands,
        row_group_rows: usize,
        state: &Checkpoint,
    ) -> Result<Self> {
        for table in Table::ROWS {
            let dir = paths.tables.join(table.dir());
            std::fs::create_dir_all(&dir).map_err(|source| Error::Output { path: dir, source })?;
        }
        let committed =
            Table::ROWS.into_iter().filter(|t| state.parts.get(t.dir()).is_some_and(|p| !p.is_empty())).collect();
        Ok(Self {
            tables: paths.tables.clone(),
            part_prefix: paths.part_prefix.clone(),
            run: run.clone(),
            models: models.to_vec(),
            bands: bands.clone(),
            row_group_rows,
            commits: state.commits,
            parts: BTreeMap::new(),
            committed,
            pending_images: Vec::new(),
            pending_errors: Vec::new(),
            pending_skipped: Vec::new(),
        })
    }

    /// Hands pending rows of each table to its part file (opening one if
    /// needed) once there are enough of them, or any at all with `all`.
    fn flush(&mut self, all: bool) -> Result<()> {
        let limit = if all { 1 } else { self.row_group_rows.min(WRITE_ROWS) };
        if self.pending_images.len() >= limit {
            let batch = super::tables::images_batch(&self.pending_images, &self.run, &self.models, &self.bands)?;
            self.write(Table::Images, &batch)?;
            self.pending_images.clear();
        }
        if self.pending_errors.len() >= limit {
            let batch = super::tables::rejected_batch(Table::Errors, &self.pending_errors, &self.run)?;
            self.write(Table::Errors, &batch)?;
            self.pending_errors.clear();
        }
        if self.pending_skipped.len() >= limit {
            let batch = super::tables::rejected_batch(Table::Skipped, &self.pending_skipped, &self.run)?;
            self.write(Table::Skipped, &batch)?;
            self.pending_skipped.clear();
        }
        Ok(())
    }

    fn write(&mut self, table: Table, batch: &RecordBatch) -> Result<()> {
        let part = match self.parts.entry(table) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let tag = format!("{}{}-{:05}", self.part_prefix, self.run.run_id, self.commits + 1);
                e.insert(PartWriter::create(&self.tables.join(table.dir()), &tag, batch, self.row_group_rows)?)
            }
        };
        part.write(batch)
    }

    fn empty_batch(&self, table: Table) -> Result<RecordBatch> {
        match table {
            Table::Images => super::tables::images_batch(&[], &self.run, &self.models, &self.bands),
            _ => super::tables::rejected_batch(table, &[], &self.run),
        }
    }
}

impl Output for RowTables {
    fn file(&mut self, file: &CompleteFile) -> Result<()> {
        let now = chrono::Utc::now();
        for row in &file.rows {
            match row {
                Ok(finding) => self.pending_images.push(finding.clone()),
                Err(r) if r.kind == RejectKind::Error => self.pending_errors.push((r.clone(), now)),
                Err(r) => self.pending_skipped.push((r.clone(), now)),
            }
            self.flush(false)?;
        }
        Ok(())
    }

    fn commit(&mut self, state: &mut Checkpoint) -> Result<()> {
        self.flush(true)?;
        for (table, part) in std::mem::take(&mut self.parts) {
            let path = part.close()?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            state.parts.entry(table.dir().to_string()).or_default().push(name);
            self.committed.insert(table);
        }
        for table in Table::ROWS {
            sync_dir(&self.tables.join(table.dir()))?;
        }
        self.commits += 1;
        Ok(())
    }

    /// Gives every table without a part an empty one, so readers find its schema.
    fn publish(&mut self, _run: &Published<'_>) -> Result<()> {
        let tag = format!("{}{}", self.part_prefix, self.run.run_id);
        for table in Table::ROWS.into_iter().filter(|t| !self.committed.contains(t)) {
            let empty = self.empty_batch(table)?;
            PartWriter::create(&self.tables.join(table.dir()), &tag, &empty, self.row_group_rows)?.close()?;
        }
        Ok(())
    }
}

/// `thumbnails/`: one JPEG per scored frame, synced on a thread of its own
/// and listed in the checkpoint with the commit that covers it.
pub struct Thumbnails {
    dir: PathBuf,
    key: PseudonymKey,
    /// Written since the last commit (recorded by the next).
    pending: Vec<thumbnails::ThumbEntry>,
    syncer: thumbnails::Syncer,
}

impl Thumbnails {
    /// Creates `out/thumbnails/` and starts its syncer.
    ///
    /// # Errors
    /// The folder cannot be created or the thread started.
    pub fn start(out: &Path, key: &PseudonymKey) -> Result<Self> {
        let dir = out.join(THUMBNAILS);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Output { path: dir.clone(), source })?;
        let syncer = thumbnails::Syncer::start(&dir)?;
        Ok(Self { dir, key: key.clone(), pending: Vec::new(), syncer })
    }
}

impl Output for Thumbnails {
    fn file(&mut self, file: &CompleteFile) -> Result<()> {
        // One thumbnail per frame, however many models scored it; a file's
        // rows all arrive together, so its frames are all in `file`.
        let mut frames = HashSet::new();
        for finding in file.rows.iter().filter_map(|r| r.as_ref().ok()) {
            let meta = &finding.scored.meta;
            if !frames.insert(meta.frame_index) {
                continue;
            }
            if let Some((entry, path)) = thumbnails::write(&self.dir, &self.key, &finding.scored)? {
                self.pending.push(entry);
                self.syncer.push(path);
            }
        }
        Ok(())
    }

    fn commit(&mut self, state: &mut Checkpoint) -> Result<()> {
        self.syncer.wait()?;
        state.thumbnails.append(&mut self.pending);
        Ok(())
    }
}

/// `failed_files.csv`: every error row with its path (identifiable).
pub struct Failures {
    out: PathBuf,
    key: PseudonymKey,
    /// Error rows since the last commit.
    pending: Vec<failures::FailedFile>,
}

impl Failures {
    pub fn new(out: &Path, key: &PseudonymKey) -> Self {
        Self { out: out.to_path_buf(), key: key.clone(), pending: Vec::new() }
    }
}

impl Output for Failures {
    fn file(&mut self, file: &CompleteFile) -> Result<()> {
        for r in file.rows.iter().filter_map(|r| r.as_ref().err()).filter(|r| r.kind == RejectKind::Error) {
            self.pending.push(failures::FailedFile {
                path: r.source.locator(),
                stage: r.stage.to_string(),
                frame: r.frame,
                reason: r.reason.clone(),
                file_pseudonym: self.key.file_pseudonym(&r.source),
            });
        }
        Ok(())
    }

    fn commit(&mut self, state: &mut Checkpoint) -> Result<()> {
        state.failures.append(&mut self.pending);
        Ok(())
    }

    fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        failures::write(&self.out, run.failures)
    }
}

/// `studies/`: one part of the ranked studies. A merge's replaces the
/// shards' parts (ranked within each shard only).
pub struct StudiesTable {
    dir: PathBuf,
    tag: String,
    run: RunStamp,
    row_group_rows: usize,
    replace_shards: bool,
}

impl StudiesTable {
    /// The part `part-<tag>.parquet` of a run's `studies/` under `tables`.
    pub fn new(tables: &Path, tag: &str, run: &RunStamp, row_group_rows: usize) -> Self {
        let dir = tables.join(Table::Studies.dir());
        Self { dir, tag: tag.to_string(), run: run.clone(), row_group_rows, replace_shards: false }
    }

    /// Merge's part, which replaces the shards' (and an earlier merge's).
    pub fn replacing_shards(out: &Path, run: &RunStamp) -> Self {
        Self { replace_shards: true, ..Self::new(out, &run.run_id, run, 8192) }
    }
}

impl Output for StudiesTable {
    fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        // Listed before writing, so a crash leaves the shards' parts, never nothing.
        let old: Vec<PathBuf> = if self.replace_shards {
            std::fs::read_dir(&self.dir)
                .map_err(|source| Error::Output { path: self.dir.clone(), source })?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("part-shard-") || n.starts_with("part-merged-"))
                })
                .collect()
        } else {
            Vec::new()
        };
        let batch = super::tables::studies_batch(run.studies, run.page.bands, &self.run)?;
        let mut part = PartWriter::create(&self.dir, &self.tag, &batch, self.row_group_rows)?;
        part.write(&batch)?;
        let written = part.close()?;
        if self.replace_shards {
            for path in old.into_iter().filter(|p| *p != written) {
                std::fs::remove_file(&path).map_err(|source| Error::Output { path, source })?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// `worklist.csv` and `worklist.json`.
pub struct WorklistFiles {
    out: PathBuf,
}

impl WorklistFiles {
    pub fn new(out: &Path) -> Self {
        Self { out: out.to_path_buf() }
    }
}

impl Output for WorklistFiles {
    fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        worklist::write(&self.out, &worklist::rows(run.studies, run.page.bands, run.page.shadow))
    }
}

/// `worklist.html`, with the studies' thumbnails.
pub struct WorklistPage {
    out: PathBuf,
    key: PseudonymKey,
}

impl WorklistPage {
    pub fn new(out: &Path, key: &PseudonymKey) -> Self {
        Self { out: out.to_path_buf(), key: key.clone() }
    }
}

impl Output for WorklistPage {
    fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        let rows = worklist::rows(run.studies, run.page.bands, run.page.shadow);
        html::write(&self.out, &rows, run.thumbnails, &self.key, &run.page)
    }
}

/// A shard's `shard-studies.json`, what `merge` ranks across shards.
pub struct Handoff {
    path: PathBuf,
}

impl Handoff {
    pub fn new(out: &Path) -> Self {
        Self { path: out.join(HANDOFF) }
    }
}

impl Output for Handoff {
    fn publish(&mut self, run: &Published<'_>) -> Result<()> {
        let handoff = ShardHandoff {
            studies: run.studies.to_vec(),
            thumbnails: run.thumbnails.to_vec(),
            failures: run.failures.to_vec(),
        };
        super::write_json(&self.path, &handoff, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> RunStamp {
        RunStamp {
            run_id: "r1".into(),
            software_version: "1".into(),
            config_sha256: "c".into(),
            key: PseudonymKey::from_hex(&"ab".repeat(32), "test").expect("key"),
        }
    }

    fn checkpoint() -> Checkpoint {
        let fingerprint = crate::run::checkpoint::Fingerprint {
            software_version: "1".into(),
            config_sha256: "c".into(),
            models: vec![],
            pseudonym_key_id: "k".into(),
        };
        Checkpoint::new("r1".into(), chrono::Utc::now(), fingerprint)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn published<'a>(page: html::PageInfo<'a>) -> Published<'a> {
        Published { studies: &[], thumbnails: &[], failures: &[], page }
    }

    fn page() -> html::PageInfo<'static> {
        static NO_BANDS: std::sync::OnceLock<Bands> = std::sync::OnceLock::new();
        html::PageInfo {
            run_id: "r1",
            software_version: "1",
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            attempts: 1,
            models: &[],
            bands: NO_BANDS.get_or_init(|| Bands::new(Vec::new())),
            shadow: false,
        }
    }

    #[test]
    fn row_tables_give_only_tables_without_a_committed_part_an_empty_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = OutPaths::single(dir.path());
        let mut state = checkpoint();
        state.parts.insert(Table::Errors.dir().into(), vec!["part-r1-00001.parquet".into()]);
        let mut tables = RowTables::create(&paths, &stamp(), &[], &Bands::new(Vec::new()), 10, &state).expect("create");
        tables.commit(&mut state).expect("commit with nothing pending");
        tables.publish(&published(page())).expect("publish");
        assert_eq!(names(&dir.path().join("images")), ["part-r1.parquet"]);
        assert_eq!(names(&dir.path().join("skipped")), ["part-r1.parquet"]);
        assert!(names(&dir.path().join("errors")).is_empty(), "errors/ has a committed part already");
        assert_eq!(state.parts.len(), 1, "nothing pending, no part recorded");
    }

    #[test]
    fn a_merges_studies_part_replaces_the_shards_and_leaves_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let studies = dir.path().join("studies");
        std::fs::create_dir_all(&studies).expect("mkdir");
        for name in ["part-shard-00-of-02-r.parquet", "part-merged-old.parquet", "notes.txt"] {
            std::fs::write(studies.join(name), b"x").expect("write");
        }
        let run = RunStamp { run_id: "merged-new".into(), ..stamp() };
        StudiesTable::replacing_shards(dir.path(), &run).publish(&published(page())).expect("publish");
        assert_eq!(names(&studies), ["notes.txt", "part-merged-new.parquet"]);
        // A run's own part replaces nothing.
        StudiesTable::new(dir.path(), "r1", &stamp(), 10).publish(&published(page())).expect("publish");
        assert_eq!(names(&studies), ["notes.txt", "part-merged-new.parquet", "part-r1.parquet"]);
    }
}
