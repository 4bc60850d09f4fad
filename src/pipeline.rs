//! Wiring: builds every stage, then runs them as threads joined by bounded
//! channels: ingest → decode + preprocess (rayon pool) → infer → triage →
//! sinks (on the calling thread).
//!
//! Everything that can fail for the whole run (config, models, ONNX
//! Runtime, output folder) is checked before the first file is read. A full
//! channel blocks its producer, so memory is bounded by the capacities, not
//! by the size of the night. Shutdown is "drop the sender".

use std::path::{Path, PathBuf};
use std::time::Instant;

use crossbeam_channel::bounded;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::decode::{self, Decoder};
use crate::error::{Error, Result};
use crate::infer;
use crate::ingest;
use crate::model::{self, VerifiedModel};
use crate::preprocess::Preprocessor;
use crate::progress::Progress;
use crate::runtime::Runtime;
use crate::sink::report::{self, InputRecord, ModelRecord, RunReport, RuntimeRecord, Timings};
use crate::sink::audit::AuditLog;
use crate::sink::{ModelStamp, RunStamp, Sinks};
use crate::triage::{self, RuleSet, StudyBook};

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

/// Files a run writes into OUT; only these are ever replaced.
const OUR_OUTPUTS: &[&str] = &["images", "studies", "errors", "skipped", "worklist.csv", "worklist.json", "run.json"];

fn is_part_file(name: &str) -> bool {
    name.starts_with("part-") || name.starts_with(".part-")
}

/// Our outputs already in `out` that no nightscreen run accounts for: a
/// folder without `run.json` or `audit.jsonl` is someone else's, and its
/// `worklist.csv` (say) must not be overwritten.
fn foreign_outputs(out: &Path) -> Vec<String> {
    if out.join("run.json").exists() || out.join("audit.jsonl").exists() {
        return Vec::new();
    }
    OUR_OUTPUTS
        .iter()
        .filter(|name| {
            let path = out.join(name);
            if path.is_dir() {
                std::fs::read_dir(&path)
                    .map(|entries| entries.flatten().any(|e| !e.file_name().to_str().is_some_and(is_part_file)))
                    .unwrap_or(true)
            } else {
                path.exists()
            }
        })
        .map(|name| name.to_string())
        .collect()
}

fn prepare_out(out: &Path, overwrite: bool) -> Result<()> {
    let io = |source| Error::Output { path: out.to_path_buf(), source };
    let foreign = foreign_outputs(out);
    if !foreign.is_empty() {
        return Err(Error::Config(format!(
            "{} already holds {} that no nightscreen run wrote (no run.json or audit.jsonl); \
             nightscreen never overwrites files it did not write: choose another --out",
            out.display(),
            foreign.join(", ")
        )));
    }
    if out.join("run.json").exists() {
        if !overwrite {
            return Err(Error::Config(format!(
                "{} already holds a run (run.json); choose another --out or pass --overwrite",
                out.display()
            )));
        }
        for name in OUR_OUTPUTS {
            let path = out.join(name);
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).map_err(io)?.flatten() {
                    if entry.file_name().to_str().is_some_and(is_part_file) {
                        std::fs::remove_file(entry.path()).map_err(io)?;
                    }
                }
            } else if path.is_file() {
                std::fs::remove_file(&path).map_err(io)?;
            }
        }
    }
    std::fs::create_dir_all(out).map_err(io)
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

