//! Model cards: the TOML file beside each `.onnx` that says what the model
//! is, what it accepts and how its input must be prepared.
//!
//! The card is the contract between a model's authors and the pipeline:
//! preprocess reads the input spec from it, routing reads `accepts`, triage
//! reads the labels and thresholds, and every prediction row names the
//! card's id, version and sha256. A model file whose digest differs from the
//! card is refused, so a row can always be traced to exact weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dicom::photometric::Photometric;
use crate::message::Header;

/// The card as written in `<model>.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub id: String,
    pub version: String,
    /// ONNX file name, relative to the card.
    pub file: String,
    /// Lower-case hex SHA-256 of the ONNX file.
    pub sha256: String,
    pub intended_use: String,
    /// Free text shown in `doctor` and `run.json`: limitations, training data.
    #[serde(default)]
    pub limitations: String,
    /// Cards of research or fixture models say so; the worklist repeats it.
    #[serde(default)]
    pub clinical_use: bool,
    pub input: InputSpec,
    pub output: OutputSpec,
    #[serde(default)]
    pub accepts: Accepts,
    /// Operating thresholds per output label, e.g. `referable = 0.42`.
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
    /// Held-out figures, when the authors published them: what data, the
    /// command that reproduces them, and the numbers. Shown by `doctor` and
    /// copied into `run.json`, so a board sees what the model was measured at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// How to show graders what the model looked at, if at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainSpec>,
    /// How to recognise an image the model was made for, if the card says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainSpec>,
    /// A companion model that looks again, at its own (larger) input, at the
    /// images a programme's rules pick, if the card names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_look: Option<SecondLookSpec>,
}

/// The card's `[second_look]` table: a companion model that scores an image
/// again from its pixels, at its own input size, for a finding this model
/// sees poorly at its own (new vessels, a few pixels wide, at 576 px). It
/// costs a second decode and inference, so only the images a programme's
/// rules pick are looked at; the programme decides what the answer means.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecondLookSpec {
    /// Card id of the companion, in the same models folder.
    pub model: String,
    /// Its output label that is the probability of the finding.
    pub label: String,
    /// The finding in words for the worklist, e.g. "new vessels".
    pub finding: String,
}

/// The card's `[domain]` table: a companion model (the gate) that scores
/// the very tensor prepared for this model and says whether the image is
/// one this model was made for. An image below the threshold is never
/// graded: its row and its study say why, in `outside`'s words. Image
/// quality is the model's own business; the gate only answers "is this
/// the kind of image at all".
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    /// Card id of the gate, in the same models folder. Its `[input]` must
    /// equal this card's: it reads the same tensor.
    pub model: String,
    /// The gate's output label that is the probability of being inside.
    pub label: String,
    /// Inside when the label's value is at least this; omitted: the gate
    /// card's threshold for the label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<f32>,
    /// What an image outside is, in words for the worklist, e.g. "not
    /// recognised as a fundus photograph".
    pub outside: String,
}

/// The card's `[explain]` table: occlusion sensitivity. Each cell of a
/// `grid` × `grid` split of the model input is blanked in turn (set to the
/// normalised mean) and the image scored again; a cell's weight is how far
/// the summed probability of `labels` fell. It costs grid² extra inferences
/// per explained image, so only images scoring at least `at_least` are
/// explained: those a grader is sent to look at.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainSpec {
    pub method: ExplainMethod,
    pub grid: usize,
    pub labels: Vec<String>,
    pub at_least: f32,
}

impl ExplainSpec {
    /// The card's own rule for which images to explain.
    pub fn when(&self) -> ExplainWhen {
        ExplainWhen {
            any_of: vec![ExplainRule { labels: self.labels.clone(), at_least: self.at_least }],
            only_if: None,
        }
    }
}

/// Explain an image whose summed probability of `labels` is at least
/// `at_least`; the map is of that sum.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainRule {
    pub labels: Vec<String>,
    pub at_least: f32,
}

/// Which images get a map: the first of `any_of` that holds picks what the
/// map explains, and `only_if` (when set) must hold too. A programme that
/// refers on several outputs (DESP) gives its own, so every image that can
/// decide a referral is explained; otherwise the card's [`ExplainSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainWhen {
    pub any_of: Vec<ExplainRule>,
    pub only_if: Option<ExplainRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainMethod {
    Occlusion,
}

/// The card's `[evaluation]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Evaluation {
    /// Which data, e.g. "synthetic, nightscreen synth --studies 500 --seed 3".
    pub data: String,
    /// The command that reproduces the figures.
    pub command: String,
    /// Figure name -> value, e.g. `referable_sensitivity_eye = 0.981`.
    #[serde(flatten)]
    pub figures: BTreeMap<String, f64>,
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Layout {
    NCHW,
    NHWC,
}

/// Order of colour channels in the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ChannelOrder {
    RGB,
    BGR,
}

