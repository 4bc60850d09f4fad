//! The join of predictions with the reference, and every figure computed
//! from it: per eye and per study, for each screening target.
//!
//! Definitions (the reference script in tests/ repeats them):
//! - an eye is in a target's population if it has a result and, except for
//!   the ungradable target, the reference calls it gradable;
//! - an eye the pipeline calls U counts as "not referred" (conservative)
//!   and has no referable, R3 or M1 probability, so it is in the confusion
//!   matrix but not on that ROC curve (`cases_without_score` says how many);
//! - a study is positive, and called positive, if any of its eyes is; its
//!   score is the highest of its eyes' scores.

use std::collections::BTreeMap;

use serde::Serialize;

use super::metrics::{
    calibration, operating_points, roc_auc_bootstrap, roc_curve, AucInterval, CalibrationBin, Confusion,
    OperatingPoint, Proportion, Roc,
};
use super::reference::ReferenceEye;
use super::results::{EyePrediction, ReferralThresholds};

/// One case of a binary target.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub positive: bool,
    pub called: bool,
    pub score: Option<f64>,
}

/// A screening target: which eyes it concerns, the truth, the call and the
/// model output that scores it.
pub struct Target {
    pub name: &'static str,
    pub title: &'static str,
    gradable_only: bool,
    truth: fn(&ReferenceEye) -> bool,
    call: fn(&EyePrediction) -> bool,
    score: fn(&EyePrediction, &ReferralThresholds) -> Option<f64>,
    /// Whether the score is a probability (else no calibration is drawn).
    score_is_probability: bool,
}

/// Referable disease, R3, M1 and ungradable: the DESP outcomes that decide
/// a referral, and the model outputs behind them.
pub const TARGETS: [Target; 4] = [
    Target {
        name: "referable",
        title: "Referable (R2, R3 or M1)",
        gradable_only: true,
        truth: ReferenceEye::referable,
        call: EyePrediction::called_referable,
        // The decision's own score, M1 and R3 included (not p(r2)+p(r3) alone).
        score: |p, referral| referral.score(p),
        score_is_probability: false,
    },
    Target {
        name: "r3",
        title: "Proliferative (R3)",
        gradable_only: true,
        truth: |r| r.retinopathy == 3,
        call: |p| p.retinopathy() == Some(crate::triage::desp::RGrade::R3),
        score: |p, _| p.p_r3,
        score_is_probability: true,
    },
    Target {
        name: "m1",
        title: "Maculopathy (M1)",
        gradable_only: true,
        truth: |r| r.maculopathy,
        call: EyePrediction::maculopathy,
        score: |p, _| p.p_m1,
        score_is_probability: true,
    },
    Target {
        name: "ungradable",
        title: "Ungradable (U)",
        gradable_only: false,
        truth: |r| !r.gradable,
        call: EyePrediction::called_ungradable,
        score: |p, _| p.p_gradable.map(|g| 1.0 - g),
        score_is_probability: true,
    },
];

impl Target {
    /// The eye's case, if the eye belongs to this target's population.
    pub fn case(
        &self,
        reference: &ReferenceEye,
        predicted: &EyePrediction,
        referral: &ReferralThresholds,
    ) -> Option<Case> {
        (!self.gradable_only || reference.gradable).then(|| Case {
            positive: (self.truth)(reference),
            called: (self.call)(predicted),
            score: (self.score)(predicted, referral),
        })
    }
}

/// A matched eye: its reference grade and what the pipeline said.
pub struct MatchedEye<'a> {
    pub reference: &'a ReferenceEye,
    pub predicted: &'a EyePrediction,
}

/// Per-study cases from per-eye ones, grouped by study in reference order.
pub fn study_cases(eyes: &[MatchedEye<'_>], target: &Target, referral: &ReferralThresholds) -> Vec<Case> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_study: BTreeMap<&str, Vec<Case>> = BTreeMap::new();
    for eye in eyes {
        let Some(case) = target.case(eye.reference, eye.predicted, referral) else { continue };
        let uid = eye.reference.study_uid.as_str();
        by_study.entry(uid).or_insert_with(|| {
            order.push(uid);
            Vec::new()
        });
        if let Some(cases) = by_study.get_mut(uid) {
            cases.push(case);
        }
    }
    order
        .iter()
        .filter_map(|uid| by_study.get(uid))
        .map(|cases| Case {
            positive: cases.iter().any(|c| c.positive),
            called: cases.iter().any(|c| c.called),
            score: cases.iter().filter_map(|c| c.score).reduce(f64::max),
        })
        .collect()
}

/// Per-eye cases in reference order (right before left within a study only
/// if the reference lists them so).
pub fn eye_cases(eyes: &[MatchedEye<'_>], target: &Target, referral: &ReferralThresholds) -> Vec<Case> {
    eyes.iter().filter_map(|e| target.case(e.reference, e.predicted, referral)).collect()
}

/// Every figure for one target at one level.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub title: &'static str,
    pub cases: usize,
    pub positives: usize,
    pub confusion: Confusion,
    pub sensitivity: Proportion,
    pub specificity: Proportion,
    pub ppv: Proportion,
    pub npv: Proportion,
    /// Cases with no score for this output (called U): counted above, left
    /// off the curve below.
    pub cases_without_score: usize,
    pub auc: AucInterval,
    /// The first threshold is +infinity, written as null.
    pub roc: Roc,
    pub calibration: Vec<CalibrationBin>,
    #[serde(skip)]
    pub operating_points: Vec<OperatingPoint>,
}

/// How the AUC interval is drawn.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub seed: u64,
}

/// Uniform bins of the reliability diagrams.
pub const CALIBRATION_BINS: usize = 10;

pub fn figures(target: &Target, cases: &[Case], bootstrap: Bootstrap) -> Figures {
    let confusion = Confusion::tally(cases.iter().map(|c| (c.called, c.positive)));
    let (scores, positive): (Vec<f64>, Vec<bool>) =
        cases.iter().filter_map(|c| c.score.map(|s| (s, c.positive))).unzip();
    Figures {
        title: target.title,
        cases: cases.len(),
        positives: cases.iter().filter(|c| c.positive).count(),
        confusion,
        sensitivity: confusion.sensitivity(),
        specificity: confusion.specificity(),
        ppv: confusion.ppv(),
        npv: confusion.npv(),
        cases_without_score: cases.len() - scores.len(),
        auc: roc_auc_bootstrap(&scores, &positive, bootstrap.resamples, bootstrap.seed),
        roc: roc_curve(&scores, &positive),
        calibration: if target.score_is_probability {
            calibration(&scores, &positive, CALIBRATION_BINS)
        } else {
            Vec::new()
        },
        operating_points: operating_points(&scores, &positive),
    }
}
