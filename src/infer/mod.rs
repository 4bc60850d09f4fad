//! Infer: runs each prepared tensor through its model, in batches, with
//! one worker thread per model.
//!
//! [`Prepared`] in, [`Scored`] out. A router hands each tensor to its
//! model's worker through a small bounded queue; rejections pass straight
//! through, and every worker sends its results on the one output channel.
//! Each worker keeps its own pending batch and runs it when it is full,
//! when its oldest item has waited `batch_timeout_ms`, or at the end of
//! input, so a slow trickle of images never waits for a full batch, and a
//! slow model (or its occlusion maps) never holds up another model's
//! images. A batch that fails becomes one [`Rejected`] per image and the
//! worker goes on. Sessions themselves are the runtime's
//! ([`crate::runtime::ModelSession`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

mod gates;
mod occlusion;
mod worker;

pub use gates::DecodeGates;

use crate::message::{ImageMeta, Msg, Prepared, RejectKind, Rejected, Scored, Stage};
use crate::model::{ExplainWhen, ModelId};
use crate::runtime::{Device, ModelSession};
use worker::Worker;

/// The `[infer]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferConfig {
    /// Where models run. Default: cpu.
    pub device: Device,
    /// Images per ONNX Runtime call. 8 gives most of the per-call saving on
    /// CPU (measured on a ResNet-18-class model at 512×512) while keeping
    /// only a few tensors waiting. Default: 8.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads of each model's session; 0 leaves it
    /// to the pipeline's core split. Default: 0.
    pub threads: usize,
    /// Longest an image waits for its batch to fill, in milliseconds. Short
    /// next to a batch's run time, so a partial batch costs little. Default: 20.
    pub batch_timeout_ms: u64,
    /// Make the occlusion maps that model cards ask for (`[explain]`).
    /// Each explained image costs grid² extra inferences. Default: true.
    pub explain: bool,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self { device: Device::Cpu, batch_size: 8, threads: 0, batch_timeout_ms: 20, explain: true }
    }
}

/// How each worker batches, from [`InferConfig`].
#[derive(Debug, Clone, Copy)]
struct Batching {
    size: usize,
    timeout: Duration,
    explain: bool,
}

fn reject(meta: &ImageMeta, reason: String) -> Rejected {
    Rejected {
        source: meta.instance.source.clone(),
        stage: Stage::Infer,
        kind: RejectKind::Error,
        reason,
        header: Some(meta.instance.header.clone()),
        frame: Some(meta.frame_index),
    }
}

/// Runs the infer stage until `rx` ends or downstream stops: one worker
/// thread per session, fed by the calling thread.
///
/// `sessions[&id]` scores `Prepared { model: id, .. }`; a tensor for a
/// model without a session becomes an infer error row. Rejected messages
/// pass through unchanged. A worker's panic is raised again here once the
/// others have stopped.
pub fn run(
    sessions: BTreeMap<ModelId, ModelSession>,
    cfg: &InferConfig,
    rx: Receiver<Msg<Prepared>>,
    tx: Sender<Msg<Scored>>,
) {
    run_explaining(sessions, cfg, &BTreeMap::new(), rx, tx);
}

/// [`run`], with `explain[&id]` (a programme's referral rules) choosing
/// which of model `id`'s images get an occlusion map instead of its card.
pub fn run_explaining(
    sessions: BTreeMap<ModelId, ModelSession>,
    cfg: &InferConfig,
    explain: &BTreeMap<ModelId, ExplainWhen>,
    rx: Receiver<Msg<Prepared>>,
    tx: Sender<Msg<Scored>>,
) {
    let batching = Batching {
        size: cfg.batch_size.max(1),
        timeout: Duration::from_millis(cfg.batch_timeout_ms),
        explain: cfg.explain,
    };
    std::thread::scope(|s| {
        let mut queues = BTreeMap::new();
        let mut workers = Vec::with_capacity(sessions.len());
        for (id, session) in sessions {
            // Room for one batch beyond the one being filled: enough to keep
            // the worker busy, little enough that memory stays bounded.
            let (queue_tx, queue_rx) = bounded(batching.size);
            let worker = Worker::new(session, batching, explain.get(&id));
            let out = tx.clone();
            let name = format!("infer-{}", worker.model());
            let handle = std::thread::Builder::new().name(name).spawn_scoped(s, move || worker.run(&queue_rx, &out));
            match handle {
                Ok(handle) => {
                    queues.insert(id, queue_tx);
                    workers.push(handle);
                }
                // Its images become error rows below, like an unknown model's.
                Err(err) => log::error!("model {id}: cannot start its inference thread: {err}"),
            }
        }
        route(&rx, &queues, &tx);
        // Closing the queues lets each worker run what is left and stop.
        drop(queues);
        let mut panicked = None;
        for handle in workers {
            if let Err(panic) = handle.join() {
                panicked.get_or_insert(panic);
            }
        }
        if let Some(panic) = panicked {
            std::panic::resume_unwind(panic);
        }
    });
}

