//! Triage: model outputs → per-image findings → one worklist place per study.
//!
//! Rules come from the config (`[[triage.rules]]`): "if model M's output L is
//! at or above T, the study belongs at least in band B". A study takes the
//! most urgent band any of its images reached, and sorts within the band by
//! the strongest evidence. The reason is written in words, so a grader sees
//! why a study is where it is. Studies with unreadable images never land in
//! the least urgent band: a human must look at what the machine could not.
//! A screening programme ([`Programme`]: DESP today) grades its images and
//! may place a study itself; the study book stays generic.

pub mod band;
mod book;
pub mod desp;
pub mod programme;

use serde::{Deserialize, Serialize};

pub use band::{Band, Bands};
pub use book::{rank, BookSnapshot, StudyBook, StudyResult};
pub use desp::{DespConfig, DespGrader, Grade, ImageGrade};
pub use programme::{Programme, StudyDetail};

use crate::message::{Msg, Scored};
use crate::model::{ModelId, Models};

/// How studies are placed: by generic rules, or by DESP grading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TriageMode {
    /// `[[triage.rules]]`: a study takes the most urgent band any image reached.
    #[default]
    Rules,
    /// DESP: image grades → eye grades → study outcome (`[triage.desp]`).
    Desp,
}

/// One rule of the `[[triage.rules]]` list.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub model: String,
    pub label: String,
    /// Fires when the output is at or above this; omitted → the card's
    /// operating threshold for the label.
    #[serde(default)]
    pub at_least: Option<f32>,
    pub band: String,
    /// Words used in the reason, e.g. "referable DR suspected"; default: the label.
    #[serde(default)]
    pub finding: Option<String>,
}

/// The `[triage]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriageConfig {
    pub mode: TriageMode,
    /// Band names, most urgent first.
    pub bands: Vec<String>,
    /// Band of a study where no rule fired.
    pub default_band: String,
    /// Band of a study with no readable image, or none that fired while
    /// some of its files failed.
    pub incomplete_band: String,
    pub rules: Vec<Rule>,
    pub desp: DespConfig,
}

impl Default for TriageConfig {
    fn default() -> Self {
        Self {
            bands: ["URGENT", "ROUTINE", "REVIEW", "NO_FINDING"].map(String::from).to_vec(),
            default_band: "NO_FINDING".into(),
            incomplete_band: "REVIEW".into(),
            rules: Vec::new(),
            mode: TriageMode::Rules,
            desp: DespConfig::default(),
        }
    }
}

impl TriageConfig {
    /// Problems that need no models to find.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let known = |b: &str| self.bands.iter().any(|x| x == b);
        if self.bands.len() > band::MAX_BANDS {
            out.push(format!("triage.bands lists {} bands; at most {} are allowed", self.bands.len(), band::MAX_BANDS));
        }
        for (what, band) in [("default_band", &self.default_band), ("incomplete_band", &self.incomplete_band)] {
            if !known(band) {
                out.push(format!("triage.{what} {band:?} is not in triage.bands"));
            }
        }
        if self.mode == TriageMode::Desp {
            for band in desp::BANDS {
                if !known(band) {
                    out.push(format!("triage.mode = \"desp\" needs band {band:?} in triage.bands"));
                }
            }
        }
        for rule in &self.rules {
            if !known(&rule.band) {
                out.push(format!(
                    "triage rule for {}/{}: band {:?} is not in triage.bands",
                    rule.model, rule.label, rule.band
                ));
            }
        }
        out
    }
}

/// A rule bound to a model's output index and threshold.
#[derive(Debug, Clone)]
struct BoundRule {
    model: ModelId,
    output: usize,
    /// The output's label, as the hit names it.
    label: String,
    threshold: f32,
    band: Band,
    finding: String,
}

/// Why triage cannot start with these models.
#[derive(Debug, thiserror::Error)]
#[error("triage rule for {model}/{label}: {problem}")]
pub struct RuleError {
    pub model: String,
    pub label: String,
    pub problem: String,
}

/// A rule that fired on one image.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub band: Band,
    pub finding: String,
    pub label: String,
    pub value: f32,
    pub threshold: f32,
}

/// One scored image with the rules it fired (most urgent first) and, when
/// the programme grades this model's images (DESP: the DR model), its grade.
#[derive(Debug, Clone)]
pub struct Finding {
    pub scored: Scored,
    pub hits: Vec<Hit>,
    pub grade: Option<ImageGrade>,
}

