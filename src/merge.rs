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

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::privacy::PseudonymKey;
use crate::shard::Shard;
use crate::sink::audit::AuditLog;
use crate::sink::tables::{studies_batch, ModelStamp, RunStamp};
use crate::sink::{failures, html, thumbnails, worklist, PartWriter, ShardHandoff, HANDOFF, SHARDS_DIR};
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
        let path = out.join(".merge.lock");
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
    report: Value,
    handoff: ShardHandoff,
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
    let shards = finished_shards(out)?;
    let first = &shards[0].report;
    for field in ["software_version", "config_sha256", "pseudonym_key_id"] {
        if let Some(other) = shards.iter().find(|s| s.report[field] != first[field]) {
            return Err(Error::Config(format!(
                "shards disagree on {field}: {} has {}, {} has {}; re-run them with one software, config and key",
                shards[0].shard.tag(),
                first[field],
                other.shard.tag(),
                other.report[field]
            )));
        }
    }
    if first["pseudonym_key_id"].as_str() != Some(key.key_id().as_str()) {
        return Err(Error::Config(format!(
            "the shards' pseudonyms were made with key {} but this key is {}: merge with the programme key the shards used",
            first["pseudonym_key_id"],
            key.key_id()
        )));
    }
    let run_id = format!("merged-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    let mut studies: Vec<StudyResult> = shards.iter().flat_map(|s| s.handoff.studies.iter().cloned()).collect();
    rank(&mut studies);
    let shadow = shards.iter().any(|s| s.report["shadow"].as_bool() == Some(true));

    let stamp = RunStamp {
        run_id: run_id.clone(),
        software_version: first["software_version"].as_str().unwrap_or_default().to_string(),
        config_sha256: first["config_sha256"].as_str().unwrap_or_default().to_string(),
        key: key.clone(),
    };
    let bands = configured_bands(first);
    replace_studies_parts(out, &studies, &bands, &stamp)?;
    let thumbs = link_thumbnails(out, &shards)?;
    let rows = worklist::rows(&studies, &bands, shadow);
    worklist::write(out, &rows)?;
    let models = model_stamps(first);
    let time = |field: &'static str| {
        shards.iter().filter_map(move |s| s.report[field].as_str()?.parse::<chrono::DateTime<chrono::Utc>>().ok())
    };
    let page = html::PageInfo {
        run_id: &run_id,
        software_version: &stamp.software_version,
        started_at: time("started_at").min().unwrap_or_else(chrono::Utc::now),
        finished_at: time("finished_at").max().unwrap_or_else(chrono::Utc::now),
        attempts: shards.iter().filter_map(|s| s.report["attempts"].as_u64()).max().unwrap_or(1) as u32,
        models: &models,
        bands: &bands,
        shadow,
    };
    html::write(out, &rows, &thumbs, key, &page)?;
    let failed: Vec<failures::FailedFile> = shards.iter().flat_map(|s| s.handoff.failures.iter().cloned()).collect();
    failures::write(out, &failed)?;

    let counts = summed_counts(&shards, &studies, &bands);
    let errors = counts["errors"].as_u64().unwrap_or(0);
    let report = json!({
        "software": "nightscreen",
        "software_version": stamp.software_version,
        "run_id": run_id,
        "merged_at": chrono::Utc::now(),
        "started_at": page.started_at,
        "finished_at": page.finished_at,
        "config_sha256": stamp.config_sha256,
        "config": first["config"],
        "pseudonym_key_id": first["pseudonym_key_id"],
        "models": first["models"],
        "shadow": shadow,
        "counts": counts,
        "outcome": if errors > 0 { "completed_with_errors" } else { "ok" },
        "exit_code": u8::from(errors > 0),
        "shards": shards.iter().map(|s| json!({
            "tag": s.shard.tag(),
            "run_id": s.report["run_id"],
            "host": s.report["host"],
            "attempts": s.report["attempts"],
            "started_at": s.report["started_at"],
            "finished_at": s.report["finished_at"],
            "counts": s.report["counts"],
            "inputs": s.report["inputs"],
            "outcome": s.report["outcome"],
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec_pretty(&report)
        .map_err(|e| Error::Output { path: out.join("run.json"), source: std::io::Error::other(e) })?;
    crate::sink::write_atomically(&out.join("run.json"), &bytes)?;
    let mut audit = AuditLog::open(out, &run_id)?;
    audit.event(
        "run_merged",
        json!({ "shards": report["shards"], "studies": studies.len(), "counts": report["counts"] }),
    )?;
    audit.sync()?;
    Ok(MergeSummary { run_id, shards: shards.len(), studies: studies.len(), errors })
}

/// Every shard of the run, finished; else an error naming each that is
/// missing or unfinished.
fn finished_shards(out: &Path) -> Result<Vec<Finished>> {
    let dir = out.join(SHARDS_DIR);
    let entries =
        std::fs::read_dir(&dir).map_err(|e| Error::Config(format!("{}: no shards to merge ({e})", dir.display())))?;
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
        [] => return Err(Error::Config(format!("{}: no shard folders (shard-II-of-NN) to merge", dir.display()))),
        many => {
            return Err(Error::Config(format!(
                "{}: shards of different counts ({many:?}): one run per OUT",
                dir.display()
            )))
        }
    };
    let mut problems = Vec::new();
    let mut finished = Vec::new();
    for index in 0..count {
        let tag = Shard { index, count }.tag();
        let Some((shard, path)) = found.get(&index) else {
            problems.push(format!("{tag}: missing (never started)"));
            continue;
        };
        let report = std::fs::read(path.join("run.json")).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let handoff =
            std::fs::read(path.join(HANDOFF)).ok().and_then(|b| serde_json::from_slice::<ShardHandoff>(&b).ok());
        match (report, handoff) {
            (Some(report), Some(handoff)) if !path.join(crate::sink::checkpoint::FILE_NAME).exists() => {
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

/// Swaps the shards' `studies` parts (ranked within each shard) for one
/// part ranked across all of them: written first, so a crash leaves the
/// shards' parts, never nothing.
fn replace_studies_parts(out: &Path, studies: &[StudyResult], bands: &Bands, stamp: &RunStamp) -> Result<()> {
    let dir = out.join("studies");
    let old: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|source| Error::Output { path: dir.clone(), source })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-shard-") || n.starts_with("part-merged-"))
        })
        .collect();
    let batch = studies_batch(studies, bands, stamp);
    let mut part = PartWriter::create(&dir, &stamp.run_id, &batch, 8192)?;
    part.write(&batch)?;
    let written = part.close()?;
    for path in old.into_iter().filter(|p| *p != written) {
        std::fs::remove_file(&path).map_err(|source| Error::Output { path, source })?;
    }
    crate::sink::sync_dir(&dir)
}

/// Hard-links (or copies, across filesystems) each shard's thumbnails into
/// `OUT/thumbnails/`; names are pseudonyms of distinct files, so shards
/// never collide.
fn link_thumbnails(out: &Path, shards: &[Finished]) -> Result<Vec<thumbnails::ThumbEntry>> {
    let target = out.join(thumbnails::DIR);
    std::fs::create_dir_all(&target).map_err(|source| Error::Output { path: target.clone(), source })?;
    let mut entries = Vec::new();
    for s in shards {
        let source_dir = out.join(SHARDS_DIR).join(s.shard.tag()).join(thumbnails::DIR);
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

fn model_stamps(report: &Value) -> Vec<ModelStamp> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    report["models"]
        .as_array()
        .map(|models| {
            models
                .iter()
                .map(|m| ModelStamp {
                    id: text(&m["id"]),
                    version: text(&m["version"]),
                    sha256: text(&m["sha256"]),
                    labels: m["card"]["output"]["labels"]
                        .as_array()
                        .map(|l| l.iter().map(text).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The bands of the shards' config (`[triage] bands`), else the default
/// ones (a study carries only its band's position, so the names come from
/// the config the shards ran).
fn configured_bands(report: &Value) -> Bands {
    let from_config = report["config"]
        .as_str()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("triage")?.get("bands")?.as_array().cloned())
        .map(|bands| bands.iter().filter_map(|b| b.as_str().map(str::to_string)).collect::<Vec<_>>());
    Bands::new(from_config.filter(|b| !b.is_empty()).unwrap_or_else(|| TriageConfig::default().bands))
}

/// The shards' counts added up; studies and bands from the merged list.
fn summed_counts(shards: &[Finished], studies: &[StudyResult], band_names: &Bands) -> Value {
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    let mut maps: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for s in shards {
        let Some(counts) = s.report["counts"].as_object() else { continue };
        for (name, value) in counts {
            if let Some(n) = value.as_u64() {
                *sums.entry(name.clone()).or_default() += n;
            } else if let Some(map) = value.as_object() {
                let target = maps.entry(name.clone()).or_default();
                for (k, v) in map {
                    *target.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
                }
            }
        }
    }
    let mut bands: BTreeMap<String, u64> = BTreeMap::new();
    for s in studies {
        *bands.entry(band_names.name(s.band).to_string()).or_default() += 1;
    }
    sums.insert("studies".into(), studies.len() as u64);
    maps.insert("bands".into(), bands);
    let mut value = serde_json::to_value(&sums).unwrap_or_default();
    if let (Some(object), Ok(Value::Object(extra))) = (value.as_object_mut(), serde_json::to_value(&maps)) {
        object.extend(extra);
    }
    value
}
