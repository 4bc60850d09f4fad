//! The run's lifecycle, apart from its stages and its outputs: build a
//! [`Plan`] (stages, output folder, checkpoint, audit trail), execute it
//! ([`crate::pipeline::execute`]), then report ([`RunReport`], the audit
//! trail's last lines) and drop the checkpoint.
//!
//! Also here: which input files are complete ([`ledger`]), the commit
//! point ([`checkpoint`]), what a run may touch in OUT ([`outdir`]), the
//! audit trail ([`audit`]), `run.json` ([`report`]), sharded runs
//! ([`shard`]) and joining them ([`merge`]). An OUT holding an unfinished
//! run's checkpoint is resumed: its committed files are not read again.

pub mod audit;
pub mod checkpoint;
pub mod ledger;
pub mod merge;
pub mod outdir;
mod plan;
mod remote;
pub mod report;
mod retry;
pub mod shard;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

pub use plan::{Inputs, Plan};
pub use report::RunReport;

use crate::config::Config;
use crate::error::Result;
use crate::pipeline::{self, Stages};
use crate::progress::Progress;
use crate::sink::{Counts, Sinks};
use crate::triage::{StudyBook, StudyResult};
use audit::AuditEvent;
use checkpoint::Checkpoint;
use report::{InputRecord, ModelRecord, Outcome, RuntimeRecord, ShardRecord, Timings};

/// What a finished run tells its caller.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub out: PathBuf,
    pub files_seen: u64,
    pub frames_scored: u64,
    pub studies: u64,
    pub errors: u64,
    pub skipped: u64,
    pub bands: BTreeMap<String, u64>,
    pub execution_provider: String,
    pub seconds: f64,
}

/// Runs one batch end to end: build, execute, report.
///
/// # Errors
/// A setup problem (config, models, ONNX Runtime, output folder), an
/// output write failure or a stage that panicked. Problems with input files
/// are never errors here: they become rows in `errors/` and are counted in
/// the summary.
pub fn run(cfg: &Config, progress: &Progress) -> Result<RunSummary> {
    let started = Instant::now();
    let (mut plan, mut state) = Plan::build(cfg)?;
    let setup_seconds = started.elapsed().as_secs_f64();

    let ingest_started = Instant::now();
    let inputs = plan.discover(&state)?;
    let snapshot = std::mem::take(&mut state.book);
    let sr = crate::sink::sr::SrSetup {
        config: cfg.sr.clone(),
        not_for_clinical_use: plan
            .models
            .iter()
            .filter(|(_, m)| !m.card.clinical_use)
            .map(|(_, m)| format!("{} {}", m.card.id, m.card.version))
            .collect(),
    };
    let mut sinks =
        Sinks::create(&plan.paths, cfg, plan.run.clone(), plan.stamps.clone(), plan.rules.bands().clone(), state, &sr)?;
    let ingest_seconds = ingest_started.elapsed().as_secs_f64();
    progress.set_total(inputs.left());

    let pipeline_started = Instant::now();
    let Inputs { files, walk_rejects, files_seen, file_list_sha256, user } = inputs;
    let stages = Stages {
        models: &plan.models,
        source: &plan.source,
        decoder: &plan.decoder,
        pool: &plan.pool,
        sessions: std::mem::take(&mut plan.sessions),
        gates: &plan.gates,
        looks: &plan.looks,
        infer: &cfg.infer,
        rules: &plan.rules,
        shard: cfg.shard,
        channel_capacity: cfg.pipeline.channel_capacity,
    };
    let mut book = StudyBook::restore(&plan.rules, snapshot);
    let executed = pipeline::execute(stages, files, walk_rejects, &mut book, &mut sinks, progress);
    progress.finish();
    executed?;
    let (counts, studies) = sinks.finish(book)?;
    let pipeline_seconds = pipeline_started.elapsed().as_secs_f64();
    let finished = Finished {
        counts,
        studies,
        state: sinks.state(),
        inputs: InputRecord {
            roots: cfg
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .chain(cfg.remote_inputs.iter().map(|r| r.describe()))
                .collect(),
            files_seen,
            image_files: sinks.state().instances,
            file_list_sha256,
            sources: plan.source_records.clone(),
        },
        user,
        started,
        setup_seconds,
        ingest_seconds,
        pipeline_seconds,
    };
    report(&mut plan, finished)
}

