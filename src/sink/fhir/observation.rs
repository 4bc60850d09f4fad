//! The Observations of a study's bundle: one per DESP eye (grade, body
//! site and laterality coded, the probabilities as components) or, without
//! programme detail, one for the study's placement.

use super::bundle::{
    clean_code, clean_text, own_identifier, BundleInput, BAND_CODES, NIGHTSCREEN_CODES, OBSERVATION_CATEGORY, SNOMED,
    UCUM,
};
use super::model::*;
use super::FhirConfig;
use crate::triage::desp::EyeOutcome;

/// The probability components of an eye's Observation: code, meaning, value.
type ProbPick = (&'static str, &'static str, fn(&EyeOutcome) -> Option<f32>);
pub const EYE_PROBABILITIES: [ProbPick; 4] = [
    ("p-referable", "Probability of referable retinopathy (R2 or R3)", |e| e.probs.referable),
    ("p-r3", "Probability of proliferative retinopathy (R3)", |e| e.probs.r3),
    ("p-m1", "Probability of maculopathy (M1)", |e| e.probs.m1),
    ("p-gradable", "Probability that the images are gradable", |e| e.p_gradable()),
];

fn quantity(value: f32) -> Quantity {
    Quantity { value, unit: "1", system: UCUM, code: "1" }
}

/// The parts every Observation of the study shares.
pub(super) struct ObservationBase<'a> {
    pub subject: &'a Reference,
    pub study_url: &'a str,
    pub device_url: Option<&'a str>,
    pub effective: Option<String>,
    pub issued: &'a str,
}

impl ObservationBase<'_> {
    fn observation(&self, full_url: &str, code: CodeableConcept, value: CodeableConcept) -> Observation {
        Observation {
            identifier: vec![own_identifier(full_url)],
            status: Status::Preliminary,
            category: vec![CodeableConcept::coded(Coding::new(OBSERVATION_CATEGORY, "imaging", "Imaging"), "")],
            code,
            subject: self.subject.clone(),
            part_of: vec![Reference::to(self.study_url)],
            effective_date_time: self.effective.clone(),
            issued: self.issued.into(),
            device: self.device_url.map(Reference::to),
            body_site: None,
            value_codeable_concept: value,
            note: Vec::new(),
            component: Vec::new(),
            derived_from: vec![Reference::to(self.study_url)],
        }
    }
}

/// Right and left: the role, the words and the SNOMED CT laterality.
pub(super) const EYES: [(&str, &str, &str, &str); 2] =
    [("right", "right eye", "24028007", "Right"), ("left", "left eye", "7771000", "Left")];

pub(super) fn eye_observation(
    cfg: &FhirConfig,
    base: &ObservationBase<'_>,
    full_url: &str,
    (_, words, laterality, laterality_name): (&str, &str, &str, &str),
    eye: &EyeOutcome,
) -> Observation {
    let grade = eye.grade.to_string();
    let code = CodeableConcept::coded(
        Coding::new(NIGHTSCREEN_CODES, "desp-eye-grade", "DESP grade of one eye, by machine"),
        "DESP eye grade (machine-made)",
    );
    let value = CodeableConcept::coded(Coding::new(&cfg.grade_system, &grade, &eye.grade.words()), &grade);
    let mut obs = base.observation(full_url, code, value);
    obs.body_site = Some(CodeableConcept::coded(Coding::new(SNOMED, "81745001", "Eye"), words));
    obs.component.push(Component {
        code: CodeableConcept::coded(Coding::new(SNOMED, "272741003", "Laterality"), ""),
        value_quantity: None,
        value_codeable_concept: Some(CodeableConcept::coded(Coding::new(SNOMED, laterality, laterality_name), "")),
    });
    for (code, meaning, pick) in EYE_PROBABILITIES {
        if let Some(p) = pick(eye) {
            obs.component.push(Component {
                code: CodeableConcept::coded(Coding::new(NIGHTSCREEN_CODES, code, meaning), ""),
                value_quantity: Some(quantity(p)),
                value_codeable_concept: None,
            });
        }
    }
    obs
}

pub(super) fn placement_observation(
    base: &ObservationBase<'_>,
    full_url: &str,
    input: &BundleInput<'_>,
) -> Observation {
    let code = CodeableConcept::coded(
        Coding::new(NIGHTSCREEN_CODES, "worklist-placement", "Worklist band, by machine"),
        "Worklist placement (machine-made)",
    );
    // A band is always in the run's table; "unknown" keeps a code non-empty regardless.
    let band = Some(clean_code(input.band)).filter(|b| !b.is_empty()).unwrap_or_else(|| "unknown".into());
    let value = CodeableConcept::coded(Coding::new(BAND_CODES, &band, &band), &band);
    let mut obs = base.observation(full_url, code, value);
    obs.note.push(Annotation { text: clean_text(&input.study.reason) });
    if let Some(score) = input.study.score {
        obs.component.push(Component {
            code: CodeableConcept::coded(
                Coding::new(NIGHTSCREEN_CODES, "placement-score", "Model output that placed the study"),
                "",
            ),
            value_quantity: Some(quantity(score)),
            value_codeable_concept: None,
        });
    }
    obs
}
