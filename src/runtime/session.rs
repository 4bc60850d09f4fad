//! Sessions: one model's ONNX Runtime session, opened on the runtime's
//! provider and checked against its card, that scores batches of tensors
//! and applies the card's activation.
//!
//! The runtime owns sessions so the upper layers (the infer stage, the
//! doctor) only see scoring, never `ort`'s builder or graph metadata.

use ort::session::Session;
use ort::value::TensorRef;

use super::graph::{dims, f32_tensor_shape, names};
use super::{append_cuda, Provider, Runtime, RuntimeError};
use crate::message::DomainCheck;
use crate::model::{Activation, Layout, ModelCard, VerifiedModel};

/// Why a batch could not be scored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScoreError {
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
/// Made by [`Runtime::session`], which has checked the
/// graph against the card.
pub struct ModelSession {
    session: Session,
    /// The card the graph was checked against.
    card: ModelCard,
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
    provider: Provider,
    /// The card's domain gate, on the same provider.
    gate: Option<Box<GateSession>>,
    /// The stacked batch, kept between calls (see `run_batch`).
    batch: Vec<f32>,
}

/// A domain gate's session and how its output is read: what a model's
/// card names in `[domain]`, ready to say of each tensor whether the model
/// may grade it.
pub struct GateSession {
    session: ModelSession,
    output: usize,
    threshold: f32,
}

impl GateSession {
    /// Scores each tensor (in the gated model's input form, which the
    /// gate's card shares) against the gate's threshold.
    ///
    /// # Errors
    /// As [`ModelSession::score`], for the gate.
    pub fn check(&mut self, tensors: &[&[f32]]) -> Result<Vec<DomainCheck>, ScoreError> {
        let (output, threshold) = (self.output, self.threshold);
        let scores = self.session.score(tensors)?;
        Ok(scores
            .iter()
            .map(|row| {
                // The session checked one value per label, so the index exists.
                let score = row.get(output).copied().unwrap_or(0.0);
                DomainCheck { score, inside: score >= threshold }
            })
            .collect())
    }
}

/// A second look's session and which output is the finding: what a
/// model's card names in `[second_look]`, scoring tensors prepared for the
/// companion's own input.
pub struct LookSession {
    session: ModelSession,
    output: usize,
}

impl LookSession {
    /// The finding's probability for one tensor in the companion's input form.
    ///
    /// # Errors
    /// As [`ModelSession::score`], for the companion.
    pub fn look(&mut self, tensor: &[f32]) -> Result<f32, ScoreError> {
        let scores = self.session.score(&[tensor])?;
        // The session checked one value per label, so the index exists.
        Ok(scores.first().and_then(|row| row.get(self.output)).copied().unwrap_or(0.0))
    }
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
    fn new(
        session: Session,
        card: &ModelCard,
        item_shape: [usize; 3],
        fixed_batch: Option<usize>,
        provider: Provider,
    ) -> Self {
        Self {
            session,
            card: card.clone(),
            id: card.id.clone(),
            input_name: card.input.name.clone(),
            output_name: card.output.name.clone(),
            layout: card.input.layout,
            item_shape,
            labels: card.output.labels.len(),
            activation: card.output.activation,
            fixed_batch,
            provider,
            gate: None,
            batch: Vec::new(),
        }
    }

    /// Asks the model's domain gate about each tensor (already in this
    /// model's input form, which the gate's card shares); `None` when the
    /// card names no gate.
    ///
    /// # Errors
    /// As [`ModelSession::score`], for the gate.
    pub fn check_domain(&mut self, tensors: &[&[f32]]) -> Result<Option<Vec<DomainCheck>>, ScoreError> {
        match self.gate.as_mut() {
            Some(gate) => gate.check(tensors).map(Some),
            None => Ok(None),
        }
    }

    /// Whether the card names a domain gate.
    pub fn has_gate(&self) -> bool {
        self.gate.is_some()
    }

    /// The card the graph was checked against.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The model's card id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The execution provider this session runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The card's tensor layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// One image's tensor shape in the card's layout (CHW or HWC).
    pub fn item_shape(&self) -> [usize; 3] {
        self.item_shape
    }

