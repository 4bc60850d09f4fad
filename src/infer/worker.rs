//! One model's inference worker: its session, its pending batch and its
//! deadline, and the occlusion maps its card asks for.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::occlusion::Occlusion;
use super::{reject, Batching};
use crate::message::{Attention, DomainCheck, Msg, Prepared, Scored};
use crate::model::ExplainWhen;
use crate::runtime::{ModelSession, ScoreError};

/// A batch being filled.
struct Pending {
    items: Vec<Prepared>,
    /// When the oldest item must be run at the latest.
    deadline: Instant,
}

/// Scores one model's tensors on its own thread.
pub(super) struct Worker {
    session: ModelSession,
    /// Occlusion maps, when the card asks for them and the run allows.
    explain: Option<Occlusion>,
    batching: Batching,
}

impl Worker {
    /// `when` is the programme's rule for which images to explain, if it
    /// has one for this model (else the card's own).
    pub(super) fn new(session: ModelSession, batching: Batching, when: Option<&ExplainWhen>) -> Self {
        let explain = if batching.explain { Occlusion::new(session.card(), when) } else { None };
        Self { session, explain, batching }
    }

    /// The model's card id.
    pub(super) fn model(&self) -> &str {
        self.session.id()
    }

    /// Batches and scores what `rx` brings until it closes (then runs what
    /// is left) or downstream stops.
    pub(super) fn run(mut self, rx: &Receiver<Prepared>, tx: &Sender<Msg<Scored>>) {
        let mut pending: Option<Pending> = None;
        loop {
            let next = match &pending {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(p) => rx.recv_deadline(p.deadline),
            };
            let items = match next {
                Ok(prepared) => {
                    let slot = pending.get_or_insert_with(|| Pending {
                        items: Vec::with_capacity(self.batching.size),
                        deadline: Instant::now() + self.batching.timeout,
                    });
                    slot.items.push(prepared);
                    if slot.items.len() < self.batching.size {
                        continue;
                    }
                    pending.take()
                }
                Err(RecvTimeoutError::Timeout) => pending.take(),
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(p) = items {
                if !self.flush(p.items, tx) {
                    return;
                }
            }
        }
        // End of input: run what is left.
        if let Some(p) = pending.take() {
            self.flush(p.items, tx);
        }
    }

    /// Scores one batch and sends the results. A tensor of the wrong size
    /// is rejected alone; a failed run rejects the whole batch. Returns
    /// false when downstream has stopped.
    fn flush(&mut self, items: Vec<Prepared>, tx: &Sender<Msg<Scored>>) -> bool {
        let mut good = Vec::with_capacity(items.len());
        for p in items {
            match self.session.check_input(&p.tensor) {
                Ok(()) => good.push(p),
                Err(err) => {
                    if tx.send(Err(reject(&p.meta, crate::error::chain(&err)))).is_err() {
                        return false;
                    }
                }
            }
        }
        if good.is_empty() {
            return true;
        }
        let started = Instant::now();
        // The gate first: an image outside the model's domain is never scored.
        let result = self.check_domain(&good).and_then(|domain| {
            let inside: Vec<&[f32]> = good
                .iter()
                .zip(&domain)
                .filter(|(_, d)| d.is_none_or(|d| d.inside))
                .map(|(p, _)| p.tensor.as_slice())
                .collect();
            let scores = if inside.is_empty() { Vec::new() } else { self.session.score(&inside)? };
            Ok((domain, scores))
        });
        log::trace!("model {}: batch of {} in {:.1?}", self.session.id(), good.len(), started.elapsed());
        match result {
            Ok((domain, scores)) => {
                let scored_at = chrono::Utc::now();
                let mut scores = scores.into_iter();
                for (p, domain) in good.into_iter().zip(domain) {
                    let outputs =
                        if domain.is_some_and(|d| !d.inside) { Vec::new() } else { scores.next().unwrap_or_default() };
                    let attention = if outputs.is_empty() { None } else { self.explain(&p.tensor, &outputs) };
                    let (meta, bytes) = (Arc::clone(&p.meta), p.bytes);
                    let scored = Scored {
                        meta,
                        model: p.model,
                        outputs,
                        domain,
                        attention,
                        second_look: None,
                        scored_at,
                        bytes,
                    };
                    if tx.send(Ok(scored)).is_err() {
                        return false;
                    }
                }
            }
            Err(err) => {
                let reason = crate::error::chain(&err);
                log::warn!("model {}: batch of {} failed: {reason}", self.session.id(), good.len());
                for p in good {
                    if tx.send(Err(reject(&p.meta, reason.clone()))).is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// What the model's gate says of each item: the answer the decode
    /// worker already found, else the gate is asked here (`None` for all
    /// when the card names no gate).
    fn check_domain(&mut self, items: &[Prepared]) -> Result<Vec<Option<DomainCheck>>, ScoreError> {
        let mut domain: Vec<Option<DomainCheck>> = items.iter().map(|p| p.domain).collect();
        let unasked: Vec<usize> = (0..items.len()).filter(|&i| domain[i].is_none()).collect();
        if unasked.is_empty() || !self.session.has_gate() {
            return Ok(domain);
        }
        let tensors: Vec<&[f32]> = unasked.iter().map(|&i| items[i].tensor.as_slice()).collect();
        if let Some(checks) = self.session.check_domain(&tensors)? {
            for (i, check) in unasked.into_iter().zip(checks) {
                domain[i] = Some(check);
            }
        }
        Ok(domain)
    }

    /// The occlusion map of one scored image, if the card asks for one and
    /// the image scores high enough to be worth it. A failure costs only
    /// the map: the image's score stands.
    fn explain(&mut self, tensor: &[f32], outputs: &[f32]) -> Option<Attention> {
        let explain = self.explain.as_ref()?;
        let trigger = explain.wants(outputs)?;
        let copies = explain.occluded(tensor, self.session.layout(), self.session.item_shape());
        let mut scores = Vec::with_capacity(copies.len());
        for chunk in copies.chunks(self.batching.size) {
            let views: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
            match self.session.score(&views) {
                Ok(s) => scores.extend(s),
                Err(err) => {
                    log::warn!("model {}: occlusion map not made: {}", self.session.id(), crate::error::chain(&err));
                    return None;
                }
            }
        }
        Some(explain.attention(trigger, outputs, &scores))
    }
}
