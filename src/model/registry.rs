//! The run's models as one registry: each model has a [`ModelId`], and the
//! decoder sizes, preprocessor specs, triage bindings, routing and the
//! model stamps written to the tables all come from here.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ModelError, VerifiedModel};
use crate::message::Header;

/// A model's place in the run's `[[models]]` list. Only a [`Models`]
/// registry hands these out (and the tests, through [`ModelId::new`]), so
/// every id a stage sees names a model the run loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelId(u16);

impl ModelId {
    /// The id of the `index`-th configured model.
    pub const fn new(index: u16) -> Self {
        Self(index)
    }

    /// The position in the run's model list.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the tables, the page and the fingerprint say of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStamp {
    pub id: String,
    pub version: String,
    /// Lower-case hex.
    pub sha256: String,
    /// The card's output labels, in output order.
    pub labels: Vec<String>,
    /// The card's `clinical_use`: result documents say "not for clinical use" when false.
    pub clinical_use: bool,
    /// The model's domain gate, when its card names one.
    pub domain: Option<Box<ModelStamp>>,
    /// The model's second look, when its card names one.
    pub second_look: Option<Box<ModelStamp>>,
}

impl ModelStamp {
    /// The model's line in a run's fingerprint: "id version sha256", then
    /// "; domain id version sha256" for its gate and "; second look id
    /// version sha256" for its second look, whose answers change results as
    /// much as the model's own weights do.
    pub fn fingerprint_line(&self) -> String {
        let mut line = format!("{} {} {}", self.id, self.version, self.sha256);
        if let Some(gate) = &self.domain {
            line = format!("{line}; domain {}", gate.fingerprint_line());
        }
        if let Some(look) = &self.second_look {
            line = format!("{line}; second look {}", look.fingerprint_line());
        }
        line
    }
}

impl VerifiedModel {
    /// This model's provenance, as the outputs write it.
    pub fn stamp(&self) -> ModelStamp {
        ModelStamp {
            id: self.card.id.clone(),
            version: self.card.version.clone(),
            sha256: self.card.sha256.to_lowercase(),
            labels: self.card.output.labels.clone(),
            clinical_use: self.card.clinical_use,
            domain: self.domain.as_ref().map(|gate| Box::new(gate.model.stamp())),
            second_look: self.second_look.as_ref().map(|look| Box::new(look.model.stamp())),
        }
    }
}

/// The run's verified models, in `[[models]]` order.
#[derive(Debug, Clone, Default)]
pub struct Models {
    entries: Vec<VerifiedModel>,
}

impl Models {
    /// A registry of these models; the first gets id 0.
    ///
    /// # Errors
    /// More models than a [`ModelId`] can number.
    pub fn new(entries: Vec<VerifiedModel>) -> Result<Self, ModelError> {
        if entries.len() > usize::from(u16::MAX) {
            return Err(ModelError::TooMany { count: entries.len(), max: usize::from(u16::MAX) });
        }
        Ok(Self { entries })
    }

    /// Every model's id, in order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = ModelId> + '_ {
        // `new` bounds the length, so every index fits.
        (0..self.entries.len()).map(|i| ModelId(i as u16))
    }

    /// Every model with its id, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (ModelId, &VerifiedModel)> + '_ {
        self.ids().zip(&self.entries)
    }

    /// The model with this id, if the run has it.
    pub fn get(&self, id: ModelId) -> Option<&VerifiedModel> {
        self.entries.get(id.index())
    }

    /// The id of the model whose card has this id.
    pub fn find(&self, card_id: &str) -> Option<ModelId> {
        self.iter().find(|(_, m)| m.card.id == card_id).map(|(id, _)| id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The models that should score an image with this header.
    pub fn route(&self, header: &Header) -> Vec<ModelId> {
        self.iter().filter(|(_, m)| m.accepts(header)).map(|(id, _)| id).collect()
    }

    /// A model's input (width, height), which decoding may reduce a frame to.
    pub fn input_size(&self, id: ModelId) -> Option<(u32, u32)> {
        self.get(id).map(|m| (m.card.input.width, m.card.input.height))
    }

    /// Every model's stamp, indexable by [`ModelId::index`].
    pub fn stamps(&self) -> Vec<ModelStamp> {
        self.entries.iter().map(VerifiedModel::stamp).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Accepts, ModelCard};

    fn model(id: &str, modality: &str) -> VerifiedModel {
        let text = format!(
            r#"
            id = "{id}"
            version = "1"
            file = "{id}.onnx"
            sha256 = "ABCDEF{zeros}"
            intended_use = "test"
            clinical_use = false
            [input]
            name = "x"
            layout = "NCHW"
            channels = 1
            height = 8
            width = 16
            scale = 1.0
            mean = [0.0]
            std = [1.0]
            [output]
            name = "y"
            labels = ["a", "b"]
            activation = "sigmoid"
            [accepts]
            modalities = ["{modality}"]
            "#,
            zeros = "0".repeat(58)
        );
        let card: ModelCard = toml::from_str(&text).expect("test card parses");
        VerifiedModel {
            card,
            card_path: "m.toml".into(),
            onnx_path: "m.onnx".into(),
            route: Accepts::default(),
            domain: None,
            second_look: None,
        }
    }

    #[test]
    fn routes_by_header_and_numbers_in_order() {
        let models = Models::new(vec![model("cr", "CR"), model("op", "OP"), model("cr2", "CR")]).unwrap();
        assert_eq!(models.ids().collect::<Vec<_>>(), [ModelId::new(0), ModelId::new(1), ModelId::new(2)]);
        let header = Header { modality: "CR".into(), ..Header::default() };
        assert_eq!(models.route(&header), [ModelId::new(0), ModelId::new(2)]);
        assert_eq!(models.find("op"), Some(ModelId::new(1)));
        assert_eq!(models.find("nope"), None);
        assert_eq!(models.input_size(ModelId::new(1)), Some((16, 8)));
        assert!(models.get(ModelId::new(3)).is_none() && models.input_size(ModelId::new(3)).is_none());
    }

    #[test]
    fn stamps_lower_case_the_digest_and_make_fingerprint_lines() {
        let models = Models::new(vec![model("cr", "CR")]).unwrap();
        let stamp = &models.stamps()[0];
        assert_eq!(stamp.sha256, format!("abcdef{}", "0".repeat(58)));
        assert_eq!(stamp.labels, ["a", "b"]);
        assert_eq!(stamp.fingerprint_line(), format!("cr 1 abcdef{}", "0".repeat(58)));
    }

    #[test]
    fn model_id_serialises_as_its_number() {
        assert_eq!(serde_json::to_string(&ModelId::new(3)).unwrap(), "3");
        assert_eq!(serde_json::from_str::<ModelId>("7").unwrap(), ModelId::new(7));
    }
}