    /// Values in one image's tensor (channels × height × width).
    pub fn item_len(&self) -> usize {
        self.item_shape.iter().product()
    }

    /// Checks one image's tensor before it joins a batch.
    ///
    /// # Errors
    /// The tensor does not have [`ModelSession::item_len`] values.
    pub fn check_input(&self, tensor: &[f32]) -> Result<(), ScoreError> {
        if tensor.len() == self.item_len() {
            Ok(())
        } else {
            Err(ScoreError::InputSize {
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
    pub fn score(&mut self, tensors: &[&[f32]]) -> Result<Vec<Vec<f32>>, ScoreError> {
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

    fn run_batch(&mut self, tensors: &[&[f32]]) -> Result<Vec<Vec<f32>>, ScoreError> {
        let n = tensors.len();
        // A graph with a static batch size gets zero images as padding.
        let rows = self.fixed_batch.unwrap_or(n);
        let item = self.item_len();
        // One image needs no stacking: its tensor is the batch (a gate on
        // the decode workers scores one at a time). Otherwise the stack is
        // built in the session's own buffer: a fresh one per batch paid
        // its page faults every time (4 ms per 576-px image measured).
        if let ([only], 1) = (tensors, rows) {
            return self.run_stacked(only, rows, n);
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        for t in tensors {
            batch.extend_from_slice(t);
        }
        batch.resize(rows * item, 0.0);
        let result = self.run_stacked(&batch, rows, n);
        self.batch = batch;
        result
    }

    /// Runs `rows` stacked images, of which the first `n` are real.
    fn run_stacked(&mut self, stacked: &[f32], rows: usize, n: usize) -> Result<Vec<Vec<f32>>, ScoreError> {
        let [a, b, c] = self.item_shape;
        let run_err = |model: &str| {
            let model = model.to_string();
            move |source| ScoreError::Run { model, source }
        };
        let input = TensorRef::from_array_view(([rows, a, b, c], stacked)).map_err(run_err(&self.id))?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => input]).map_err(run_err(&self.id))?;
        let value = outputs
            .get(&self.output_name)
            .ok_or_else(|| ScoreError::MissingOutput { model: self.id.clone(), output: self.output_name.clone() })?;
        let (_, data) = value.try_extract_tensor::<f32>().map_err(run_err(&self.id))?;
        if data.len() != rows * self.labels {
            return Err(ScoreError::OutputSize {
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

impl Runtime {
    /// Opens a session for a verified model on the chosen provider and
    /// checks the graph against the card: input and output names, element
    /// type f32, and every static dimension.
    ///
    /// `intra_threads` is ONNX Runtime's intra-op pool size; 0 lets it
    /// choose (one per core).
    ///
    /// # Errors
    /// The file cannot be opened as a model, the provider cannot be
    /// registered, or the graph does not match the card.
    pub fn session(&self, model: &VerifiedModel, intra_threads: usize) -> Result<ModelSession, RuntimeError> {
        let card = &model.card;
        let ort_err =
            |source: ort::Error| RuntimeError::Session { id: card.id.clone(), path: model.onnx_path.clone(), source };
        let mut builder = Session::builder(&self.loaded.env).map_err(ort_err)?;
        if intra_threads > 0 {
            builder = builder.with_intra_threads(intra_threads).map_err(|e| ort_err(e.into()))?;
        }
        // Spinning intra-op threads would burn the cores decode workers share.
        builder = builder.with_intra_op_spinning(false).map_err(|e| ort_err(e.into()))?;
        if self.provider == Provider::Cuda {
            append_cuda(&mut builder).map_err(ort_err)?;
        }
        let session = builder.commit_from_file(&model.onnx_path).map_err(ort_err)?;
        let mismatch = |problem: String| RuntimeError::ModelMismatch {
            id: card.id.clone(),
            path: model.onnx_path.clone(),
            problem,
        };

        let spec = &card.input;
        let (c, h, w) = (spec.channels as i64, spec.height as i64, spec.width as i64);
        let expected_in: [i64; 3] = match spec.layout {
            Layout::NCHW => [c, h, w],
            Layout::NHWC => [h, w, c],
        };
        let input = session.inputs().iter().find(|o| o.name() == spec.name).ok_or_else(|| {
            mismatch(format!("no input named {:?} (the graph has {})", spec.name, names(session.inputs())))
        })?;
        if session.inputs().len() > 1 {
            return Err(mismatch(format!(
                "the graph has {} inputs ({}); only one is supported",
                session.inputs().len(),
                names(session.inputs())
            )));
        }
        let in_shape = f32_tensor_shape(input.dtype()).map_err(|e| mismatch(format!("input {:?} {e}", spec.name)))?;
        let layout_name = format!("{:?}", spec.layout);
        if in_shape.len() != 4 {
            return Err(mismatch(format!(
                "input {:?} has rank {} {}, the card's {layout_name} layout needs rank 4",
                spec.name,
                in_shape.len(),
                dims(&in_shape)
            )));
        }
        for (i, (&got, &want)) in in_shape[1..].iter().zip(&expected_in).enumerate() {
            if got >= 0 && got != want {
                return Err(mismatch(format!(
                    "input {:?} has shape {}, the card says {layout_name} {} (dimension {} is {got}, not {want})",
                    spec.name,
                    dims(&in_shape),
                    dims(&[-1, expected_in[0], expected_in[1], expected_in[2]]),
                    i + 1
                )));
            }
        }
        let fixed_batch = (in_shape[0] > 0).then_some(in_shape[0] as usize);

        let out_spec = &card.output;
        let output = session.outputs().iter().find(|o| o.name() == out_spec.name).ok_or_else(|| {
            mismatch(format!("no output named {:?} (the graph has {})", out_spec.name, names(session.outputs())))
        })?;
        let out_shape =
            f32_tensor_shape(output.dtype()).map_err(|e| mismatch(format!("output {:?} {e}", out_spec.name)))?;
        if out_shape.is_empty() {
            return Err(mismatch(format!("output {:?} is a scalar; it needs a batch dimension", out_spec.name)));
        }
        let per_image = &out_shape[1..];
        if per_image.iter().all(|&d| d >= 0) {
            let n: i64 = per_image.iter().product();
            if n != out_spec.labels.len() as i64 {
                return Err(mismatch(format!(
                    "output {:?} has shape {} ({n} values per image), the card lists {} labels",
                    out_spec.name,
                    dims(&out_shape),
                    out_spec.labels.len()
                )));
            }
        }

        log::debug!(
            "model {}: session on {} with {} intra-op threads, input {} {}, output {} {}",
            card.id,
            self.provider,
            intra_threads,
            spec.name,
            dims(&in_shape),
            out_spec.name,
            dims(&out_shape)
        );
        let item_shape = expected_in.map(|d| d as usize);
        let mut scorer = ModelSession::new(session, card, item_shape, fixed_batch, self.provider);
        scorer.gate = self.gate_session(model, intra_threads)?.map(Box::new);
        Ok(scorer)
    }

    /// A session of the domain gate `model`'s card names, on its own;
    /// `None` when the card names none.
    ///
    /// # Errors
    /// As [`Runtime::session`], for the gate.
    pub fn gate_session(
        &self,
        model: &VerifiedModel,
        intra_threads: usize,
    ) -> Result<Option<GateSession>, RuntimeError> {
        let Some(gate) = &model.domain else { return Ok(None) };
        let session = self.session(&gate.model, intra_threads)?;
        Ok(Some(GateSession { session, output: gate.output, threshold: gate.threshold }))
    }

    /// A session of the second look `model`'s card names; `None` when the
    /// card names none.
    ///
    /// # Errors
    /// As [`Runtime::session`], for the companion.
    pub fn look_session(
        &self,
        model: &VerifiedModel,
        intra_threads: usize,
    ) -> Result<Option<LookSession>, RuntimeError> {
        let Some(look) = &model.second_look else { return Ok(None) };
        let session = self.session(&look.model, intra_threads)?;
        Ok(Some(LookSession { session, output: look.output }))
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
}
