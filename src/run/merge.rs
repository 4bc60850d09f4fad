//! `nightscreen merge OUT`: joins the shards of a sharded run into the
//! outputs one process would have written.
//!
//! The row tables need nothing: every shard's parts are already in
//! `OUT/<table>/`. Merge ranks all shards' studies together (the same order
//! as [`crate::triage::rank`] gives one process), replaces the shards'
//! `studies` parts with one ranked part, writes the worklist (CSV, JSON,
//! HTML, with the shards' thumbnails linked into `OUT/thumbnails/`),
//! `failed_files.csv` and a `run.json` that lists every shard, and appends
//! a `run_merged` line to the audit trail. It refuses, naming them, while
//! any shard is missing or unfinished, or if shards disagree on software,
//! config, models or key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::audit::{AuditEvent, AuditLog};
use super::checkpoint::FILE_NAME as CHECKPOINT;
use super::report::{hostname, user, Outcome, RunReport, ShardSummary};
use super::shard::Shard;
use crate::error::{Error, Result};
use crate::privacy::PseudonymKey;
use crate::sink::names::{HANDOFF, MERGE_LOCK, SHARDS_DIR, THUMBNAILS};
use crate::sink::{html, thumbnails, Counts, Outputs, Published, RunStamp, ShardHandoff};
use crate::triage::{rank, Bands, StudyResult, TriageConfig};

/// What a merge joined.
#[derive(Debug)]
pub struct MergeSummary {
    pub run_id: String,
    pub shards: usize,
    pub studies: usize,
    pub errors: u64,
}

/// An exclusive `flock` on `OUT/.merge.lock`, released when dropped (or
/// when the process dies, so a killed merge never blocks the next).
struct MergeLock {
    _held: std::fs::File,
}

impl MergeLock {
    fn take(out: &Path) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let path = out.join(MERGE_LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Output { path: path.clone(), source })?;
        // SAFETY: flock on a descriptor this File owns for the call's duration.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::Output { path, source: std::io::Error::last_os_error() });
        }
        Ok(Self { _held: file })
    }
}

/// One finished shard: its run.json and its handoff.
struct Finished {
    shard: Shard,
    report: RunReport,
    handoff: ShardHandoff,
}