/// What an executed run hands the report step.
struct Finished<'s> {
    counts: Counts,
    studies: Vec<StudyResult>,
    /// The committed state of the whole run.
    state: &'s Checkpoint,
    inputs: InputRecord,
    user: String,
    started: Instant,
    setup_seconds: f64,
    ingest_seconds: f64,
    pipeline_seconds: f64,
}

/// Ends the audit trail, writes `run.json` and removes the checkpoint.
fn report(plan: &mut Plan<'_>, done: Finished<'_>) -> Result<RunSummary> {
    let cfg = plan.cfg;
    let counts = done.counts;
    let outcome = Outcome::of(counts.errors);
    plan.audit.studies(&done.studies, plan.rules.bands())?;
    plan.audit.event(&AuditEvent::RunFinished {
        outcome,
        exit_code: outcome.exit_code(),
        frames_scored: counts.frames_scored,
        studies: counts.studies,
        errors: counts.errors,
        skipped: counts.skipped,
        bands: counts.bands.clone(),
    })?;
    plan.audit.sync()?;
    let summary = RunSummary {
        out: plan.paths.run.clone(),
        files_seen: done.inputs.files_seen,
        frames_scored: counts.frames_scored,
        studies: counts.studies,
        errors: counts.errors,
        skipped: counts.skipped,
        bands: counts.bands.clone(),
        execution_provider: plan.runtime.provider.as_str().to_string(),
        seconds: done.started.elapsed().as_secs_f64(),
    };
    let runtime = &plan.runtime;
    let report = RunReport {
        software: "nightscreen".to_string(),
        software_version: crate::VERSION.to_string(),
        run_id: plan.run.run_id.clone(),
        merged_at: None,
        started_at: done.state.started_at,
        attempts: done.state.attempt,
        finished_at: chrono::Utc::now(),
        host: report::hostname(),
        user: done.user,
        config_path: cfg.source_path.as_ref().map(|p| p.display().to_string()),
        config_sha256: cfg.source_sha256.clone(),
        config: cfg.source_text.clone(),
        bands: cfg.triage.bands.clone(),
        pseudonym_key_id: plan.key.key_id(),
        models: plan.models.iter().map(|(_, m)| ModelRecord::of(m)).collect(),
        runtime: Some(RuntimeRecord {
            library: runtime.library_path.display().to_string(),
            version: runtime.version.clone(),
            execution_provider: runtime.provider.as_str().to_string(),
            available_providers: runtime.available_providers.clone(),
            device_requested: format!("{:?}", cfg.infer.device).to_lowercase(),
            intra_op_threads: plan.infer_threads,
            decode_threads: plan.decode_threads,
            batch_size: cfg.infer.batch_size,
        }),
        inputs: Some(done.inputs),
        timings: Some(Timings {
            setup_seconds: done.setup_seconds,
            ingest_seconds: done.ingest_seconds,
            pipeline_seconds: done.pipeline_seconds,
            total_seconds: done.started.elapsed().as_secs_f64(),
            frames_per_second: counts.frames_scored as f64 / done.pipeline_seconds.max(1e-9),
        }),
        counts,
        outcome,
        shadow: cfg.sinks.shadow,
        shard: cfg.shard.map(|s| ShardRecord { index: s.index, count: s.count }),
        shards: None,
        exit_code: outcome.exit_code(),
    };
    report.write(&plan.paths.run)?;
    // run.json now records the finished run; the checkpoint has done its
    // job, unless the server failed to deliver some instances: then it is
    // kept for `--retry-failed`.
    let retry_state = plan.paths.run.join(crate::sink::names::RETRY_STATE);
    if report.counts.errors_by_stage.get(crate::message::Stage::Fetch.as_str()).is_some_and(|&n| n > 0) {
        let checkpoint = plan.paths.run.join(crate::sink::names::CHECKPOINT);
        std::fs::rename(&checkpoint, &retry_state)
            .map_err(|source| crate::Error::Output { path: retry_state.clone(), source })?;
    } else {
        Checkpoint::remove(&plan.paths.run)?;
        // The SR evidence journal (UIDs) is only needed by a retry.
        for name in [crate::sink::names::RETRY_STATE, crate::sink::names::SR_EVIDENCE] {
            let path = plan.paths.run.join(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(crate::Error::Output { path, source: e })
                }
                _ => {}
            }
        }
    }
    Ok(summary)
}