/// SHA-256 of the input file list (one path per line, in walk order): two
/// runs over the same files have the same digest, whatever the files hold.
fn file_list_digest<'a>(paths: impl Iterator<Item = &'a Path>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for path in paths {
        hasher.update(path.as_os_str().as_encoded_bytes());
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
    let out = cfg.out.clone().ok_or_else(|| Error::Config("no output folder".into()))?;

    let models: Vec<VerifiedModel> = cfg
        .models
        .iter()
        .map(|entry| model::load(&cfg.models_dir, &entry.id, entry.route.clone()))
        .collect::<std::result::Result<_, _>>()?;
    let rules = RuleSet::new(&cfg.triage, &models).map_err(|e| Error::Config(e.to_string()))?;
    let (decode_threads, infer_threads) = split_threads(cfg);
    let runtime = Runtime::load(cfg.infer.device)?;
    log::info!(
        "ONNX Runtime {} from {} on {}",
        runtime.version,
        runtime.library_path.display(),
        runtime.provider
    );
    let sessions = models
        .iter()
        .map(|m| runtime.session(m, infer_threads))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let decoder = Decoder::new(&cfg.decode).with_model_inputs(models.iter().map(|m| (m.card.input.width, m.card.input.height)).collect());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(decode_threads)
        .thread_name(|i| format!("decode-{i}"))
        .build()
        .map_err(|e| Error::Config(format!("cannot start decode threads: {e}")))?;
    prepare_out(&out, cfg.overwrite)?;

    let run_stamp = RunStamp {
        run_id: new_run_id(&started_at),
        software_version: crate::VERSION.to_string(),
        config_sha256: cfg.source_sha256.clone(),
    };
    let stamps: Vec<ModelStamp> = models
        .iter()
        .map(|m| ModelStamp {
            id: m.card.id.clone(),
            version: m.card.version.clone(),
            sha256: m.card.sha256.to_lowercase(),
            labels: m.card.output.labels.clone(),
        })
        .collect();
    let mut sinks = Sinks::create(&out, &cfg.sinks, run_stamp.clone(), stamps, cfg.triage.bands.clone())?;
    let mut audit = AuditLog::open(&out, &run_stamp.run_id)?;
    let setup_seconds = started.elapsed().as_secs_f64();

    let ingest_started = Instant::now();
    let (files, walk_rejects) = ingest::discover(&cfg.ingest, &cfg.inputs);
    let files_found = (files.len() + walk_rejects.len()) as u64;
    let file_list_sha256 = file_list_digest(files.iter().map(|f| f.path.as_path()).chain(walk_rejects.iter().map(|r| r.path.as_path())));
    let user = report::user();
    audit.event(
        "run_started",
        serde_json::json!({
            "host": report::hostname(),
            "user": user,
            "software_version": crate::VERSION,
            "config_path": cfg.source_path.as_ref().map(|p| p.display().to_string()),
            "config_sha256": cfg.source_sha256,
            "models": models.iter().map(|m| serde_json::json!({"id": m.card.id, "version": m.card.version, "sha256": m.card.sha256.to_lowercase()})).collect::<Vec<_>>(),
            "inputs": cfg.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "files_seen": files_found,
            "file_list_sha256": file_list_sha256,
        }),
    )?;
    let ingest_seconds = ingest_started.elapsed().as_secs_f64();
    log::info!("found {files_found} files");
    progress.set_total(files_found);

    let pipeline_started = Instant::now();
    let cap = cfg.pipeline.channel_capacity;
    let (tx_ingest, rx_ingest) = bounded(cap);
    // Two batches waiting keep inference busy; more only lengthens the end
    // of the run, when decode is done and one thread infers what is queued.
    let (tx_prepared, rx_prepared) = bounded(cap.max(2 * cfg.infer.batch_size));
    let (tx_scored, rx_scored) = bounded(cap);
    let (tx_found, rx_found) = bounded(cap);
    let mut book = StudyBook::new(&rules);
    let preprocessor = Preprocessor::new(&models);
    let infer_cfg = cfg.infer.clone();
    let on_file_done = || progress.inc();

    let sink_result: Result<ingest::IngestCounts> = std::thread::scope(|s| {
        let models = &models;
        let on_file_done = &on_file_done;
        let ingest = s.spawn(move || ingest::run(files, walk_rejects, models, &tx_ingest, on_file_done));
        let decoder = &decoder;
        let pool = &pool;
        // Decode and preprocess share the pool: each frame is shrunk to
        // tensors by the worker that decoded it.
        let preprocessor = &preprocessor;
        let emit = move |msg| preprocessor.apply(msg, |prepared| tx_prepared.send(prepared).is_ok());
        s.spawn(move || decode::run(decoder, pool, rx_ingest, &emit, on_file_done));
        s.spawn(move || infer::run(sessions, &infer_cfg, rx_prepared, tx_scored));
        let rules = &rules;
        s.spawn(move || triage::run(rules, rx_scored, tx_found));
        for msg in rx_found {
            match &msg {
                Ok(finding) => book.add_finding(finding),
                Err(rejected) => book.add_rejected(rejected),
            }
            // On a write failure stop reading: dropping rx_found stops every stage.
            sinks.push(msg)?;
        }
        Ok(ingest.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    progress.finish();
    let ingest_counts = sink_result?;
    let files_seen = ingest_counts.files_seen as u64;
    let image_files = ingest_counts.instances as u64;
    let studies = book.finish();
    let counts = sinks.finish(&studies)?;
    let pipeline_seconds = pipeline_started.elapsed().as_secs_f64();

    let exit_code = if counts.errors > 0 { 1 } else { 0 };
    let outcome = if exit_code == 0 { "ok" } else { "completed_with_errors" };
    audit.studies(&studies)?;
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
        started_at,
        finished_at: chrono::Utc::now(),
        host: report::hostname(),
        user,
        config_path: cfg.source_path.as_ref().map(|p| p.display().to_string()),
        config_sha256: cfg.source_sha256.clone(),
        config: cfg.source_text.clone(),
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
        exit_code,
    };
    report.write(&out)?;
    Ok(summary)
}
