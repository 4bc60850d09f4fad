//! The study book: gathers per-image findings and rejects by study, then
//! orders the worklist. It is generic: the run's [`Programme`] grades and
//! may place each study; the book ranks, explains and counts.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::band::Band;
use super::desp::OUTSIDE_DOMAIN;
use super::programme::{Placement, StudyDetail, StudyEvidence};
use super::{Finding, Hit, RuleSet};
use crate::message::{count_key, Header, RejectKind, Rejected, SourceId, StudyUid};
use crate::model::ModelId;

/// One study's place on the worklist. Serialisable whole, so a shard can
/// hand its studies to `nightscreen merge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyResult {
    pub rank: u32,
    pub band: Band,
    /// Strength of the evidence that placed it (the firing output), if any.
    pub score: Option<f32>,
    pub reason: String,
    pub header: Arc<Header>,
    pub modalities: Vec<String>,
    pub images_scored: u32,
    pub files_failed: u32,
    pub files_skipped: u32,
    pub models: Vec<String>,
    /// What the programme adds (DESP: each eye's grade).
    pub detail: StudyDetail,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct StudyAcc {
    header: Option<Arc<Header>>,
    modalities: BTreeSet<String>,
    /// Distinct (SOP instance, frame) pairs scored, by 64-bit hash: every
    /// study stays in the book until the worklist is ordered, so its
    /// per-image state is kept to a few bytes.
    frames: HashSet<u64>,
    failed_files: BTreeSet<String>,
    skipped: u32,
    best: Option<(Band, f32, String)>,
    models: BTreeSet<ModelId>,
    /// What the programme keeps of the study.
    evidence: StudyEvidence,
    /// Findings (frame × model) recorded, and those each model's domain gate
    /// did not recognise: when they are all outside, nothing was scored.
    #[serde(default)]
    findings: u32,
    #[serde(default)]
    outside: BTreeMap<ModelId, u32>,
    /// The header is only what a server's manifest said (an instance it
    /// failed to deliver): the first real header replaces it.
    #[serde(default)]
    header_from_manifest: bool,
}

/// Groups by StudyInstanceUID; an object without one is a study of its
/// own (keyed by its path), never merged with other UID-less files.
fn study_key(header: &Header, source: &SourceId) -> StudyUid {
    if header.study_uid.0.is_empty() {
        StudyUid(format!("(no StudyInstanceUID) {}", source.locator()))
    } else {
        header.study_uid.clone()
    }
}

/// The book's contents, saved with each checkpoint so a resumed run
/// orders its worklist over every study, not only the files it redid.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct BookSnapshot(Vec<(StudyUid, StudyAcc)>);

impl BookSnapshot {
    /// Studies recorded so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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

    /// A book holding what a checkpoint saved.
    pub fn restore(rules: &'r RuleSet, snapshot: BookSnapshot) -> Self {
        Self { rules, studies: snapshot.0.into_iter().collect() }
    }

