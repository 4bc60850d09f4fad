//! Domain gates: the companion model a card names in `[domain]` to
//! recognise the images its model was made for, verified and bound to the
//! host model before any file is read.

use std::path::Path;

use serde::Serialize;

use super::{load_verified, ModelError, VerifiedModel};
use crate::model::card::{DomainSpec, ModelCard};

/// A model's gate: the companion model, which of its outputs is the
/// probability of being inside the domain, the threshold, and the words
/// for an image outside.
#[derive(Debug, Clone, Serialize)]
pub struct DomainGate {
    pub model: VerifiedModel,
    /// Index of the card's `label` among the gate's outputs.
    pub output: usize,
    pub threshold: f32,
    pub outside: String,
}

impl DomainGate {
    /// Loads, verifies and binds `host`'s gate from the host card's folder.
    ///
    /// # Errors
    /// The gate's card is missing or invalid, its file fails its digest,
    /// it has a gate of its own, its input differs from the host's, it
    /// lacks the label, or no threshold is given for it.
    pub fn load(dir: &Path, host: &ModelCard, spec: &DomainSpec) -> Result<Self, ModelError> {
        let fail = |problem: String| ModelError::Domain { id: host.id.clone(), gate: spec.model.clone(), problem };
        let model = load_verified(dir, &spec.model, Default::default())?;
        let card = &model.card;
        if card.domain.is_some() {
            return Err(fail("a gate may not name a gate of its own".into()));
        }
        if card.input != host.input {
            return Err(fail(format!(
                "its [input] differs from {}'s; the gate scores the tensor prepared for {}, so they must be equal",
                host.id, host.id
            )));
        }
        let output = card.label_index(&spec.label).ok_or_else(|| {
            fail(format!("it has no output label {:?} (labels: {})", spec.label, card.output.labels.join(", ")))
        })?;
        let threshold = spec.at_least.or_else(|| card.thresholds.get(&spec.label).copied()).ok_or_else(|| {
            fail(format!("no domain.at_least and the gate's card has no threshold for {:?}", spec.label))
        })?;
        Ok(Self { model, output, threshold, outside: spec.outside.clone() })
    }
}
