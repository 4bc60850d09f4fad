//! Infer: runs each prepared tensor through its model, in batches.
//!
//! [`Prepared`] in, [`Scored`] out. The one task-style stage: it keeps one
//! pending batch per model and runs it when it is full, when its oldest
//! item has waited `batch_timeout_ms`, or at the end of input, so a slow
//! trickle of images never waits for a full batch. A batch that fails
//! becomes one [`Rejected`] per image and the stage goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

mod occlusion;

use crate::message::{Attention, ImageMeta, Msg, Prepared, RejectKind, Rejected, Scored, Stage};
use crate::model::{Activation, Layout, ModelCard};
use crate::runtime::Device;

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
    /// ONNX Runtime intra-op threads; 0 leaves it to the pipeline's core
    /// split. Default: 0.
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

/// Why a batch could not be scored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    #[error("model {model}: input tensor has {got} values, expected {expected} ({layout:?} {shape:?})")]
    InputSize { model: String, got: usize, expected: usize, layout: Layout, shape: [usize; 3] },
    #[error("model {model}: ONNX Runtime failed")]
    Run {
        model: String,
        #[source]
        source: ort::Error,
    },
    #[error("model {model}: output {output:?} is missing from the results")]
    MissingOutput { model: String, output: String },
    #[error("model {model}: output {output:?} has {got} values for {images} images, expected {per_image} per image (one per label)")]
    OutputSize { model: String, output: String, got: usize, images: usize, per_image: usize },
}

/// One model's ONNX Runtime session with what scoring needs from its card.
/// Made by [`crate::runtime::Runtime::session`], which has checked the
/// graph against the card.
pub struct ModelSession {
    session: Session,
    id: String,
    input_name: String,
    output_name: String,
    layout: Layout,
    /// Per-image input shape in the card's layout (CHW or HWC).
    item_shape: [usize; 3],
    labels: usize,
    activation: Activation,
    /// The graph's batch dimension when it is static.
    fixed_batch: Option<usize>,
    provider: String,
    /// Occlusion maps, when the card asks for them.
    explain: Option<occlusion::Occlusion>,
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("id", &self.id)
            .field("input", &self.input_name)
            .field("output", &self.output_name)
            .field("layout", &self.layout)
            .field("item_shape", &self.item_shape)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl ModelSession {
    pub(crate) fn new(
        session: Session,
        card: &ModelCard,
        item_shape: [usize; 3],
        fixed_batch: Option<usize>,
        provider: String,
    ) -> Self {
        Self {
            session,
            id: card.id.clone(),
            input_name: card.input.name.clone(),
            output_name: card.output.name.clone(),
            layout: card.input.layout,
            item_shape,
            labels: card.output.labels.len(),
            activation: card.output.activation,
            fixed_batch,
            provider,
            explain: occlusion::Occlusion::from_card(card),
        }
    }

    /// The occlusion map of one scored image, if the card asks for one and
    /// the image scores high enough to be worth it. A failure costs only
    /// the map: the image's score stands.
    fn explain(&mut self, tensor: &[f32], outputs: &[f32], batch_size: usize) -> Option<Attention> {
        let explain = self.explain.clone().filter(|e| e.wants(outputs))?;
        let copies = explain.occluded(tensor, self.layout, self.item_shape);
        let mut scores = Vec::with_capacity(copies.len());
        for chunk in copies.chunks(batch_size.max(1)) {
            let views: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
            match self.score(&views) {
                Ok(s) => scores.extend(s),
                Err(err) => {
                    log::warn!("model {}: occlusion map not made: {}", self.id, crate::error::chain(&err));
                    return None;
                }
            }
        }
        Some(explain.attention(outputs, &scores))
    }

    /// The model's card id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The execution provider this session runs on.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Values in one image's tensor (channels × height × width).
    pub fn item_len(&self) -> usize {
        self.item_shape.iter().product()
    }

    /// Checks one image's tensor before it joins a batch.
    ///
    /// # Errors
    /// The tensor does not have [`ModelSession::item_len`] values.
    pub fn check_input(&self, tensor: &[f32]) -> Result<(), InferError> {
        if tensor.len() == self.item_len() {
            Ok(())
        } else {
            Err(InferError::InputSize {
                model: self.id.clone(),
                got: tensor.len(),
                expected: self.item_len(),
                layout: self.layout,
                shape: self.item_shape,
            })
        }
    }

    /// Scores a batch: stacks the tensors (each already in the card's
    /// layout, without batch dimension) into `[N, ..]`, runs the model and
    /// returns, per image, one value per label with the card's activation
    /// applied.
    ///
    /// # Errors
    /// A tensor has the wrong size, ONNX Runtime fails, or the output does
    /// not have one value per label per image.
    pub fn score(&mut self, tensors: &[&[f32]]) -> Result<Vec<Vec<f32>>, InferError> {
        for t in tensors {
            self.check_input(t)?;
        }
        let chunk = self.fixed_batch.unwrap_or(tensors.len()).max(1);
        let mut out = Vec::with_capacity(tensors.len());
        for part in tensors.chunks(chunk) {
            out.extend(self.run_batch(part)?);
        }
        Ok(out)
    }

    fn run_batch(&mut self, tensors: &[&[f32]]) -> Result<Vec<Vec<f32>>, InferError> {
        let n = tensors.len();
        // A graph with a static batch size gets zero images as padding.
        let rows = self.fixed_batch.unwrap_or(n);
        let item = self.item_len();
        let mut stacked = Vec::with_capacity(rows * item);
        for t in tensors {
            stacked.extend_from_slice(t);
        }
        stacked.resize(rows * item, 0.0);
        let [a, b, c] = self.item_shape;
        let run_err = |model: &str| {
            let model = model.to_string();
            move |source| InferError::Run { model, source }
        };
        let input = TensorRef::from_array_view(([rows, a, b, c], stacked.as_slice())).map_err(run_err(&self.id))?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => input]).map_err(run_err(&self.id))?;
        let value = outputs
            .get(&self.output_name)
            .ok_or_else(|| InferError::MissingOutput { model: self.id.clone(), output: self.output_name.clone() })?;
        let (_, data) = value.try_extract_tensor::<f32>().map_err(run_err(&self.id))?;
        if data.len() != rows * self.labels {
            return Err(InferError::OutputSize {
                model: self.id.clone(),
                output: self.output_name.clone(),
                got: data.len(),
                images: rows,
                per_image: self.labels,
            });
        }
        Ok(data
            .chunks_exact(self.labels)
            .take(n)
            .map(|row| {
                let mut row = row.to_vec();
                activate(self.activation, &mut row);
                row
            })
            .collect())
    }
}