impl Finding {
    /// The most urgent band this image reached, if any.
    pub fn band(&self) -> Option<Band> {
        self.hits.first().map(|h| h.band)
    }
}

/// What the study book says about a model that scored a study.
#[derive(Debug, Clone)]
struct ModelInfo {
    id: String,
    version: String,
    clinical_use: bool,
    /// What an image outside its domain is, in its card's words.
    outside: String,
}

/// Words for an image outside a model's domain when no card gave its own
/// (only reachable for a model without a gate, which never rules one out).
const NOT_RECOGNISED: &str = "not recognised as an image the model was made for";

/// The rules and the programme, bound to the run's models and bands.
pub struct RuleSet {
    bands: Bands,
    default_band: Band,
    incomplete_band: Band,
    rules: Vec<BoundRule>,
    /// Indexed by [`ModelId::index`].
    models: Vec<ModelInfo>,
    programme: Programme,
}

impl RuleSet {
    /// Binds each rule to its model and output label.
    ///
    /// # Errors
    /// A rule names a model not in the run, a label the card lacks, or
    /// omits its threshold when the card has none.
    pub fn new(cfg: &TriageConfig, models: &Models) -> Result<Self, RuleError> {
        let bands = Bands::new(cfg.bands.clone());
        let band_of = |b: &str| bands.position_or_last(b);
        let mut rules = Vec::new();
        for rule in &cfg.rules {
            let fail = |problem: String| RuleError { model: rule.model.clone(), label: rule.label.clone(), problem };
            let (model, card) = models
                .find(&rule.model)
                .and_then(|id| Some((id, &models.get(id)?.card)))
                .ok_or_else(|| fail("model is not in this run's [[models]]".into()))?;
            let output = card.label_index(&rule.label).ok_or_else(|| {
                fail(format!("model has no output label (labels: {})", card.output.labels.join(", ")))
            })?;
            let threshold = match rule.at_least.or_else(|| card.thresholds.get(&rule.label).copied()) {
                Some(t) => t,
                None => return Err(fail("no at_least given and the card has no threshold for it".into())),
            };
            rules.push(BoundRule {
                model,
                output,
                label: rule.label.clone(),
                threshold,
                band: band_of(&rule.band),
                finding: rule.finding.clone().unwrap_or_else(|| rule.label.clone()),
            });
        }
        let programme = match cfg.mode {
            TriageMode::Rules => Programme::Rules,
            TriageMode::Desp => {
                let fail = |problem: String| RuleError { model: cfg.desp.model.clone(), label: String::new(), problem };
                let (model, card) = models
                    .find(&cfg.desp.model)
                    .and_then(|id| Some((id, &models.get(id)?.card)))
                    .ok_or_else(|| fail("triage.desp.model is not in this run's [[models]]".into()))?;
                let outputs = desp::Outputs::find(&card.output.labels)
                    .map_err(|label| fail(format!("DESP grading needs output label {label:?}")))?;
                let verified = models.get(model);
                let outside = verified.and_then(|m| m.domain.as_ref()).map(|g| g.outside.clone());
                let look = verified.and_then(|m| m.second_look.as_ref());
                if let Some(rule) = cfg.desp.r3_second_look {
                    if look.is_none() {
                        return Err(fail(
                            "triage.desp.r3_second_look is set, but the DR model's card names no [second_look]".into(),
                        ));
                    }
                    let probability = |v: f32| (0.0..=1.0).contains(&v);
                    if !probability(rule.from) || !probability(rule.at_least) || rule.from > cfg.desp.r3_at_least {
                        return Err(fail(format!(
                            "triage.desp.r3_second_look needs 0 <= from <= r3_at_least ({}) and at_least in 0..1, got {rule:?}",
                            cfg.desp.r3_at_least
                        )));
                    }
                }
                let words = desp::CardWords {
                    outside: outside.unwrap_or_else(|| NOT_RECOGNISED.to_string()),
                    finding: look.map_or_else(|| "the second look's finding".to_string(), |l| l.finding.clone()),
                };
                Programme::Desp(DespGrader::new(model, outputs, cfg.desp.clone(), &bands, words))
            }
        };
        Ok(Self {
            programme,
            default_band: band_of(&cfg.default_band),
            incomplete_band: band_of(&cfg.incomplete_band),
            bands,
            rules,
            models: models
                .iter()
                .map(|(_, m)| ModelInfo {
                    id: m.card.id.clone(),
                    version: m.card.version.clone(),
                    clinical_use: m.card.clinical_use,
                    outside: m.domain.as_ref().map_or_else(|| NOT_RECOGNISED.to_string(), |g| g.outside.clone()),
                })
                .collect(),
        })
    }

