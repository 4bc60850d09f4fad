//! Triage: model outputs → per-image findings → one worklist place per study.
//!
//! Rules come from the config (`[[triage.rules]]`): "if model M's output L is
//! at or above T, the study belongs at least in band B". A study takes the
//! most urgent band any of its images reached, and sorts within the band by
//! the strongest evidence. The reason is written in words, so a grader sees
//! why a study is where it is. Studies with unreadable images never land in
//! the least urgent band: a human must look at what the machine could not.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::message::{Header, Msg, RejectKind, Rejected, Scored, StudyUid};
use crate::model::VerifiedModel;

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
    /// Band names, most urgent first.
    pub bands: Vec<String>,
    /// Band of a study where no rule fired.
    pub default_band: String,
    /// Band of a study with no readable image, or none that fired while
    /// some of its files failed.
    pub incomplete_band: String,
    pub rules: Vec<Rule>,
}

impl Default for TriageConfig {
    fn default() -> Self {
        Self {
            bands: ["URGENT", "ROUTINE", "REVIEW", "NO_FINDING"].map(String::from).to_vec(),
            default_band: "NO_FINDING".into(),
            incomplete_band: "REVIEW".into(),
            rules: Vec::new(),
        }
    }
}

impl TriageConfig {
    /// Problems that need no models to find.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let known = |b: &str| self.bands.iter().any(|x| x == b);
        for (what, band) in [("default_band", &self.default_band), ("incomplete_band", &self.incomplete_band)] {
            if !known(band) {
                out.push(format!("triage.{what} {band:?} is not in triage.bands"));
            }
        }
        for rule in &self.rules {
            if !known(&rule.band) {
                out.push(format!("triage rule for {}/{}: band {:?} is not in triage.bands", rule.model, rule.label, rule.band));
            }
        }
        out
    }
}

/// A rule bound to a model's output index and threshold.
#[derive(Debug, Clone)]
struct BoundRule {
    model: usize,
    output: usize,
    threshold: f32,
    band: usize,
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
    pub band: usize,
    pub finding: String,
    pub label: String,
    pub value: f32,
    pub threshold: f32,
}

/// One scored image with the rules it fired (most urgent first).
#[derive(Debug, Clone)]
pub struct Finding {
    pub scored: Scored,
    pub hits: Vec<Hit>,
}

impl Finding {
    /// The most urgent band this image reached, if any.
    pub fn band(&self) -> Option<usize> {
        self.hits.first().map(|h| h.band)
    }
}

/// The rules, bound to the run's models.
pub struct RuleSet {
    bands: Vec<String>,
    default_band: usize,
    incomplete_band: usize,
    rules: Vec<BoundRule>,
    models: Vec<(String, String, bool)>,
    labels: Vec<Vec<String>>,
}

impl RuleSet {
    /// Binds each rule to its model and output label.
    ///
    /// # Errors
    /// A rule names a model not in the run, a label the card lacks, or
    /// omits its threshold when the card has none.
    pub fn new(cfg: &TriageConfig, models: &[VerifiedModel]) -> Result<Self, RuleError> {
        let band_of = |b: &str| cfg.bands.iter().position(|x| x == b).unwrap_or(cfg.bands.len().saturating_sub(1));
        let mut rules = Vec::new();
        for rule in &cfg.rules {
            let fail = |problem: String| RuleError { model: rule.model.clone(), label: rule.label.clone(), problem };
            let model = models
                .iter()
                .position(|m| m.card.id == rule.model)
                .ok_or_else(|| fail("model is not in this run's [[models]]".into()))?;
            let card = &models[model].card;
            let output = card.label_index(&rule.label).ok_or_else(|| fail(format!("model has no output label (labels: {})", card.output.labels.join(", "))))?;
            let threshold = match rule.at_least.or_else(|| card.thresholds.get(&rule.label).copied()) {
                Some(t) => t,
                None => return Err(fail("no at_least given and the card has no threshold for it".into())),
            };
            rules.push(BoundRule { model, output, threshold, band: band_of(&rule.band), finding: rule.finding.clone().unwrap_or_else(|| rule.label.clone()) });
        }
        Ok(Self {
            bands: cfg.bands.clone(),
            default_band: band_of(&cfg.default_band),
            incomplete_band: band_of(&cfg.incomplete_band),
            rules,
            models: models.iter().map(|m| (m.card.id.clone(), m.card.version.clone(), m.card.clinical_use)).collect(),
            labels: models.iter().map(|m| m.card.output.labels.clone()).collect(),
        })
    }

    pub fn band_name(&self, band: usize) -> &str {
        self.bands.get(band).map_or("", String::as_str)
    }

    /// Evaluates every rule for this image's model.
    pub fn evaluate(&self, scored: Scored) -> Finding {
        let mut hits: Vec<Hit> = self
            .rules
            .iter()
            .filter(|r| r.model == scored.model)
            .filter_map(|r| {
                let value = *scored.outputs.get(r.output)?;
                (value >= r.threshold).then(|| Hit {
                    band: r.band,
                    finding: r.finding.clone(),
                    label: self.labels[r.model][r.output].clone(),
                    value,
                    threshold: r.threshold,
                })
            })
            .collect();
        hits.sort_by(|a, b| a.band.cmp(&b.band).then(b.value.total_cmp(&a.value)));
        Finding { scored, hits }
    }
}

/// One study's place on the worklist.
#[derive(Debug, Clone, Serialize)]
pub struct StudyResult {
    pub rank: u32,
    pub band: String,
    #[serde(skip)]
    pub band_index: usize,
    /// Strength of the evidence that placed it (the firing output), if any.
    pub score: Option<f32>,
    pub reason: String,
    #[serde(skip)]
    pub header: Arc<Header>,
    pub modalities: Vec<String>,
    pub images_scored: u32,
    pub files_failed: u32,
    pub files_skipped: u32,
    pub models: Vec<String>,
}