/// The shards' reports must agree on these for their rows to be one run's.
fn agreeing_fields(r: &RunReport) -> [(&'static str, &str); 3] {
    [
        ("software_version", r.software_version.as_str()),
        ("config_sha256", r.config_sha256.as_str()),
        ("pseudonym_key_id", r.pseudonym_key_id.as_str()),
    ]
}

/// Merges the shards under `OUT/shards/`.
///
/// # Errors
/// No shards; shards missing, unfinished or disagreeing; a key other than
/// the shards'; unreadable shard files; or an output that cannot be written.
pub fn run(out: &Path, key: &PseudonymKey) -> Result<MergeSummary> {
    // Shards that finish together may each try to merge (the Kubernetes
    // manifests have every shard try): one at a time, each complete.
    let _lock = MergeLock::take(out)?;
    let refuse = |problem: String| Error::Merge { out: out.to_path_buf(), problem };
    let shards = finished_shards(out)?;
    let first = &shards[0].report;
    for (i, (field, value)) in agreeing_fields(first).into_iter().enumerate() {
        if let Some(other) = shards.iter().find(|s| agreeing_fields(&s.report)[i].1 != value) {
            return Err(refuse(format!(
                "shards disagree on {field}: {} has {value:?}, {} has {:?}; re-run them with one software, config and key",
                shards[0].shard.tag(),
                other.shard.tag(),
                agreeing_fields(&other.report)[i].1
            )));
        }
    }
    if first.pseudonym_key_id != key.key_id() {
        return Err(refuse(format!(
            "the shards' pseudonyms were made with key {:?} but this key is {}: merge with the programme key the shards used",
            first.pseudonym_key_id,
            key.key_id()
        )));
    }
    let run_id = format!("merged-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut studies: Vec<StudyResult> = shards.iter().flat_map(|s| s.handoff.studies.iter().cloned()).collect();
    rank(&mut studies);
    let shadow = shards.iter().any(|s| s.report.shadow);
    let stamp = RunStamp {
        run_id: run_id.clone(),
        software_version: first.software_version.clone(),
        config_sha256: first.config_sha256.clone(),
        key: key.clone(),
    };
    let thumbs = link_thumbnails(out, &shards)?;
    let failed: Vec<_> = shards.iter().flat_map(|s| s.handoff.failures.iter().cloned()).collect();
    let models = first.model_stamps();
    // A study carries only its band's position: the names are the shards'
    // recorded bands (the defaults for a run.json from before they were).
    let bands = Bands::new(if first.bands.is_empty() { TriageConfig::default().bands } else { first.bands.clone() });
    let started_at = shards.iter().map(|s| s.report.started_at).min().unwrap_or_else(chrono::Utc::now);
    let finished_at = shards.iter().map(|s| s.report.finished_at).max().unwrap_or_else(chrono::Utc::now);
    let attempts = shards.iter().map(|s| s.report.attempts).max().unwrap_or(1);
    let page = html::PageInfo {
        run_id: &run_id,
        software_version: &stamp.software_version,
        started_at,
        finished_at,
        attempts,
        models: &models,
        bands: &bands,
        shadow,
    };
    Outputs::for_merge(out, &stamp).publish(&Published {
        studies: &studies,
        thumbnails: &thumbs,
        failures: &failed,
        page,
    })?;

    let mut counts = Counts::default();
    for s in &shards {
        counts.add(&s.report.counts);
    }
    counts.set_studies(&studies, &bands);
    let outcome = Outcome::of(counts.errors);
    let summaries: Vec<ShardSummary> = shards
        .iter()
        .map(|s| ShardSummary {
            tag: s.shard.tag(),
            run_id: s.report.run_id.clone(),
            host: s.report.host.clone(),
            attempts: s.report.attempts,
            started_at: s.report.started_at,
            finished_at: s.report.finished_at,
            counts: s.report.counts.clone(),
            inputs: s.report.inputs.clone(),
            outcome: s.report.outcome,
        })
        .collect();
    let report = RunReport {
        software: first.software.clone(),
        software_version: stamp.software_version.clone(),
        run_id: run_id.clone(),
        merged_at: Some(chrono::Utc::now()),
        started_at,
        attempts,
        finished_at,
        host: hostname(),
        user: user(),
        config_path: first.config_path.clone(),
        config_sha256: stamp.config_sha256.clone(),
        config: first.config.clone(),
        bands: bands.names().to_vec(),
        pseudonym_key_id: first.pseudonym_key_id.clone(),
        models: first.models.clone(),
        runtime: None,
        inputs: None,
        counts: counts.clone(),
        timings: None,
        outcome,
        shadow,
        shard: None,
        shards: Some(summaries.clone()),
        exit_code: outcome.exit_code(),
    };
    report.write(out)?;
    let mut audit = AuditLog::open(out, &run_id)?;
    audit.event(&AuditEvent::RunMerged { shards: summaries, studies: studies.len() as u64, counts: counts.clone() })?;
    audit.sync()?;
    Ok(MergeSummary { run_id, shards: shards.len(), studies: studies.len(), errors: counts.errors })
}

/// Every shard of the run, finished; else an error naming each that is
/// missing or unfinished.
fn finished_shards(out: &Path) -> Result<Vec<Finished>> {
    let dir = out.join(SHARDS_DIR);
    let refuse = |problem: String| Error::Merge { out: out.to_path_buf(), problem };
    let entries = std::fs::read_dir(&dir).map_err(|e| refuse(format!("no {SHARDS_DIR}/ folder to merge ({e})")))?;
    let mut found: BTreeMap<usize, (Shard, PathBuf)> = BTreeMap::new();
    let mut counts = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(shard) = Shard::from_tag(&name) {
            counts.push(shard.count);
            found.insert(shard.index, (shard, entry.path()));
        }
    }
    counts.sort_unstable();
    counts.dedup();
    let count = match counts.as_slice() {
        [n] => *n,
        [] => return Err(refuse(format!("no shard folders ({SHARDS_DIR}/shard-II-of-NN) to merge"))),
        many => return Err(refuse(format!("shards of different counts ({many:?}): one run per OUT"))),
    };
    let mut problems = Vec::new();
    let mut finished = Vec::new();
    for index in 0..count {
        let tag = Shard { index, count }.tag();
        let Some((shard, path)) = found.get(&index) else {
            problems.push(format!("{tag}: missing (never started)"));
            continue;
        };
        let report = RunReport::read(path)?;
        let handoff = read_handoff(&path.join(HANDOFF))?;
        match (report, handoff) {
            (Some(report), Some(handoff)) if !path.join(CHECKPOINT).exists() => {
                finished.push(Finished { shard: *shard, report, handoff });
            }
            _ => problems
                .push(format!("{tag}: unfinished (no run.json yet; run it again with the same index to complete it)")),
        }
    }
    if !problems.is_empty() {
        return Err(Error::ShardsPending(format!(
            "cannot merge {}: {} of {count} shards not finished:\n  {}",
            out.display(),
            problems.len(),
            problems.join("\n  ")
        )));
    }
    Ok(finished)
}

/// A shard's handoff, if it has written one.
fn read_handoff(path: &Path) -> Result<Option<ShardHandoff>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Record { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Output { path: path.to_path_buf(), source }),
    }
}

/// Hard-links (or copies, across filesystems) each shard's thumbnails into
/// `OUT/thumbnails/`; names are pseudonyms of distinct files, so shards
/// never collide.
fn link_thumbnails(out: &Path, shards: &[Finished]) -> Result<Vec<thumbnails::ThumbEntry>> {
    let target = out.join(THUMBNAILS);
    std::fs::create_dir_all(&target).map_err(|source| Error::Output { path: target.clone(), source })?;
    let mut entries = Vec::new();
    for s in shards {
        let source_dir = out.join(SHARDS_DIR).join(s.shard.tag()).join(THUMBNAILS);
        for entry in &s.handoff.thumbnails {
            let (from, to) = (source_dir.join(&entry.file), target.join(&entry.file));
            if !to.exists() && std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|source| Error::Output { path: to.clone(), source })?;
            }
            entries.push(entry.clone());
        }
    }
    Ok(entries)
}
