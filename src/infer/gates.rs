//! Domain gates asked on the decode workers, before inference.
//!
//! A gate scores every image, and on the one inference thread it made that
//! thread the run's bottleneck (README, Benchmarks: 14.2 s against 9.2 s
//! without it on the bench batch). Its features are cheap per image and
//! need no batch, so each decode worker asks its own single-threaded gate
//! session as soon as it has prepared a tensor; the infer worker then only
//! asks for tensors that arrive without an answer.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::message::Prepared;
use crate::model::{ModelId, Models};
use crate::runtime::{GateSession, Runtime, RuntimeError};

/// One gate session per decode worker for every model whose card names a
/// gate.
pub struct DecodeGates {
    /// Per model, one session per worker thread, indexed by the worker's
    /// index in its pool (so each lock is only ever taken by one thread).
    gates: BTreeMap<ModelId, Vec<Mutex<GateSession>>>,
}

impl DecodeGates {
    /// Opens `workers` single-threaded sessions of each gate the models'
    /// cards name.
    ///
    /// # Errors
    /// A gate's session cannot be opened.
    pub fn open(runtime: &Runtime, models: &Models, workers: usize) -> Result<Self, RuntimeError> {
        let mut gates = BTreeMap::new();
        for (id, model) in models.iter() {
            let mut sessions = Vec::with_capacity(workers);
            for _ in 0..workers.max(1) {
                match runtime.gate_session(model, 1)? {
                    Some(session) => sessions.push(Mutex::new(session)),
                    None => break,
                }
            }
            if !sessions.is_empty() {
                gates.insert(id, sessions);
            }
        }
        Ok(Self { gates })
    }

    /// No gates: every tensor goes to inference unasked (the infer worker
    /// asks the card's gate itself).
    pub fn none() -> Self {
        Self { gates: BTreeMap::new() }
    }

    /// Asks the model's gate about `prepared` on the calling worker and
    /// records the answer. A gate that fails leaves it unasked, so the
    /// infer worker asks again and a second failure becomes the image's
    /// error row there.
    pub fn ask(&self, prepared: &mut Prepared) {
        let Some(sessions) = self.gates.get(&prepared.model) else { return };
        let slot = rayon::current_thread_index().unwrap_or(0) % sessions.len();
        // A poisoned lock only means another image's gate call panicked;
        // the session itself holds no state between calls.
        let mut gate = sessions[slot].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match gate.check(&[prepared.tensor.as_slice()]) {
            Ok(checks) => prepared.domain = checks.first().copied(),
            Err(err) => log::warn!(
                "model {}: domain gate on the decode worker failed ({}); inference asks again",
                prepared.model,
                crate::error::chain(&err)
            ),
        }
    }
}
