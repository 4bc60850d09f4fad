//! `run --retry-failed`: a finished run whose server failed to deliver some
//! instances (error rows of stage `fetch`) is turned back into an
//! unfinished one with exactly those instances un-committed: their error
//! rows, failures and counts removed, and the study book no longer
//! counting them as failed. The resume that follows fetches and screens
//! only them, from the frozen manifest, and ends with the rows an
//! uninterrupted run gives.
//!
//! Only fetch failures are retried: an instance whose bytes are broken
//! would fail again the same way.

use std::collections::BTreeSet;
use std::path::Path;

use arrow_array::{Array, BooleanArray, StringArray};

use super::checkpoint::{file_key_of, Checkpoint, Fingerprint};
use crate::error::{Error, Result};
use crate::message::Stage;
use crate::sink::names::{CHECKPOINT, RETRY_STATE, RUN_JSON};
use crate::sink::{PartWriter, Table};
use crate::triage::{RuleSet, StudyBook};

fn refuse(out: &Path, problem: impl Into<String>) -> Error {
    Error::OutDir { path: out.to_path_buf(), problem: problem.into() }
}

/// Un-commits the fetch failures of the finished run in `out`; returns how many.
///
/// # Errors
/// `out` holds no finished run with fetch failures, one made with other
/// software, config, models or key, or its files cannot be rewritten.
pub fn prepare(
    out: &Path,
    tables: &Path,
    fingerprint: &Fingerprint,
    rules: &RuleSet,
    row_group_rows: usize,
) -> Result<u64> {
    if out.join(CHECKPOINT).exists() {
        // An interrupted retry (or run): resuming it is what the retry does.
        return Ok(0);
    }
    if !out.join(RUN_JSON).exists() {
        return Err(refuse(out, format!("holds no finished run ({RUN_JSON}) to retry")));
    }
    let Some(mut state) = Checkpoint::load_from(&out.join(RETRY_STATE))? else {
        return Err(refuse(out, "its run has no instances the server failed to deliver: nothing to retry"));
    };
    if &state.fingerprint != fingerprint {
        return Err(refuse(out, "its run was made with other software, config, models or key: nothing to retry"));
    }
    let fetch = Stage::Fetch.as_str();
    let (retried, kept): (Vec<_>, Vec<_>) = state.failures.drain(..).partition(|f| f.stage == fetch);
    state.failures = kept;
    let pseudonyms: BTreeSet<String> = retried.iter().map(|f| f.file_pseudonym.clone()).collect();
    let locators: BTreeSet<String> = retried.iter().map(|f| f.path.clone()).collect();
    for locator in &locators {
        state.files.remove(&file_key_of(locator.as_bytes()));
    }
    let n = retried.len() as u64;
    state.counts.errors = state.counts.errors.saturating_sub(n);
    if let Some(by_stage) = state.counts.errors_by_stage.get_mut(fetch) {
        *by_stage = by_stage.saturating_sub(n);
        if *by_stage == 0 {
            state.counts.errors_by_stage.remove(fetch);
        }
    }
    let errors_dir = tables.join(Table::Errors.dir());
    if let Some(parts) = state.parts.get_mut(Table::Errors.dir()) {
        let mut left = Vec::new();
        for part in parts.drain(..) {
            if without_rows(&errors_dir.join(&part), &pseudonyms, row_group_rows)? {
                left.push(part);
            }
        }
        *parts = left;
    }
    let mut book = StudyBook::restore(rules, std::mem::take(&mut state.book));
    book.forget_failed(&locators);
    state.book = book.snapshot();
    state.save(out)?;
    for name in [RUN_JSON, RETRY_STATE] {
        std::fs::remove_file(out.join(name)).map_err(|source| Error::Output { path: out.join(name), source })?;
    }
    Ok(n)
}

/// Rewrites a Parquet part without the rows of `files` (by file pseudonym);
/// returns whether any row is left (an emptied part is deleted).
fn without_rows(path: &Path, files: &BTreeSet<String>, row_group_rows: usize) -> Result<bool> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let parquet = |source| Error::Parquet { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(|source| Error::Output { path: path.to_path_buf(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?.build().map_err(parquet)?;
    let mut kept = Vec::new();
    let mut dropped = 0;
    for batch in reader {
        let batch = batch.map_err(|e| parquet(e.into()))?;
        let column = batch.column_by_name("file_pseudonym").and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let Some(column) = column else {
            return Err(refuse(path, "an errors part without a file_pseudonym column"));
        };
        let keep: BooleanArray =
            (0..column.len()).map(|i| Some(column.is_null(i) || !files.contains(column.value(i)))).collect();
        dropped += keep.iter().filter(|k| *k == Some(false)).count();
        let batch = arrow_select::filter::filter_record_batch(&batch, &keep).map_err(|e| parquet(e.into()))?;
        if batch.num_rows() > 0 {
            kept.push(batch);
        }
    }
    if dropped == 0 {
        return Ok(true);
    }
    if kept.is_empty() {
        std::fs::remove_file(path).map_err(|source| Error::Output { path: path.to_path_buf(), source })?;
        return Ok(false);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let tag = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")).unwrap_or(name);
    let mut writer = PartWriter::create(dir, tag, &kept[0], row_group_rows)?;
    for batch in &kept {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(true)
}
