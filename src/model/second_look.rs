//! Second looks: the companion model a card names in `[second_look]` to
//! score some images again from their pixels at its own input size,
//! verified and bound to the host model before any file is read.

use std::path::Path;

use serde::Serialize;

use super::{load_verified, ModelError, VerifiedModel};
use crate::model::card::{ModelCard, SecondLookSpec};

/// A model's second look: the companion model, which of its outputs is the
/// probability of the finding, and the finding's name in words.
#[derive(Debug, Clone, Serialize)]
pub struct SecondLook {
    pub model: VerifiedModel,
    /// Index of the card's `label` among the companion's outputs.
    pub output: usize,
    pub finding: String,
}

impl SecondLook {
    /// Loads, verifies and binds `host`'s second look from the host card's folder.
    ///
    /// # Errors
    /// The companion's card is missing or invalid, its file fails its
    /// digest, it names a gate or a second look of its own, it does not take
    /// the host's channels, or it lacks the label.
    pub fn load(dir: &Path, host: &ModelCard, spec: &SecondLookSpec) -> Result<Self, ModelError> {
        let fail = |problem: String| ModelError::SecondLook { id: host.id.clone(), look: spec.model.clone(), problem };
        let model = load_verified(dir, &spec.model, Default::default())?;
        let card = &model.card;
        if card.domain.is_some() || card.second_look.is_some() {
            return Err(fail("a second look may not name a gate or a second look of its own".into()));
        }
        if card.input.channels != host.input.channels || card.input.channel_order != host.input.channel_order {
            return Err(fail(format!("its input channels differ from {}'s: it must see the same image", host.id)));
        }
        let output = card.label_index(&spec.label).ok_or_else(|| {
            fail(format!("it has no output label {:?} (labels: {})", spec.label, card.output.labels.join(", ")))
        })?;
        Ok(Self { model, output, finding: spec.finding.clone() })
    }
}