    /// A copy of the contents for a checkpoint.
    pub fn snapshot(&self) -> BookSnapshot {
        BookSnapshot(self.studies.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Records one image finding.
    pub fn add_finding(&mut self, f: &Finding) {
        let header = &f.scored.meta.instance.header;
        let best_here = f.hits.first().map(|hit| (hit.band, hit.value, self.describe(f, hit)));
        let acc = self.studies.entry(study_key(header, &f.scored.meta.instance.source)).or_default();
        if std::mem::take(&mut acc.header_from_manifest) {
            acc.header = None;
        }
        acc.header.get_or_insert_with(|| Arc::clone(header));
        acc.modalities.insert(header.modality.clone());
        acc.frames.insert(count_key(&[header.sop_instance_uid.0.as_bytes(), &f.scored.meta.frame_index.to_be_bytes()]));
        acc.models.insert(f.scored.model);
        acc.findings += 1;
        if f.scored.outside_domain() {
            *acc.outside.entry(f.scored.model).or_default() += 1;
        }
        self.rules.programme().record_image(&mut acc.evidence, header, f.grade);
        if let Some((band, value, why)) = best_here {
            // Ties go to the first description in text order, not to the
            // first to arrive: files finish decoding in no fixed order.
            let better = match &acc.best {
                None => true,
                Some((b, v, w)) => band < *b || (band == *b && (value > *v || (value == *v && why < *w))),
            };
            if better {
                acc.best = Some((band, value, why));
            }
        }
    }

    /// Records a file that failed or was skipped, when its study is known.
    pub fn add_rejected(&mut self, r: &Rejected) {
        let Some(header) = &r.header else { return };
        let acc = self.studies.entry(study_key(header, &r.source)).or_default();
        let from_manifest = r.stage == crate::message::Stage::Fetch;
        if acc.header.is_none() {
            acc.header_from_manifest = from_manifest;
        } else if acc.header_from_manifest && !from_manifest {
            acc.header = None;
            acc.header_from_manifest = false;
        }
        acc.header.get_or_insert_with(|| Arc::clone(header));
        match r.kind {
            RejectKind::Error => {
                acc.failed_files.insert(r.source.locator());
                self.rules.programme().record_unreadable(&mut acc.evidence, header);
            }
            RejectKind::Skip(_) => acc.skipped += 1,
        }
    }

    /// Forgets that these files (by [`SourceId::locator`]) failed, for
    /// `run --retry-failed`; a study left with nothing recorded goes.
    pub fn forget_failed(&mut self, locators: &BTreeSet<String>) {
        for acc in self.studies.values_mut() {
            acc.failed_files.retain(|f| !locators.contains(f));
        }
        self.studies.retain(|_, acc| !(acc.frames.is_empty() && acc.failed_files.is_empty() && acc.skipped == 0));
    }

    fn describe(&self, f: &Finding, hit: &Hit) -> String {
        let h = &f.scored.meta.instance.header;
        let model = match self.rules.model(f.scored.model) {
            Some(info) => format!("{} {}", info.id, info.version),
            None => format!("model {}", f.scored.model),
        };
        let mut image = h.modality.clone();
        if let Some(n) = h.instance_number {
            image = format!("{image} image {n}");
        }
        if h.frames > 1 {
            image = format!("{image} frame {}", f.scored.meta.frame_index + 1);
        }
        let where_: Vec<&str> =
            [h.laterality.eye_words().unwrap_or(""), image.trim()].into_iter().filter(|s| !s.is_empty()).collect();
        format!(
            "{} suspected, {}{}={:.2} ≥ {:.2} ({model})",
            hit.finding,
            where_.iter().map(|w| format!("{w}, ")).collect::<String>(),
            hit.label,
            hit.value,
            hit.threshold,
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
                // Only skipped objects (an SR, a plan): nothing to screen.
                if scored == 0 && failed == 0 {
                    return None;
                }
                let (placed, detail) = rules.programme().place(&acc.evidence);
                let outside = acc.outside.values().sum::<u32>();
                let (band, score, mut reason) = match (placed, acc.best) {
                    (Some(Placement { band, score, reason }), _) => (band, Some(score), reason),
                    (None, Some((band, value, why))) => (band, Some(value), why),
                    (None, None) if outside > 0 && outside == acc.findings => {
                        (rules.incomplete_band, None, rules.outside_words(&acc.outside))
                    }
                    (None, None) if scored == 0 => {
                        (rules.incomplete_band, None, "no image in this study could be scored".to_string())
                    }
                    (None, None) if failed > 0 => (
                        rules.incomplete_band,
                        None,
                        "no finding in the readable images, but some could not be read".to_string(),
                    ),
                    (None, None) => (rules.default_band, None, format!("no rule fired on {scored} image(s)")),
                };
                if outside > 0 && !reason.contains(OUTSIDE_DOMAIN) {
                    reason.push_str(&format!("; {outside} image(s) {}", rules.outside_words(&acc.outside)));
                }
                if header.study_uid.0.is_empty() {
                    reason.push_str("; the file has no StudyInstanceUID");
                }
                if failed > 0 {
                    reason.push_str(&format!("; {failed} file(s) could not be read"));
                }
                if acc.models.iter().any(|&m| rules.model(m).is_none_or(|m| !m.clinical_use)) {
                    reason.push_str("; model not validated for clinical use");
                }
                Some(StudyResult {
                    rank: 0,
                    band,
                    score,
                    reason,
                    header,
                    modalities: acc.modalities.into_iter().filter(|m| !m.is_empty()).collect(),
                    images_scored: scored,
                    files_failed: failed,
                    files_skipped: acc.skipped,
                    models: acc
                        .models
                        .iter()
                        .map(|&m| match rules.model(m) {
                            Some(info) => format!("{} {}", info.id, info.version),
                            None => format!("model {m}"),
                        })
                        .collect(),
                    detail,
                })
            })
            .collect();
        rank(&mut out);
        out
    }
}

/// Orders studies most urgent first and numbers them: by band, then the
/// strength of the evidence, then the older study, then UID (so the order
/// never depends on arrival). `nightscreen merge` orders shards' studies
/// with it too, so a sharded night ranks as one process would.
pub fn rank(studies: &mut [StudyResult]) {
    studies.sort_by(|a, b| {
        a.band
            .cmp(&b.band)
            .then(b.score.unwrap_or(f32::NEG_INFINITY).total_cmp(&a.score.unwrap_or(f32::NEG_INFINITY)))
            .then(a.header.study_datetime.cmp(&b.header.study_datetime))
            .then(a.header.study_uid.cmp(&b.header.study_uid))
    });
    for (i, s) in studies.iter_mut().enumerate() {
        s.rank = i as u32 + 1;
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::message::Scored;
    use crate::model::card::{Accepts, Activation, InputSpec, Layout, ModelCard, OutputSpec};
    use crate::model::ChannelOrder;
    use crate::model::VerifiedModel;
    use crate::triage::{Rule, TriageConfig};

    fn one(model: VerifiedModel) -> crate::model::Models {
        crate::model::Models::new(vec![model]).expect("one model")
    }

    fn model() -> VerifiedModel {
        VerifiedModel {
            card: ModelCard {
                id: "m".into(),
                version: "2.1".into(),
                file: "m.onnx".into(),
                sha256: "0".repeat(64),
                intended_use: String::new(),
                limitations: String::new(),
                clinical_use: false,
                input: InputSpec {
                    name: "x".into(),
                    layout: Layout::NCHW,
                    channels: 3,
                    height: 8,
                    width: 8,
                    scale: 1.0,
                    mean: vec![],
                    std: vec![],
                    channel_order: ChannelOrder::RGB,
                },
                output: OutputSpec {
                    name: "y".into(),
                    labels: vec!["r3".into(), "r2".into()],
                    activation: Activation::None,
                },
                accepts: Accepts::default(),
                thresholds: [("r2".to_string(), 0.4)].into_iter().collect(),
                evaluation: None,
                explain: None,
                domain: None,
                second_look: None,
            },
            card_path: PathBuf::new(),
            onnx_path: PathBuf::new(),
            route: Accepts::default(),
            domain: None,
            second_look: None,
        }
    }

    fn config() -> TriageConfig {
        TriageConfig {
            rules: vec![
                Rule {
                    model: "m".into(),
                    label: "r3".into(),
                    at_least: Some(0.8),
                    band: "URGENT".into(),
                    finding: Some("R3".into()),
                },
                Rule { model: "m".into(), label: "r2".into(), at_least: None, band: "ROUTINE".into(), finding: None },
            ],
            ..TriageConfig::default()
        }
    }

    fn scored(study: &str, laterality: &str, outputs: Vec<f32>) -> Scored {
        let header = Header {
            study_uid: StudyUid::new(study),
            laterality: crate::dicom::laterality::Laterality::parse(laterality),
            modality: "OP".into(),
            ..Header::default()
        };
        Scored::for_test(SourceId::File(format!("/{study}/{laterality}.dcm").into()), header, outputs)
    }

    #[test]
    fn card_threshold_is_used_when_a_rule_gives_none_and_unknown_labels_are_refused() {
        let rules = RuleSet::new(&config(), &one(model())).expect("rules");
        assert_eq!(rules.evaluate(scored("1", "R", vec![0.1, 0.45])).band(), rules.bands().find("ROUTINE"));
        assert_eq!(rules.evaluate(scored("1", "R", vec![0.1, 0.35])).band(), None);
        let mut bad = config();
        bad.rules[0].label = "r9".into();
        assert!(RuleSet::new(&bad, &one(model())).is_err());
        assert!(!config().problems().iter().any(|p| p.contains("band")));
    }

    #[test]
    fn studies_sort_by_band_then_strength_and_say_why() {
        let rules = RuleSet::new(&config(), &one(model())).expect("rules");
        let mut book = StudyBook::new(&rules);
        for (study, lat, out) in [
            ("calm", "R", vec![0.1, 0.1]),
            ("routine", "L", vec![0.2, 0.5]),
            ("urgent-weak", "R", vec![0.81, 0.9]),
            ("urgent-strong", "L", vec![0.95, 0.1]),
        ] {
            book.add_finding(&rules.evaluate(scored(study, lat, out)));
        }
        let list = book.finish();
        let order: Vec<&str> = list.iter().map(|s| s.header.study_uid.as_str()).collect();
        assert_eq!(order, ["urgent-strong", "urgent-weak", "routine", "calm"]);
        assert_eq!(rules.bands().name(list[0].band), "URGENT");
        assert!(list[0].reason.starts_with("R3 suspected, left eye"), "{}", list[0].reason);
        assert!(list[0].reason.contains("r3=0.95"), "{}", list[0].reason);
        assert!(list[0].reason.contains("not validated for clinical use"));
        assert_eq!(rules.bands().name(list[3].band), "NO_FINDING");
        assert_eq!(list.iter().map(|s| s.rank).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn a_study_with_unreadable_files_is_never_placed_in_the_quiet_band() {
        let rules = RuleSet::new(&config(), &one(model())).expect("rules");
        let mut book = StudyBook::new(&rules);
        book.add_finding(&rules.evaluate(scored("s", "R", vec![0.1, 0.1])));
        let mut broken = scored("s", "L", vec![]).meta.instance.reject(crate::message::Stage::Decode, "truncated");
        broken.source = SourceId::File("/s/L-broken.dcm".into());
        book.add_rejected(&broken);
        let list = book.finish();
        assert_eq!(rules.bands().name(list[0].band), "REVIEW");
        assert!(list[0].reason.contains("1 file(s) could not be read"), "{}", list[0].reason);
    }

    #[test]
    fn under_desp_the_programme_places_the_study_and_an_unreadable_field_counts_as_ungradable() {
        let mut dr = model();
        dr.card.id = "dr".into();
        dr.card.output.labels = ["r0", "r1", "r2", "r3", "m1", "gradable"].map(String::from).to_vec();
        let cfg = TriageConfig {
            mode: crate::triage::TriageMode::Desp,
            bands: crate::triage::desp::BANDS.map(String::from).to_vec(),
            default_band: "NO_DISEASE".into(),
            incomplete_band: "REVIEW".into(),
            rules: Vec::new(),
            desp: crate::triage::DespConfig { model: "dr".into(), ..Default::default() },
        };
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let desp = RuleSet::new(&cfg, &one(dr.clone())).expect("desp rules");
        let plain = RuleSet::new(&TriageConfig { mode: crate::triage::TriageMode::Rules, ..cfg.clone() }, &one(dr))
            .expect("plain rules");
        let mut results = Vec::new();
        for rules in [&desp, &plain] {
            let mut book = StudyBook::new(rules);
            book.add_finding(&rules.evaluate(scored("s", "R", vec![0.9, 0.05, 0.03, 0.02, 0.1, 0.9])));
            let broken = scored("s", "L", vec![]).meta.instance.reject(crate::message::Stage::Decode, "truncated");
            book.add_rejected(&broken);
            let list = book.finish();
            assert_eq!(list.len(), 1);
            results.push((rules.bands().name(list[0].band).to_string(), list[0].clone()));
        }
        let (band, study) = &results[0];
        assert_eq!(band, "UNGRADABLE");
        assert!(
            study.reason.starts_with("ungradable: no gradable field, p(gradable)=0.00, left eye; other eye R0M0"),
            "{}",
            study.reason
        );
        let (right, left) = study.detail.eyes();
        assert_eq!(right.map(|e| e.grade.to_string()).as_deref(), Some("R0M0"));
        assert_eq!(left.map(|e| e.grade), Some(crate::triage::Grade::Ungradable));
        // Without the DESP programme the same study has no eyes and the
        // generic rules place it: a failed file keeps it out of the quiet band.
        let (band, study) = &results[1];
        assert_eq!((band.as_str(), &study.detail), ("REVIEW", &StudyDetail::None));
        assert!(study.reason.starts_with("no finding in the readable images"), "{}", study.reason);
    }
}