    /// The configured bands, most urgent first.
    pub fn bands(&self) -> &Bands {
        &self.bands
    }

    pub fn programme(&self) -> &Programme {
        &self.programme
    }

    /// Which images the programme wants explained, per model: for DESP,
    /// every gradable image that reaches a referral threshold (R3,
    /// referable or M1), with the map of the output that referred it, so
    /// every image that can decide a referral carries one. Models not
    /// named keep their card's own rule.
    pub fn explain_when(&self) -> std::collections::BTreeMap<ModelId, crate::model::ExplainWhen> {
        use crate::model::{ExplainRule, ExplainWhen};
        let mut out = std::collections::BTreeMap::new();
        if let Programme::Desp(grader) = &self.programme {
            let c = &grader.config;
            let rule = |labels: &[&str], at_least: f32| ExplainRule {
                labels: labels.iter().map(|l| (*l).to_string()).collect(),
                at_least,
            };
            out.insert(
                grader.model,
                ExplainWhen {
                    any_of: vec![
                        rule(&["r3"], c.r3_at_least),
                        rule(&["r2", "r3"], c.referable_at_least),
                        rule(&["m1"], c.m1_at_least),
                    ],
                    only_if: Some(rule(&["gradable"], c.gradable_at_least)),
                },
            );
        }
        out
    }

    /// Which images get a second look, by model: DESP's band of p(r3) on a
    /// gradable image, when `[triage.desp.r3_second_look]` is set.
    pub fn look_when(&self) -> std::collections::BTreeMap<ModelId, crate::look::LookWhen> {
        let mut out = std::collections::BTreeMap::new();
        if let Programme::Desp(grader) = &self.programme {
            let c = &grader.config;
            if let Some(rule) = c.r3_second_look {
                let when = crate::look::LookWhen {
                    label: grader.outputs.r[3],
                    from: rule.from,
                    below: c.r3_at_least,
                    only_if: Some((grader.outputs.gradable, c.gradable_at_least)),
                };
                out.insert(grader.model, when);
            }
        }
        out
    }

    /// "outside the model's domain — <the card's words>" for the models
    /// whose gates ruled images out (each model's words once).
    fn outside_words(&self, outside: &std::collections::BTreeMap<ModelId, u32>) -> String {
        let mut words: Vec<&str> =
            outside.keys().map(|&m| self.model(m).map_or(NOT_RECOGNISED, |info| info.outside.as_str())).collect();
        words.dedup();
        format!("{} — {}", desp::OUTSIDE_DOMAIN, words.join("; "))
    }

    /// What the worklist says of a model; `None` for an id not in this run.
    fn model(&self, id: ModelId) -> Option<&ModelInfo> {
        self.models.get(id.index())
    }

    /// Evaluates every rule for this image's model; none fires on an
    /// image outside the model's domain.
    pub fn evaluate(&self, scored: Scored) -> Finding {
        let outside = scored.outside_domain();
        let mut hits: Vec<Hit> = self
            .rules
            .iter()
            .filter(|r| r.model == scored.model && !outside)
            .filter_map(|r| {
                let value = *scored.outputs.get(r.output)?;
                (value >= r.threshold).then(|| Hit {
                    band: r.band,
                    finding: r.finding.clone(),
                    label: r.label.clone(),
                    value,
                    threshold: r.threshold,
                })
            })
            .collect();
        hits.sort_by(|a, b| a.band.cmp(&b.band).then(b.value.total_cmp(&a.value)));
        let grade = self.programme.grade(&scored);
        Finding { scored, hits, grade }
    }
}

/// The triage stage: evaluates rules per image and forwards findings.
pub fn run(rules: &RuleSet, rx: crossbeam_channel::Receiver<Msg<Scored>>, tx: crossbeam_channel::Sender<Msg<Finding>>) {
    for msg in rx {
        if tx.send(msg.map(|s| rules.evaluate(s))).is_err() {
            return;
        }
    }
}
