//! The stages as threads joined by bounded channels: ingest → decode +
//! preprocess (rayon pool) → infer → triage → sinks (on the calling thread).
//!
//! Everything here is wiring: the stages are built by [`crate::run::Plan`]
//! before the first file is read, and the outputs are the sinks'. A full
//! channel blocks its producer, so memory is bounded by the capacities, not
//! by the size of the night. Shutdown is "drop the sender"; a stage that
//! panics ends the run with [`Error::Stage`] once the others have stopped.

use crossbeam_channel::bounded;
use serde::{Deserialize, Serialize};

use crate::decode::{self, Decoder};
use crate::error::{Error, Result};
use std::collections::BTreeMap;

use crate::infer::{self, DecodeGates, InferConfig};
use crate::ingest;
use crate::look::{self, Looks};
use crate::message::{FileDone, Rejected};
use crate::model::{ModelId, Models};
use crate::preprocess::Preprocessor;
use crate::progress::Progress;
use crate::run::shard::Shard;
use crate::runtime::ModelSession;
use crate::sink::{self, Sinks};
use crate::source::{Listed, Source};
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

/// The built stages one execution runs.
pub struct Stages<'p> {
    pub models: &'p Models,
    pub source: &'p dyn Source,
    pub decoder: &'p Decoder,
    pub pool: &'p rayon::ThreadPool,
    pub sessions: BTreeMap<ModelId, ModelSession>,
    /// Domain gates the decode workers ask before inference.
    pub gates: &'p DecodeGates,
    /// Second looks, between inference and triage.
    pub looks: &'p Looks,
    pub infer: &'p InferConfig,
    pub rules: &'p RuleSet,
    pub shard: Option<Shard>,
    pub channel_capacity: usize,
}

/// Runs `files` (and the walk's rejects) through the stages into `sinks`,
/// feeding `book`; returns once every stage has stopped.
///
/// # Errors
/// An output cannot be written, or a stage thread panicked.
pub fn execute(
    stages: Stages<'_>,
    files: Vec<Listed>,
    walk_rejects: Vec<Rejected>,
    book: &mut StudyBook,
    sinks: &mut Sinks,
    progress: &Progress,
) -> Result<()> {
    let Stages {
        models,
        source,
        decoder,
        pool,
        sessions,
        gates,
        looks,
        infer: infer_cfg,
        rules,
        shard,
        channel_capacity: cap,
    } = stages;
    let (tx_ingest, rx_ingest) = bounded(cap);
    // Two batches waiting keep inference busy; more only lengthens the end
    // of the run, when decode is done and the workers infer what is queued.
    let (tx_prepared, rx_prepared) = bounded(cap.max(2 * infer_cfg.batch_size));
    let (tx_scored, rx_scored) = bounded(cap);
    let (tx_looked, rx_looked) = bounded(cap);
    let (tx_found, rx_found) = bounded(cap);
    // Decode's per-file counts overtake the rows (no inference on the way);
    // the sinks read both, so this only needs room for a burst.
    let (tx_done, rx_done) = bounded(4 * cap);
    let preprocessor = Preprocessor::new(models);
    let on_file_done = move |done: FileDone| {
        progress.inc();
        // Sent only while the sinks listen; after a write failure they are gone.
        let _ = tx_done.send(done);
    };

    std::thread::scope(|s| {
        let ingest = s.spawn(move || {
            ingest::run(files, walk_rejects, source, models, shard, &tx_ingest);
        });
        // Decode and preprocess share the pool: each frame is shrunk to
        // tensors by the worker that decoded it, which also asks the
        // model's domain gate (off the one inference thread).
        let preprocessor = &preprocessor;
        let emit = move |msg| {
            let mut sent = 0;
            let open = preprocessor.apply(msg, |mut prepared| {
                if let Ok(p) = &mut prepared {
                    gates.ask(p);
                }
                sent += 1;
                tx_prepared.send(prepared).is_ok()
            });
            open.then_some(sent)
        };
        // The counts' sender goes with decode, so the sinks see it close.
        let decode = s.spawn(move || decode::run(decoder, source, pool, rx_ingest, &emit, &on_file_done));
        let explain = rules.explain_when();
        let infer = s.spawn(move || infer::run_explaining(sessions, infer_cfg, &explain, rx_prepared, tx_scored));
        let look = s.spawn(move || look::run(looks, source, decoder, rx_scored, tx_looked));
        let triage = s.spawn(move || triage::run(rules, rx_looked, tx_found));
        // On a write failure this returns, dropping the receivers, which
        // stops every stage.
        let sunk = sink::run(rx_found, rx_done, book, sinks);
        // Every handle is joined (an unjoined panic would be raised again by
        // the scope); the first stage's panic says more than what it did to
        // the sinks' input.
        let mut panicked = None;
        let stages = [("ingest", ingest), ("decode", decode), ("infer", infer), ("look", look), ("triage", triage)];
        for (stage, handle) in stages {
            if let Err(panic) = handle.join() {
                panicked.get_or_insert(Error::Stage { stage, message: crate::error::panic_text(panic.as_ref()) });
            }
        }
        match panicked {
            Some(error) => Err(error),
            None => sunk,
        }
    })
}