/// Logistic function, written to stay finite for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Softmax in place, shifted by the maximum so large logits don't overflow.
pub fn softmax(values: &mut [f32]) {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Applies a card's activation to one image's outputs.
pub fn activate(activation: Activation, values: &mut [f32]) {
    match activation {
        Activation::None => {}
        Activation::Sigmoid => values.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Activation::Softmax => softmax(values),
    }
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

/// A model's batch being filled.
struct Pending {
    items: Vec<Prepared>,
    /// When the oldest item must be run at the latest.
    deadline: Instant,
}

/// Runs the infer stage until `rx` ends or downstream stops.
///
/// `sessions[i]` scores `Prepared { model: i, .. }`. Rejected messages pass
/// through unchanged.
pub fn run(mut sessions: Vec<ModelSession>, cfg: &InferConfig, rx: Receiver<Msg<Prepared>>, tx: Sender<Msg<Scored>>) {
    let batch_size = cfg.batch_size.max(1);
    let timeout = Duration::from_millis(cfg.batch_timeout_ms);
    let mut pending: Vec<Option<Pending>> = sessions.iter().map(|_| None).collect();
    if !cfg.explain {
        sessions.iter_mut().for_each(|s| s.explain = None);
    }

    loop {
        let next_deadline = pending.iter().flatten().map(|p| p.deadline).min();
        let msg = match next_deadline {
            None => match rx.recv() {
                Ok(msg) => msg,
                Err(_) => break,
            },
            Some(deadline) => match rx.recv_deadline(deadline) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    for m in 0..pending.len() {
                        if pending[m].as_ref().is_some_and(|p| p.deadline <= now) {
                            let items = pending[m].take().map(|p| p.items).unwrap_or_default();
                            if !flush(&mut sessions[m], m, items, &tx, batch_size) {
                                return;
                            }
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        let prepared = match msg {
            Ok(p) => p,
            Err(rejected) => {
                if tx.send(Err(rejected)).is_err() {
                    return;
                }
                continue;
            }
        };
        let m = prepared.model;
        if m >= sessions.len() {
            let reason = format!("no model session with index {m} ({} loaded)", sessions.len());
            if tx.send(Err(reject(&prepared.meta, reason))).is_err() {
                return;
            }
            continue;
        }
        let slot = pending[m].get_or_insert_with(|| Pending {
            items: Vec::with_capacity(batch_size),
            deadline: Instant::now() + timeout,
        });
        slot.items.push(prepared);
        if slot.items.len() >= batch_size {
            let items = pending[m].take().map(|p| p.items).unwrap_or_default();
            if !flush(&mut sessions[m], m, items, &tx, batch_size) {
                return;
            }
        }
    }
    // End of input: run what is left.
    for (m, slot) in pending.iter_mut().enumerate() {
        if let Some(p) = slot.take() {
            if !flush(&mut sessions[m], m, p.items, &tx, batch_size) {
                return;
            }
        }
    }
}

/// Scores one model's batch and sends the results. A tensor of the wrong
/// size is rejected alone; a failed run rejects the whole batch. Returns
/// false when downstream has stopped.
fn flush(
    session: &mut ModelSession,
    model: usize,
    items: Vec<Prepared>,
    tx: &Sender<Msg<Scored>>,
    batch_size: usize,
) -> bool {
    let mut good = Vec::with_capacity(items.len());
    for p in items {
        match session.check_input(&p.tensor) {
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
    let tensors: Vec<&[f32]> = good.iter().map(|p| p.tensor.as_slice()).collect();
    let started = Instant::now();
    let result = session.score(&tensors);
    log::trace!("model {}: batch of {} in {:.1?}", session.id(), good.len(), started.elapsed());
    match result {
        Ok(outputs) => {
            let scored_at = chrono::Utc::now();
            for (p, outputs) in good.into_iter().zip(outputs) {
                let attention = session.explain(&p.tensor, &outputs, batch_size);
                let scored = Scored { meta: Arc::clone(&p.meta), model, outputs, attention, scored_at };
                if tx.send(Ok(scored)).is_err() {
                    return false;
                }
            }
        }
        Err(err) => {
            let reason = crate::error::chain(&err);
            log::warn!("batch of {} failed: {reason}", good.len());
            for p in good {
                if tx.send(Err(reject(&p.meta, reason.clone()))).is_err() {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_values() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(2.0) - 0.880_797_1).abs() < 1e-6);
        assert!((sigmoid(-2.0) - 0.119_202_92).abs() < 1e-6);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!(sigmoid(-1000.0).is_finite());
    }

    #[test]
    fn softmax_values() {
        let mut v = [1.0, 2.0, 3.0];
        softmax(&mut v);
        let expected = [0.090_030_57, 0.244_728_48, 0.665_240_94];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Large logits must not overflow.
        let mut big = [1000.0, 1000.0];
        softmax(&mut big);
        assert_eq!(big, [0.5, 0.5]);
    }

    #[test]
    fn activation_none_keeps_values() {
        let mut v = [-3.0, 0.25, 7.0];
        activate(Activation::None, &mut v);
        assert_eq!(v, [-3.0, 0.25, 7.0]);
        activate(Activation::Sigmoid, &mut v);
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let cfg: InferConfig = toml::from_str("batch_size = 4").unwrap();
        assert_eq!((cfg.batch_size, cfg.batch_timeout_ms, cfg.threads, cfg.device), (4, 20, 0, Device::Cpu));
        let cfg: InferConfig = toml::from_str("device = \"auto\"").unwrap();
        assert_eq!(cfg.device, Device::Auto);
        assert!(toml::from_str::<InferConfig>("batch = 4").is_err());
    }
}