#[derive(Default)]
struct StudyAcc {
    header: Option<Arc<Header>>,
    modalities: std::collections::BTreeSet<String>,
    frames: std::collections::BTreeSet<(String, u32)>,
    failed_files: std::collections::BTreeSet<String>,
    skipped: u32,
    best: Option<(usize, f32, String)>,
    models: std::collections::BTreeSet<usize>,
}

/// Gathers findings and rejects by study, then orders the worklist.
pub struct StudyBook<'r> {
    rules: &'r RuleSet,
    studies: BTreeMap<StudyUid, StudyAcc>,
}

impl<'r> StudyBook<'r> {
    pub fn new(rules: &'r RuleSet) -> Self {
        Self { rules, studies: BTreeMap::new() }
    }

    /// Records one image finding.
    pub fn add_finding(&mut self, f: &Finding) {
        let header = &f.scored.meta.instance.header;
        let best_here = f.hits.first().map(|hit| (hit.band, hit.value, self.describe(f, hit)));
        let acc = self.studies.entry(header.study_uid.clone()).or_default();
        acc.header.get_or_insert_with(|| Arc::clone(header));
        acc.modalities.insert(header.modality.clone());
        acc.frames.insert((header.sop_instance_uid.0.clone(), f.scored.meta.frame_index));
        acc.models.insert(f.scored.model);
        if let Some((band, value, why)) = best_here {
            let better = match &acc.best {
                None => true,
                Some((b, v, _)) => band < *b || (band == *b && value > *v),
            };
            if better {
                acc.best = Some((band, value, why));
            }
        }
    }

    /// Records a file that failed or was skipped, when its study is known.
    pub fn add_rejected(&mut self, r: &Rejected) {
        let Some(header) = &r.header else { return };
        if header.study_uid.0.is_empty() {
            return;
        }
        let acc = self.studies.entry(header.study_uid.clone()).or_default();
        acc.header.get_or_insert_with(|| Arc::clone(header));
        match r.kind {
            RejectKind::Error => {
                acc.failed_files.insert(r.path.to_string_lossy().into_owned());
            }
            RejectKind::Skip(_) => acc.skipped += 1,
        }
    }

    fn describe(&self, f: &Finding, hit: &Hit) -> String {
        let h = &f.scored.meta.instance.header;
        let (id, version, _) = &self.rules.models[f.scored.model];
        let mut where_ = match h.laterality.as_str() {
            "R" => "right eye".to_string(),
            "L" => "left eye".to_string(),
            "B" => "both eyes".to_string(),
            _ => String::new(),
        };
        if !h.modality.is_empty() {
            if !where_.is_empty() {
                where_.push_str(", ");
            }
            where_.push_str(&h.modality);
        }
        if let Some(n) = h.instance_number {
            where_.push_str(&format!(" image {n}"));
        }
        if h.frames > 1 {
            where_.push_str(&format!(" frame {}", f.scored.meta.frame_index + 1));
        }
        format!(
            "{} suspected, {}, {}={:.2} ≥ {:.2} ({} {})",
            hit.finding,
            where_.trim(),
            hit.label,
            hit.value,
            hit.threshold,
            id,
            version
        )
    }

    /// Every study with its band and reason, most urgent first.
    pub fn finish(self) -> Vec<StudyResult> {
        let rules = self.rules;
        let mut out: Vec<StudyResult> = self
            .studies
            .into_values()
            .filter_map(|acc| {
                let header = acc.header?;
                let scored = acc.frames.len() as u32;
                let failed = acc.failed_files.len() as u32;
                let (band_index, score, mut reason) = match acc.best {
                    Some((band, value, why)) => (band, Some(value), why),
                    None if scored == 0 => (rules.incomplete_band, None, "no image in this study could be scored".to_string()),
                    None if failed > 0 => (rules.incomplete_band, None, "no finding in the readable images, but some could not be read".to_string()),
                    None => (rules.default_band, None, format!("no rule fired on {scored} image(s)")),
                };
                if failed > 0 {
                    reason.push_str(&format!("; {failed} file(s) could not be read"));
                }
                if acc.models.iter().any(|&m| !rules.models[m].2) {
                    reason.push_str("; model not validated for clinical use");
                }
                Some(StudyResult {
                    rank: 0,
                    band: rules.band_name(band_index).to_string(),
                    band_index,
                    score,
                    reason,
                    header,
                    modalities: acc.modalities.into_iter().filter(|m| !m.is_empty()).collect(),
                    images_scored: scored,
                    files_failed: failed,
                    files_skipped: acc.skipped,
                    models: acc.models.iter().map(|&m| format!("{} {}", rules.models[m].0, rules.models[m].1)).collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            a.band_index
                .cmp(&b.band_index)
                .then(b.score.unwrap_or(f32::NEG_INFINITY).total_cmp(&a.score.unwrap_or(f32::NEG_INFINITY)))
                .then(a.header.study_datetime.cmp(&b.header.study_datetime))
                .then(a.header.study_uid.cmp(&b.header.study_uid))
        });
        for (i, s) in out.iter_mut().enumerate() {
            s.rank = i as u32 + 1;
        }
        out
    }
}

/// The triage stage: evaluates rules per image and forwards findings.
pub fn run(
    rules: &RuleSet,
    rx: crossbeam_channel::Receiver<Msg<Scored>>,
    tx: crossbeam_channel::Sender<Msg<Finding>>,
) {
    for msg in rx {
        if tx.send(msg.map(|s| rules.evaluate(s))).is_err() {
            return;
        }
    }
}
