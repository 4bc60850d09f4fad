//! Wiring: builds every stage, then runs them as threads joined by bounded
//! channels: ingest → decode + preprocess (rayon pool) → infer → triage →
//! sinks (on the calling thread).
//!
//! Everything that can fail for the whole run (config, models, ONNX
//! Runtime, output folder) is checked before the first file is read. A full
//! channel blocks its producer, so memory is bounded by the capacities, not
//! by the size of the night. Shutdown is "drop the sender".
//!
//! Rows reach the sinks a whole input file at a time ([`Ledger`]), and the
//! sinks commit every few seconds; an OUT holding an unfinished run's
//! checkpoint is resumed: its committed files are not read again.

use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::{bounded, select, Receiver};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::decode::{self, Decoder};
use crate::error::{Error, Result};
use crate::infer;
use crate::ingest;
use crate::message::{FileDone, Msg, SourceId};
use crate::model::{self, VerifiedModel};
use crate::preprocess::Preprocessor;
use crate::progress::Progress;
use crate::runtime::Runtime;
use crate::sink::audit::AuditLog;
use crate::sink::checkpoint::{file_key, Checkpoint, Fingerprint};
use crate::sink::report::{self, InputRecord, ModelRecord, RunReport, RuntimeRecord, Timings};
use crate::sink::{outdir, Ledger, ModelStamp, OutPaths, RunStamp, Sinks};
use crate::source::{FileSystem, Listing, Source};
use crate::triage::{self, Finding, RuleSet, StudyBook};

/// The `[pipeline]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Messages each channel holds before its producer waits; the tensor
    /// queue into inference holds at least two batches whatever this says.
    /// Small queues bound memory and the end-of-run tail (one core inferring
    /// what is queued while the others are done); 16 measured as fast as 64
    /// on the benchmark batch with 90 MiB less peak memory. Default: 16.
    pub channel_capacity: usize,
    /// Cores to use in all (decode + ONNX Runtime); 0 means all. Default: 0.
    pub threads: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self { channel_capacity: 16, threads: 0 }
    }
}

/// What a finished run tells its caller.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub out: PathBuf,
    pub files_seen: u64,
    pub frames_scored: u64,
    pub studies: u64,
    pub errors: u64,
    pub skipped: u64,
    pub bands: std::collections::BTreeMap<String, u64>,
    pub execution_provider: String,
    pub seconds: f64,
}

fn new_run_id(now: &chrono::DateTime<chrono::Utc>) -> String {
    format!("{}-{:04x}", now.format("%Y%m%dT%H%M%SZ"), (now.timestamp_subsec_nanos() ^ std::process::id()) & 0xffff)
}

/// Splits cores between decode and ONNX Runtime's intra-op threads.
///
/// Inference gets half the cores; decode gets all of them. Decode workers
/// wait on the bounded tensor queue whenever inference is behind, so the
/// extra workers cost nothing then, and they fill the cores inference
/// leaves idle between batches and at the end of the run. Measured on 2
/// cores: 2 decode + 1 inference thread beat 1 + 1 (see README, Benchmarks).
fn split_threads(cfg: &Config) -> (usize, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = if cfg.pipeline.threads > 0 { cfg.pipeline.threads } else { cores };
    let infer = if cfg.infer.threads > 0 { cfg.infer.threads } else { (total / 2).max(1) };
    let decode = if cfg.decode.threads > 0 { cfg.decode.threads } else { total };
    (decode, infer)
}

/// SHA-256 of the input list (one path per line, in walk order): two runs
/// over the same files have the same digest, whatever the files hold.
fn file_list_digest<'a>(inputs: impl Iterator<Item = &'a SourceId>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for input in inputs {
        hasher.update(input.key_bytes());
        hasher.update(b"\n");
    }
    format!("{:x}", hasher.finalize())
}