/// Sends each prepared tensor to its model's queue and each rejection
/// straight on, until the input ends or downstream stops.
fn route(rx: &Receiver<Msg<Prepared>>, queues: &BTreeMap<ModelId, Sender<Prepared>>, tx: &Sender<Msg<Scored>>) {
    for msg in rx {
        let prepared = match msg {
            Ok(prepared) => prepared,
            Err(rejected) => {
                if tx.send(Err(rejected)).is_err() {
                    return;
                }
                continue;
            }
        };
        match queues.get(&prepared.model) {
            Some(queue) => {
                // A closed queue means its worker stopped: downstream is gone.
                if queue.send(prepared).is_err() {
                    return;
                }
            }
            None => {
                let reason = format!("no model session for model {} ({} loaded)", prepared.model, queues.len());
                if tx.send(Err(reject(&prepared.meta, reason))).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_fields() {
        let cfg: InferConfig = toml::from_str("batch_size = 4").unwrap();
        assert_eq!((cfg.batch_size, cfg.batch_timeout_ms, cfg.threads, cfg.device), (4, 20, 0, Device::Cpu));
        let cfg: InferConfig = toml::from_str("device = \"auto\"").unwrap();
        assert_eq!(cfg.device, Device::Auto);
        assert!(toml::from_str::<InferConfig>("batch = 4").is_err());
    }

    #[test]
    fn router_passes_rejects_and_refuses_unknown_models() {
        use std::path::PathBuf;
        use std::sync::Arc;

        use crate::message::{Header, Instance, PixelStats, SourceId};

        let meta = |n: usize| {
            let instance = Instance {
                source: SourceId::File(PathBuf::from(format!("/in/{n}.dcm"))),
                name: format!("{n}.dcm"),
                header: Arc::new(Header::default()),
                models: vec![],
            };
            Arc::new(ImageMeta {
                instance: Arc::new(instance),
                frame_index: 0,
                width: 1,
                height: 1,
                stored: PixelStats::default(),
                thumbnail: None,
            })
        };
        let (queue_tx, queue_rx) = bounded(4);
        let queues = BTreeMap::from([(ModelId::new(0), queue_tx)]);
        let (tx_in, rx_in) = bounded(4);
        let (tx_out, rx_out) = bounded(4);
        tx_in
            .send(Ok(Prepared { meta: meta(1), model: ModelId::new(0), tensor: vec![1.0], domain: None, bytes: None }))
            .unwrap();
        tx_in
            .send(Ok(Prepared { meta: meta(2), model: ModelId::new(3), tensor: vec![1.0], domain: None, bytes: None }))
            .unwrap();
        tx_in.send(Err(reject(&meta(3), "upstream".into()))).unwrap();
        drop(tx_in);
        route(&rx_in, &queues, &tx_out);
        drop(tx_out);
        let queued: Vec<Prepared> = queue_rx.try_iter().collect();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].meta.instance.source.locator(), "/in/1.dcm");
        let out: Vec<Msg<Scored>> = rx_out.iter().collect();
        let rejects: Vec<(String, String)> = out
            .into_iter()
            .map(|m| m.map(|_| ()).expect_err("only rejections reach the output"))
            .map(|r| (r.source.locator(), r.reason))
            .collect();
        assert_eq!(rejects.len(), 2);
        assert_eq!(rejects[0].0, "/in/2.dcm");
        assert!(rejects[0].1.contains("model #3"), "{}", rejects[0].1);
        assert_eq!(rejects[1], ("/in/3.dcm".to_string(), "upstream".to_string()));
    }
}