/// How the model's input tensor is built from a display-space frame
/// (values in 0..=1): resize to `height × width`, multiply by `scale`,
/// then `(x - mean[c]) / std[c]` per channel.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub layout: Layout,
    /// 1 (greyscale; colour images are converted) or 3 (RGB; greyscale is
    /// replicated).
    pub channels: u8,
    pub height: u32,
    pub width: u32,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub mean: Vec<f32>,
    #[serde(default)]
    pub std: Vec<f32>,
    #[serde(default = "rgb")]
    pub channel_order: ChannelOrder,
}

fn one() -> f32 {
    1.0
}
fn rgb() -> ChannelOrder {
    ChannelOrder::RGB
}

/// What the model's output means.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    /// One label per output value, in order.
    pub labels: Vec<String>,
    /// Applied by the pipeline when the graph outputs logits.
    #[serde(default)]
    pub activation: Activation,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    None,
    Sigmoid,
    Softmax,
}

/// Which images a model is meant for. An empty list accepts anything.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Accepts {
    pub modalities: Vec<String>,
    pub sop_classes: Vec<String>,
    pub photometric: Vec<Photometric>,
}

impl Accepts {
    /// Whether an image with this header falls inside the model's domain.
    pub fn matches(&self, header: &Header) -> bool {
        fn ok<S: AsRef<str>>(list: &[S], value: &str) -> bool {
            list.is_empty() || list.iter().any(|v| v.as_ref().eq_ignore_ascii_case(value))
        }
        // Compared as written, ignoring case, as for the other lists.
        let photometric = self.photometric.iter().map(Photometric::as_str).collect::<Vec<_>>();
        ok(&self.modalities, &header.modality)
            && ok(&self.sop_classes, &header.sop_class_uid)
            && ok(&photometric, header.photometric.as_str())
    }
}

/// Problems with a card, found before any file is read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    #[error("cannot read model card {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model card {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("model card {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

impl ModelCard {
    /// Reads and checks a card; does not touch the ONNX file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for a card, or is
    /// inconsistent (see [`ModelCard::problems`]).
    pub fn load(path: &Path) -> Result<Self, CardError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CardError::Read { path: path.to_path_buf(), source })?;
        let card: ModelCard =
            toml::from_str(&text).map_err(|source| CardError::Parse { path: path.to_path_buf(), source })?;
        let problems = card.problems();
        if !problems.is_empty() {
            return Err(CardError::Invalid { path: path.to_path_buf(), problem: problems.join("; ") });
        }
        Ok(card)
    }

    /// Every inconsistency in the card, so one run reports them all.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let c = self.input.channels as usize;
        if c != 1 && c != 3 {
            out.push(format!("input.channels must be 1 or 3, not {c}"));
        }
        if self.input.height == 0 || self.input.width == 0 {
            out.push("input.height and input.width must be positive".into());
        }
        if !self.input.mean.is_empty() && self.input.mean.len() != c {
            out.push(format!("input.mean has {} values for {c} channels", self.input.mean.len()));
        }
        if !self.input.std.is_empty() && self.input.std.len() != c {
            out.push(format!("input.std has {} values for {c} channels", self.input.std.len()));
        }
        if self.input.std.contains(&0.0) {
            out.push("input.std must not contain 0".into());
        }
        if self.output.labels.is_empty() {
            out.push("output.labels is empty".into());
        }
        for label in self.thresholds.keys() {
            if !self.output.labels.contains(label) {
                out.push(format!("threshold for unknown label {label:?}"));
            }
        }
        if let Some(explain) = &self.explain {
            if !(2..=16).contains(&explain.grid) {
                out.push(format!("explain.grid must be 2 to 16, not {}", explain.grid));
            }
            if explain.labels.is_empty() {
                out.push("explain.labels is empty".into());
            }
            for label in explain.labels.iter().filter(|l| !self.output.labels.contains(l)) {
                out.push(format!("explain.labels names unknown label {label:?}"));
            }
            if !(0.0..=1.0).contains(&explain.at_least) {
                out.push(format!("explain.at_least must be a probability, not {}", explain.at_least));
            }
        }
        if let Some(domain) = &self.domain {
            if domain.model == self.id {
                out.push("domain.model must name another card (the gate), not this one".into());
            }
            if domain.at_least.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
                out.push(format!("domain.at_least must be a probability, not {:?}", domain.at_least));
            }
            if domain.outside.trim().is_empty() {
                out.push("domain.outside must say in words what an image outside the domain is".into());
            }
        }
        if let Some(look) = &self.second_look {
            if look.model == self.id {
                out.push("second_look.model must name another card, not this one".into());
            }
            if look.finding.trim().is_empty() {
                out.push("second_look.finding must say in words what the second look is for".into());
            }
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|ch| ch.is_ascii_hexdigit()) {
            out.push("sha256 must be 64 hex digits".into());
        }
        out
    }

    /// Index of an output label.
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.output.labels.iter().position(|l| l == label)
    }
}