/// Runs one batch end to end.
///
/// # Errors
/// A setup problem (config, models, ONNX Runtime, output folder) or an
/// output write failure. Problems with input files are never errors here:
/// they become rows in `errors/` and are counted in the summary.
pub fn run(cfg: &Config, progress: &Progress) -> Result<RunSummary> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    cfg.validate()?;
    let root = cfg.out.clone().ok_or_else(|| Error::Config("no output folder".into()))?;
    let paths = match cfg.shard {
        Some(shard) => OutPaths::shard(&root, shard),
        None => OutPaths::single(&root),
    };
    // The run's own files (a shard's under OUT/shards/<tag>/).
    let out = paths.run.clone();
    let key = cfg.key.clone().ok_or(crate::privacy::KeyError::Missing)?;

    let models: Vec<VerifiedModel> = cfg
        .models
        .iter()
        .map(|entry| model::load(&cfg.models_dir, &entry.id, entry.route.clone()))
        .collect::<std::result::Result<_, _>>()?;
    let rules = RuleSet::new(&cfg.triage, &models).map_err(|e| Error::Config(e.to_string()))?;
    let (decode_threads, infer_threads) = split_threads(cfg);
    let runtime = Runtime::load(cfg.infer.device)?;
    log::info!("ONNX Runtime {} from {} on {}", runtime.version, runtime.library_path.display(), runtime.provider);
    let sessions =
        models.iter().map(|m| runtime.session(m, infer_threads)).collect::<std::result::Result<Vec<_>, _>>()?;
    let decoder = Decoder::new(&cfg.decode)
        .with_model_inputs(models.iter().map(|m| (m.card.input.width, m.card.input.height)).collect());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(decode_threads)
        .thread_name(|i| format!("decode-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start decode threads: {e}")))?;
    let stamps: Vec<ModelStamp> = models
        .iter()
        .map(|m| ModelStamp {
            id: m.card.id.clone(),
            version: m.card.version.clone(),
            sha256: m.card.sha256.to_lowercase(),
            labels: m.card.output.labels.clone(),
        })
        .collect();
    let fingerprint = Fingerprint {
        software_version: crate::VERSION.to_string(),
        config_sha256: cfg.source_sha256.clone(),
        models: stamps.iter().map(|m| format!("{} {} {}", m.id, m.version, m.sha256)).collect(),
        pseudonym_key_id: key.key_id(),
    };
    let resumed = outdir::prepare(&paths, cfg.overwrite, &fingerprint)?;
    let is_resume = resumed.is_some();
    let mut state = resumed.unwrap_or_else(|| Checkpoint::new(new_run_id(&started_at), started_at, fingerprint));
    if is_resume {
        // Recorded before any work, so attempts killed early still count.
        state.attempt += 1;
        state.save(&out)?;
    }
    let run_stamp = RunStamp {
        run_id: state.run_id.clone(),
        software_version: crate::VERSION.to_string(),
        config_sha256: cfg.source_sha256.clone(),
        key: key.clone(),
    };
    let mut audit = AuditLog::open(&out, &run_stamp.run_id)?;
    let mut book = StudyBook::restore(&rules, std::mem::take(&mut state.book));
    let setup_seconds = started.elapsed().as_secs_f64();

    let ingest_started = Instant::now();
    let source = FileSystem::new(&cfg.ingest, &cfg.inputs);
    let Listing { instances: mut files, rejected: mut walk_rejects } = source.list();
    let files_found = (files.len() + walk_rejects.len()) as u64;
    let file_list_sha256 = file_list_digest(files.iter().map(|f| &f.id).chain(walk_rejects.iter().map(|r| &r.source)));
    let user = report::user();
    if is_resume {
        files.retain(|f| !state.files.contains(&file_key(&f.id)));
        walk_rejects.retain(|r| !state.files.contains(&file_key(&r.source)));
        let left = (files.len() + walk_rejects.len()) as u64;
        log::info!(
            "resuming run {} (attempt {}): {} of {files_found} files already committed",
            state.run_id,
            state.attempt,
            files_found - left
        );
        audit.event(
            "run_resumed",
            serde_json::json!({
                "host": report::hostname(),
                "user": user,
                "attempt": state.attempt,
                "files_seen": files_found,
                "file_list_sha256": file_list_sha256,
                "files_committed": state.files.len(),
                "files_left": left,
                "commits": state.commits,
            }),
        )?;
    } else {
        audit.event(
            "run_started",
            serde_json::json!({
                "host": report::hostname(),
                "user": user,
                "software_version": crate::VERSION,
                "config_path": cfg.source_path.as_ref().map(|p| p.display().to_string()),
                "config_sha256": cfg.source_sha256,
                "pseudonym_key_id": key.key_id(),
                "shadow": cfg.sinks.shadow,
                "shard": cfg.shard.map(|s| s.tag()),
                "models": models.iter().map(|m| serde_json::json!({"id": m.card.id, "version": m.card.version, "sha256": m.card.sha256.to_lowercase()})).collect::<Vec<_>>(),
                "inputs": cfg.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "files_seen": files_found,
                "file_list_sha256": file_list_sha256,
            }),
        )?;
        log::info!("found {files_found} files");
    }
    let run_started_at = state.started_at;
    let mut sinks = Sinks::create(&paths, &cfg.sinks, run_stamp.clone(), stamps, rules.bands().clone(), state)?;
    let ingest_seconds = ingest_started.elapsed().as_secs_f64();
    progress.set_total((files.len() + walk_rejects.len()) as u64);

    let pipeline_started = Instant::now();
    let cap = cfg.pipeline.channel_capacity;
    let (tx_ingest, rx_ingest) = bounded(cap);
    // Two batches waiting keep inference busy; more only lengthens the end
    // of the run, when decode is done and one thread infers what is queued.
    let (tx_prepared, rx_prepared) = bounded(cap.max(2 * cfg.infer.batch_size));
    let (tx_scored, rx_scored) = bounded(cap);
    let (tx_found, rx_found) = bounded(cap);
    // Decode's per-file counts overtake the rows (no inference on the way);
    // the sinks read both, so this only needs room for a burst.
    let (tx_done, rx_done) = bounded(4 * cap);
    let preprocessor = Preprocessor::new(&models);
    let infer_cfg = cfg.infer.clone();
    let on_file_done = move |done: FileDone| {
        progress.inc();
        // Sent only while the sinks listen; after a write failure they are gone.
        let _ = tx_done.send(done);
    };

    let sink_result: Result<()> = std::thread::scope(|s| {
        let models = &models;
        let shard = cfg.shard;
        let source = &source;
        s.spawn(move || ingest::run(files, walk_rejects, source, models, shard, &tx_ingest));
        let decoder = &decoder;
        let pool = &pool;
        // Decode and preprocess share the pool: each frame is shrunk to
        // tensors by the worker that decoded it.
        let preprocessor = &preprocessor;
        let emit = move |msg| {
            let mut sent = 0;
            let open = preprocessor.apply(msg, |prepared| {
                sent += 1;
                tx_prepared.send(prepared).is_ok()
            });
            open.then_some(sent)
        };
        // The counts' sender goes with decode, so the sinks see it close.
        s.spawn(move || decode::run(decoder, source, pool, rx_ingest, &emit, &on_file_done));
        s.spawn(move || infer::run(sessions, &infer_cfg, rx_prepared, tx_scored));
        let rules = &rules;
        s.spawn(move || triage::run(rules, rx_scored, tx_found));
        // On a write failure this returns, dropping the receivers, which
        // stops every stage.
        collect(rx_found, rx_done, &mut book, &mut sinks)
    });
    progress.finish();
    sink_result?;
    let (counts, studies) = sinks.finish(book)?;
    let files_seen = files_found;
    let image_files = sinks.state().instances;
    let pipeline_seconds = pipeline_started.elapsed().as_secs_f64();

    let exit_code = if counts.errors > 0 { 1 } else { 0 };
    let outcome = if exit_code == 0 { "ok" } else { "completed_with_errors" };
    audit.studies(&studies, rules.bands())?;
    audit.event(
        "run_finished",
        serde_json::json!({
            "outcome": outcome,
            "exit_code": exit_code,
            "frames_scored": counts.frames_scored,
            "studies": counts.studies,
            "errors": counts.errors,
            "skipped": counts.skipped,
            "bands": counts.bands,
        }),
    )?;
    audit.sync()?;
    let summary = RunSummary {
        out: out.clone(),
        files_seen,
        frames_scored: counts.frames_scored,
        studies: counts.studies,
        errors: counts.errors,
        skipped: counts.skipped,
        bands: counts.bands.clone(),
        execution_provider: runtime.provider.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let report = RunReport {
        software: "nightscreen",
        software_version: crate::VERSION,
        run_id: run_stamp.run_id,
        started_at: run_started_at,
        attempts: sinks.state().attempt,
        finished_at: chrono::Utc::now(),
        host: report::hostname(),
        user,
        config_path: cfg.source_path.as_ref().map(|p| p.display().to_string()),
        config_sha256: cfg.source_sha256.clone(),
        config: cfg.source_text.clone(),
        pseudonym_key_id: key.key_id(),
        models: models
            .iter()
            .map(|m| ModelRecord {
                id: m.card.id.clone(),
                version: m.card.version.clone(),
                sha256: m.card.sha256.to_lowercase(),
                onnx_path: m.onnx_path.display().to_string(),
                card_path: m.card_path.display().to_string(),
                card: m.card.clone(),
            })
            .collect(),
        runtime: RuntimeRecord {
            library: runtime.library_path.display().to_string(),
            version: runtime.version.clone(),
            execution_provider: runtime.provider.clone(),
            available_providers: runtime.available_providers.clone(),
            device_requested: format!("{:?}", cfg.infer.device).to_lowercase(),
            intra_op_threads: infer_threads,
            decode_threads,
            batch_size: cfg.infer.batch_size,
        },
        inputs: InputRecord {
            roots: cfg.inputs.iter().map(|p| p.display().to_string()).collect(),
            files_seen,
            image_files,
            file_list_sha256,
        },
        timings: Timings {
            setup_seconds,
            ingest_seconds,
            pipeline_seconds,
            total_seconds: started.elapsed().as_secs_f64(),
            frames_per_second: counts.frames_scored as f64 / pipeline_seconds.max(1e-9),
        },
        counts,
        outcome,
        shadow: cfg.sinks.shadow,
        shard: cfg.shard.map(|s| report::ShardRecord { index: s.index, count: s.count }),
        exit_code,
    };
    report.write(&out)?;
    // run.json now records the finished run; the checkpoint has done its job.
    Checkpoint::remove(&out)?;
    Ok(summary)
}

/// The sinks' loop: rows and decode's per-file counts in, whole files out
/// to the study book and the tables, with a commit whenever one is due.
fn collect(
    rx_rows: Receiver<Msg<Finding>>,
    rx_done: Receiver<FileDone>,
    book: &mut StudyBook,
    sinks: &mut Sinks,
) -> Result<()> {
    let mut ledger = Ledger::new();
    let take = |file: crate::sink::CompleteFile, book: &mut StudyBook, sinks: &mut Sinks| -> Result<()> {
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
