//! English Diabetic Eye Screening Programme (DESP) grading.
//!
//! Per image, the DR model's probabilities become a grade (R0–R3, M0/M1,
//! gradable or not); per eye the worst *gradable* field wins and an eye
//! with no gradable field is U; per study the worse eye decides the
//! outcome. Thresholds are the programme's operating point, so they live in
//! the config (`[triage.desp]`), with defaults from the held-out evaluation
//! in the model card.

mod grade;
mod grader;
mod look;

use serde::{Deserialize, Serialize};

pub use grade::{Grade, NotAGrade, RGrade};
pub use grader::{CardWords, DespGrader, StudyGrade};
pub use look::{Looked, R3SecondLook};

use crate::dicom::laterality::{FundusField, Laterality};
use crate::message::LookAnswer;

/// The `[triage.desp]` table: which model grades, and its operating point.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DespConfig {
    /// Card id of the DR model; its labels must include r0..r3, m1, gradable.
    pub model: String,
    /// p(gradable) at or above this: the image can be graded.
    pub gradable_at_least: f32,
    /// p(r3) at or above this: R3 suspected (urgent).
    pub r3_at_least: f32,
    /// p(r2) + p(r3) at or above this: referable retinopathy (R2 or worse).
    pub referable_at_least: f32,
    /// p(m1) at or above this: maculopathy.
    pub m1_at_least: f32,
    /// p(r1) + p(r2) + p(r3) at or above this: any retinopathy (R1).
    pub any_dr_at_least: f32,
    /// A non-referable image this close below a referral threshold is
    /// flagged "model unsure" and goes to REVIEW rather than NO_DISEASE.
    pub unsure_margin: f32,
    /// The band of p(r3) below `r3_at_least` that the DR card's second
    /// look decides; none: p(r3) alone decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r3_second_look: Option<R3SecondLook>,
}

impl Default for DespConfig {
    fn default() -> Self {
        Self {
            model: "dr-screen".into(),
            gradable_at_least: 0.5,
            r3_at_least: 0.5,
            referable_at_least: 0.5,
            m1_at_least: 0.5,
            any_dr_at_least: 0.5,
            unsure_margin: 0.15,
            r3_second_look: None,
        }
    }
}

/// How the worklist begins the reason for an image the DR model's gate did
/// not recognise; the card's words follow.
pub const OUTSIDE_DOMAIN: &str = "outside the model's domain";

/// The five DESP worklist bands, most urgent first (the names
/// `[triage] bands` must hold for `mode = "desp"`).
pub const BANDS: [&str; 5] = ["URGENT", "ROUTINE", "UNGRADABLE", "REVIEW", "NO_DISEASE"];

/// A DESP outcome, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Urgent,
    Routine,
    Ungradable,
    /// No image of the eye was recognised as one the model was made for: a
    /// person must look (REVIEW), but it is neither a quality failure
    /// (UNGRADABLE, which recalls the patient) nor a grade.
    OutsideDomain,
    Review,
    NoDisease,
}

impl Outcome {
    const ALL: [Outcome; 6] =
        [Self::Urgent, Self::Routine, Self::Ungradable, Self::OutsideDomain, Self::Review, Self::NoDisease];

    /// The band (one of [`BANDS`]) the outcome is listed in.
    fn name(self) -> &'static str {
        match self {
            Self::Urgent => BANDS[0],
            Self::Routine => BANDS[1],
            Self::Ungradable => BANDS[2],
            Self::OutsideDomain | Self::Review => BANDS[3],
            Self::NoDisease => BANDS[4],
        }
    }
}

/// The page colour of a DESP band, by name; `None` for any other name.
pub fn colour_class(band: &str) -> Option<&'static str> {
    let class = match band {
        "URGENT" => "band-urgent",
        "ROUTINE" => "band-routine",
        "UNGRADABLE" => "band-ungradable",
        "REVIEW" => "band-review",
        "NO_DISEASE" => "band-no-disease",
        _ => return None,
    };
    Some(class)
}

/// Output indices of the DR model's labels.
#[derive(Debug, Clone, Copy)]
pub struct Outputs {
    pub r: [usize; 4],
    pub m1: usize,
    pub gradable: usize,
}

impl Outputs {
    /// Finds the labels r0..r3, m1 and gradable.
    ///
    /// # Errors
    /// The name of the first missing label.
    pub fn find(labels: &[String]) -> Result<Self, String> {
        let at = |name: &str| labels.iter().position(|l| l == name).ok_or_else(|| name.to_string());
        Ok(Self { r: [at("r0")?, at("r1")?, at("r2")?, at("r3")?], m1: at("m1")?, gradable: at("gradable")? })
    }
}

/// One image's grade and the probabilities behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageGrade {
    pub grade: Grade,
    /// Close below a referral threshold (only counted on a gradable image).
    pub unsure: bool,
    pub p_gradable: f32,
    pub p_r3: f32,
    pub p_referable: f32,
    pub p_m1: f32,
    pub p_any_dr: f32,
    /// What the second look said, when p(r3) fell in its band.
    #[serde(default)]
    pub looked: Option<Looked>,
}

impl ImageGrade {
    /// The grade of a field whose file could not be read: ungradable.
    pub fn unreadable() -> Self {
        Self::without_probabilities(Grade::Ungradable)
    }

    /// The grade of a field the domain gate did not recognise: not graded.
    pub fn outside_domain() -> Self {
        Self::without_probabilities(Grade::OutOfDomain)
    }

    fn without_probabilities(grade: Grade) -> Self {
        Self {
            grade,
            unsure: false,
            p_gradable: 0.0,
            p_r3: 0.0,
            p_referable: 0.0,
            p_m1: 0.0,
            p_any_dr: 0.0,
            looked: None,
        }
    }
}

impl DespConfig {
    /// Grades one image from the model's outputs.
    pub fn grade(&self, idx: &Outputs, out: &[f32]) -> ImageGrade {
        self.grade_looked(idx, out, None)
    }

    /// Grades one image from the model's outputs and what its second look
    /// said, if it was asked.
    pub fn grade_looked(&self, idx: &Outputs, out: &[f32], look: Option<&LookAnswer>) -> ImageGrade {
        let p = |i: usize| out.get(i).copied().unwrap_or(0.0);
        let (p1, p2, p3) = (p(idx.r[1]), p(idx.r[2]), p(idx.r[3]));
        let p_referable = p2 + p3;
        let p_any_dr = p1 + p2 + p3;
        let p_m1 = p(idx.m1);
        let p_gradable = p(idx.gradable);
        let (looked, r3_by_look) = match self.r3_second_look {
            Some(rule) if rule.in_band(p3, self.r3_at_least) => {
                let (looked, r3) = rule.decide(look);
                (Some(looked), r3)
            }
            _ => (None, false),
        };
        let r = if p3 >= self.r3_at_least || r3_by_look {
            RGrade::R3
        } else if p_referable >= self.referable_at_least {
            RGrade::R2
        } else if p_any_dr >= self.any_dr_at_least {
            RGrade::R1
        } else {
            RGrade::R0
        };
        let m1 = p_m1 >= self.m1_at_least;
        let near = |p: f32, t: f32| p < t && p >= t - self.unsure_margin;
        let unsure = r < RGrade::R2
            && !m1
            && (near(p_referable, self.referable_at_least)
                || near(p_m1, self.m1_at_least)
                || near(p3, self.r3_at_least));
        let grade = if p_gradable >= self.gradable_at_least { Grade::Graded { r, m1 } } else { Grade::Ungradable };
        ImageGrade { grade, unsure, p_gradable, p_r3: p3, p_referable, p_m1, p_any_dr, looked }
    }
}

/// One graded image with where it was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Field {
    pub eye: Laterality,
    pub field: FundusField,
    pub grade: ImageGrade,
}

/// One eye's assessment: its grade (the worst gradable field) and what
/// decided it.
#[derive(Debug, Clone)]
pub struct EyeAssessment {
    pub eye: Laterality,
    pub grade: Grade,
    /// Some gradable field was close below a referral threshold.
    pub unsure: bool,
    /// The field that decided the grade (the worst gradable one, or the
    /// least ungradable when none is gradable).
    pub decisive: Field,
    pub probs: EyeProbs,
}

/// What a study's outcome says about one eye: for the worklist, the page,
/// the studies table and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EyeOutcome {
    pub grade: Grade,
    pub probs: EyeProbs,
}

impl EyeOutcome {
    /// p(gradable) as the DR model gave it; `None` for an eye outside its
    /// domain, which the model never scored.
    pub fn p_gradable(&self) -> Option<f32> {
        (self.grade != Grade::OutOfDomain).then_some(self.probs.gradable)
    }
}

/// An eye's probabilities for the analyst tables: the highest over its
/// gradable fields (over all fields for gradability), so they agree with
/// the grade, which also takes the worst gradable field.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EyeProbs {
    /// p(r2) + p(r3).
    pub referable: Option<f32>,
    pub r3: Option<f32>,
    pub m1: Option<f32>,
    pub gradable: f32,
}

impl EyeProbs {
    fn of(fields: &[&Field]) -> Self {
        let top = |f: fn(&ImageGrade) -> f32| {
            fields.iter().filter(|x| x.grade.grade.is_gradable()).map(|x| f(&x.grade)).reduce(f32::max)
        };
        Self {
            referable: top(|g| g.p_referable),
            r3: top(|g| g.p_r3),
            m1: top(|g| g.p_m1),
            gradable: fields.iter().map(|x| x.grade.p_gradable).fold(0.0, f32::max),
        }
    }
}

impl EyeAssessment {
    /// Retinopathy level 0..=3 (0 when ungradable).
    fn r(&self) -> u8 {
        self.grade.retinopathy().map_or(0, RGrade::level)
    }

    fn outcome(&self) -> Outcome {
        match self.grade {
            Grade::Ungradable => Outcome::Ungradable,
            Grade::OutOfDomain => Outcome::OutsideDomain,
            Grade::Graded { r: RGrade::R3, .. } => Outcome::Urgent,
            Grade::Graded { r: RGrade::R2, .. } | Grade::Graded { m1: true, .. } => Outcome::Routine,
            Grade::Graded { r: RGrade::R1, .. } => Outcome::Review,
            Grade::Graded { .. } if self.unsure => Outcome::Review,
            Grade::Graded { .. } => Outcome::NoDisease,
        }
    }
}

fn severity(g: &ImageGrade) -> (u8, bool, u8, f32) {
    // R3 outranks M1, M1 outranks R2 only on ties of R; then unsure; then strength.
    let r = g.grade.retinopathy().map_or(0, RGrade::level);
    (r, g.grade.maculopathy(), u8::from(g.unsure), g.p_referable.max(g.p_m1))
}

/// Grades each eye from its fields. Eyes and fields are ordered by their
/// header text ("" < "B" < "L" < "R"; "" < "disc" < "macula"), so ties
/// never depend on the order decode finished them in.
pub fn grade_eyes(fields: &[Field]) -> Vec<EyeAssessment> {
    let mut eyes: Vec<Laterality> = fields.iter().map(|f| f.eye).collect();
    eyes.sort_by_key(|e| e.as_str());
    eyes.dedup();
    eyes.into_iter()
        .filter_map(|eye| {
            let mut of_eye: Vec<&Field> = fields.iter().filter(|f| f.eye == eye).collect();
            of_eye.sort_by(|a, b| {
                a.field
                    .as_str()
                    .cmp(b.field.as_str())
                    .then(a.grade.p_gradable.total_cmp(&b.grade.p_gradable))
                    .then(a.grade.p_referable.total_cmp(&b.grade.p_referable))
            });
            let probs = EyeProbs::of(&of_eye);
            let gradable = || of_eye.iter().filter(|f| f.grade.grade.is_gradable());
            match gradable()
                .max_by(|a, b| severity(&a.grade).partial_cmp(&severity(&b.grade)).unwrap_or(std::cmp::Ordering::Equal))
            {
                Some(worst) => Some(EyeAssessment {
                    eye,
                    grade: Grade::Graded {
                        r: worst.grade.grade.retinopathy().unwrap_or(RGrade::R0),
                        m1: gradable().any(|f| f.grade.grade.maculopathy()),
                    },
                    unsure: gradable().any(|f| f.grade.unsure),
                    decisive: (*worst).clone(),
                    probs,
                }),
                None => {
                    // An eye is U when some field of it was a fundus image
                    // (ungradable or unreadable); only when none was is it
                    // outside the domain.
                    let recognised = || of_eye.iter().filter(|f| f.grade.grade != Grade::OutOfDomain);
                    let (grade, best) =
                        match recognised().max_by(|a, b| a.grade.p_gradable.total_cmp(&b.grade.p_gradable)) {
                            Some(best) => (Grade::Ungradable, best),
                            None => (Grade::OutOfDomain, of_eye.first()?),
                        };
                    Some(EyeAssessment { eye, grade, unsure: false, decisive: (*best).clone(), probs })
                }
            }
        })
        .collect()
}

/// A study's DESP outcome: its band (one of [`BANDS`]), risk within the
/// band, reason. `outside` says in words what an image outside the DR
/// model's domain is (its card's `[domain] outside`), `finding` what its
/// second look looks for (`[second_look] finding`).
fn study_outcome(eyes: &[EyeAssessment], outside: &str, finding: &str) -> (Outcome, f32, String) {
    let risk = |e: &EyeAssessment, outcome: Outcome| {
        let g = &e.decisive.grade;
        match outcome {
            Outcome::Urgent => g.p_r3,
            Outcome::Routine => g.p_referable.max(g.p_m1),
            Outcome::Ungradable => 1.0 - g.p_gradable,
            // The model said nothing of these: last in their band, after
            // every study the model has a reason to show.
            Outcome::OutsideDomain => 0.0,
            Outcome::Review => g.p_any_dr.max(g.p_referable),
            Outcome::NoDisease => g.p_referable.max(g.p_m1),
        }
    };
    let Some(worst) = eyes
        .iter()
        .min_by(|a, b| a.outcome().cmp(&b.outcome()).then(risk(b, b.outcome()).total_cmp(&risk(a, a.outcome()))))
    else {
        return (Outcome::Ungradable, 1.0, "no DR-model result for this study".into());
    };
    let outcome = worst.outcome();
    let score = risk(worst, outcome);
    let g = &worst.decisive.grade;
    let m1 = worst.grade.maculopathy();
    let what = match outcome {
        Outcome::Urgent => match g.looked {
            Some(Looked::Scored(p)) => {
                format!("R3 suspected: {finding} on a second look, p={p:.2} (p(r3)={:.2})", g.p_r3)
            }
            Some(Looked::NoAnswer) => {
                format!("R3 not ruled out: p(r3)={:.2} and the second look for {finding} gave no answer", g.p_r3)
            }
            None => format!("R3 suspected, p={:.2}", g.p_r3),
        },
        Outcome::Routine if m1 && worst.r() < 2 => format!("M1 suspected, p={:.2}", g.p_m1),
        Outcome::Routine if m1 => format!("R2 and M1 suspected, p={:.2}", g.p_referable.max(g.p_m1)),
        Outcome::Routine => format!("R2 suspected, p={:.2}", g.p_referable),
        Outcome::Ungradable => format!("ungradable: no gradable field, p(gradable)={:.2}", g.p_gradable),
        Outcome::OutsideDomain => format!("{OUTSIDE_DOMAIN} — {outside}"),
        Outcome::Review if worst.r() == 1 => format!("R1 suspected, p={:.2}", g.p_any_dr),
        Outcome::Review => {
            format!("model unsure: p(referable)={:.2} close to the threshold", g.p_referable.max(g.p_m1))
        }
        Outcome::NoDisease => format!(
            "R0M0 in {}, highest p(referable)={:.2}",
            if eyes.len() > 1 { "both eyes" } else { "the eye seen" },
            score
        ),
    };
    let mut reason = what;
    if outcome != Outcome::NoDisease {
        reason.push_str(&format!(", {}", worst.eye.eye_words().unwrap_or("eye not recorded")));
        if worst.decisive.field != FundusField::Unknown {
            reason.push_str(&format!(", {} field", worst.decisive.field));
        }
    }
    let others: Vec<String> = eyes
        .iter()
        .filter(|e| e.eye != worst.eye)
        .map(|e| match e.grade {
            Grade::OutOfDomain => format!("other eye not graded ({OUTSIDE_DOMAIN} — {outside})"),
            grade => format!("other eye {grade}"),
        })
        .collect();
    if !others.is_empty() {
        reason.push_str(&format!("; {}", others.join(", ")));
    }
    if eyes.len() < 2 {
        reason.push_str("; only one eye imaged");
    }
    (outcome, score, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::band::Bands;

    fn words() -> CardWords {
        CardWords { outside: "not a fundus".into(), finding: "new vessels".into() }
    }

    fn idx() -> Outputs {
        Outputs::find(&["r0", "r1", "r2", "r3", "m1", "gradable"].map(String::from)).expect("labels")
    }

    #[test]
    fn a_second_look_decides_r3_only_in_its_band() {
        let c = DespConfig {
            r3_at_least: 0.5,
            referable_at_least: 0.5,
            r3_second_look: Some(R3SecondLook { from: 0.05, at_least: 0.4 }),
            ..Default::default()
        };
        let r2 = [0.1, 0.1, 0.6, 0.2, 0.0, 0.9];
        let grade = |p: &[f32; 6], look: Option<LookAnswer>| c.grade_looked(&idx(), p, look.as_ref());
        let seen = grade(&r2, Some(LookAnswer::Scored(0.7)));
        assert_eq!((seen.grade.to_string().as_str(), seen.looked), ("R3M0", Some(Looked::Scored(0.7))));
        assert_eq!(grade(&r2, Some(LookAnswer::Scored(0.1))).grade.to_string(), "R2M0");
        // No answer never rules the finding out.
        assert_eq!(grade(&r2, Some(LookAnswer::Failed("gone".into()))).grade.to_string(), "R3M0");
        assert_eq!(grade(&r2, None).looked, Some(Looked::NoAnswer));
        // Outside the band the look is neither needed nor recorded.
        let sure = grade(&[0.0, 0.0, 0.3, 0.7, 0.0, 0.9], Some(LookAnswer::Scored(0.0)));
        assert_eq!((sure.grade.to_string().as_str(), sure.looked), ("R3M0", None));
        let low = grade(&[0.1, 0.1, 0.78, 0.02, 0.0, 0.9], Some(LookAnswer::Scored(0.9)));
        assert_eq!((low.grade.to_string().as_str(), low.looked), ("R2M0", None));
        // Without the rule a look changes nothing.
        let plain = DespConfig { r3_second_look: None, ..c };
        assert_eq!(plain.grade_looked(&idx(), &r2, Some(&LookAnswer::Scored(0.9))).grade.to_string(), "R2M0");
    }

    #[test]
    fn the_reason_says_when_a_second_look_made_the_eye_r3() {
        let c = DespConfig { r3_second_look: Some(R3SecondLook { from: 0.05, at_least: 0.4 }), ..Default::default() };
        let at = |look: Option<LookAnswer>, eye| Field {
            eye,
            field: FundusField::Disc,
            grade: c.grade_looked(&idx(), &[0.1, 0.1, 0.6, 0.2, 0.0, 0.9], look.as_ref()),
        };
        let eyes = grade_eyes(&[at(Some(LookAnswer::Scored(0.83)), Laterality::Right)]);
        let (outcome, _, reason) = study_outcome(&eyes, "not a fundus", "new vessels");
        assert_eq!(outcome, Outcome::Urgent);
        assert!(reason.starts_with("R3 suspected: new vessels on a second look, p=0.83 (p(r3)=0.20)"), "{reason}");
        let eyes = grade_eyes(&[at(None, Laterality::Left)]);
        let (_, _, reason) = study_outcome(&eyes, "not a fundus", "new vessels");
        assert!(
            reason.starts_with("R3 not ruled out: p(r3)=0.20 and the second look for new vessels gave no answer"),
            "{reason}"
        );
    }

    fn field(eye: Laterality, name: FundusField, probs: [f32; 6]) -> Field {
        Field { eye, field: name, grade: DespConfig::default().grade(&idx(), &probs) }
    }

    fn labels(eyes: &[EyeAssessment]) -> Vec<String> {
        eyes.iter().map(|e| e.grade.to_string()).collect()
    }

    use FundusField::{Disc, Macula};
    use Laterality::{Left, Right};

    #[test]
    fn equally_ungradable_fields_give_the_same_decisive_field_in_any_order() {
        let macula = field(Right, Macula, [0.9, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let disc = field(Right, Disc, [0.9, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let one = grade_eyes(&[macula.clone(), disc.clone()]);
        let other = grade_eyes(&[disc, macula]);
        assert_eq!(one[0].grade, Grade::Ungradable);
        assert_eq!(one[0].decisive.field, other[0].decisive.field);
    }

    #[test]
    fn image_grades_follow_the_thresholds() {
        let c = DespConfig::default();
        let label = |p: [f32; 6]| c.grade(&idx(), &p).grade.to_string();
        assert_eq!(label([0.9, 0.05, 0.03, 0.02, 0.1, 0.9]), "R0M0");
        assert_eq!(label([0.2, 0.7, 0.05, 0.05, 0.1, 0.9]), "R1M0");
        assert_eq!(label([0.1, 0.2, 0.6, 0.1, 0.7, 0.9]), "R2M1");
        assert_eq!(label([0.0, 0.0, 0.2, 0.8, 0.0, 0.9]), "R3M0");
        assert_eq!(label([0.0, 0.0, 0.2, 0.8, 0.0, 0.1]), "U");
        let unsure = c.grade(&idx(), &[0.6, 0.0, 0.2, 0.2, 0.0, 0.9]);
        assert!(unsure.unsure && unsure.grade.retinopathy() == Some(RGrade::R0), "{unsure:?}");
    }

    #[test]
    fn the_worst_gradable_field_decides_the_eye_and_no_gradable_field_is_u() {
        let eyes = grade_eyes(&[
            field(Right, Macula, [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
            field(Right, Disc, [0.0, 0.0, 0.1, 0.9, 0.0, 0.9]),
            field(Left, Macula, [0.0, 0.0, 0.1, 0.9, 0.0, 0.1]),
            field(Left, Disc, [0.0, 0.0, 0.1, 0.9, 0.0, 0.2]),
        ]);
        assert_eq!(labels(&eyes), ["U", "R3M0"]);
        assert_eq!(eyes[1].decisive.field, Disc);
    }

    #[test]
    fn the_worse_eye_decides_the_study_and_the_reason_says_where() {
        let eyes = grade_eyes(&[
            field(Left, Disc, [0.0, 0.0, 0.09, 0.91, 0.0, 0.95]),
            field(Right, Macula, [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
        ]);
        let (outcome, score, reason) = study_outcome(&eyes, "not a fundus photograph", "new vessels");
        assert_eq!(outcome.name(), "URGENT");
        assert!((score - 0.91).abs() < 1e-6);
        assert_eq!(reason, "R3 suspected, p=0.91, left eye, disc field; other eye R0M0");
        let eyes = grade_eyes(&[
            field(Left, Macula, [0.0, 0.0, 0.1, 0.9, 0.0, 0.1]),
            field(Right, Macula, [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
        ]);
        assert_eq!(study_outcome(&eyes, "not a fundus photograph", "new vessels").0.name(), "UNGRADABLE");
        let eyes = grade_eyes(&[
            field(Left, Macula, [0.95, 0.02, 0.02, 0.01, 0.1, 0.9]),
            field(Right, Macula, [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
        ]);
        let (outcome, _, reason) = study_outcome(&eyes, "not a fundus photograph", "new vessels");
        assert_eq!(outcome.name(), "NO_DISEASE");
        assert!(reason.starts_with("R0M0 in both eyes"), "{reason}");
    }

    #[test]
    fn the_grader_places_a_study_in_the_configured_band_and_reports_each_eye() {
        // The DESP bands in another order than BANDS: the band is looked up, not assumed.
        let bands = Bands::new(["NO_DISEASE", "REVIEW", "UNGRADABLE", "ROUTINE", "URGENT"].map(String::from).to_vec());
        let grader = DespGrader::new(crate::model::ModelId::new(0), idx(), DespConfig::default(), &bands, words());
        assert!(
            grader.grade(crate::model::ModelId::new(1), &[0.0; 6], false, None).is_none(),
            "another model's image is not graded"
        );
        let fields = [
            field(Left, Disc, [0.0, 0.0, 0.09, 0.91, 0.0, 0.95]),
            field(Right, Macula, [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
        ];
        let study = grader.study(&fields);
        let (band, _, _) = study.placed.expect("graded");
        assert_eq!(bands.name(band), "URGENT");
        assert_eq!(study.left.map(|e| e.grade.to_string()).as_deref(), Some("R3M0"));
        assert_eq!(study.right.map(|e| e.grade.to_string()).as_deref(), Some("R0M0"));
        let unreadable = Field { eye: Right, field: Macula, grade: ImageGrade::unreadable() };
        let only_unreadable = grader.study(&[unreadable]);
        assert!(only_unreadable.placed.is_none(), "nothing graded: the rules place it");
        assert_eq!(only_unreadable.right.map(|e| e.grade), Some(Grade::Ungradable));
    }

    fn outside(eye: Laterality, name: FundusField) -> Field {
        Field { eye, field: name, grade: ImageGrade::outside_domain() }
    }

    #[test]
    fn an_eye_is_outside_the_domain_only_when_no_field_of_it_was_recognised() {
        let eyes = grade_eyes(&[
            outside(Right, Macula),
            outside(Right, Disc),
            outside(Left, Macula),
            field(Left, Disc, [0.0, 0.0, 0.1, 0.9, 0.0, 0.1]),
        ]);
        assert_eq!(labels(&eyes), ["U", "OOD"], "left: one ungradable fundus field makes it U");
        let eyes = grade_eyes(&[outside(Right, Macula), field(Right, Disc, [0.9, 0.05, 0.03, 0.02, 0.1, 0.9])]);
        assert_eq!(labels(&eyes), ["R0M0"], "a gradable field grades the eye");
    }

    #[test]
    fn a_study_outside_the_domain_is_reviewed_with_the_cards_words_never_graded() {
        let words = "not recognised as a fundus photograph";
        let (outcome, score, reason) =
            study_outcome(&grade_eyes(&[outside(Right, Macula), outside(Left, Macula)]), words, "new vessels");
        assert_eq!((outcome.name(), score), ("REVIEW", 0.0));
        assert_eq!(
            reason,
            "outside the model's domain — not recognised as a fundus photograph, left eye, macula field; \
             other eye not graded (outside the model's domain — not recognised as a fundus photograph)"
        );
        // An eye with no disease does not hide the other eye's problem ...
        let eyes = grade_eyes(&[outside(Right, Macula), field(Left, Macula, [0.95, 0.02, 0.02, 0.01, 0.1, 0.9])]);
        let (outcome, _, reason) = study_outcome(&eyes, words, "new vessels");
        assert_eq!(outcome.name(), "REVIEW");
        assert!(reason.starts_with("outside the model's domain — not recognised"), "{reason}");
        assert!(reason.ends_with("other eye R0M0"), "{reason}");
        // ... and a referable eye still decides the study.
        let eyes = grade_eyes(&[outside(Right, Macula), field(Left, Disc, [0.0, 0.0, 0.09, 0.91, 0.0, 0.95])]);
        let (outcome, _, reason) = study_outcome(&eyes, words, "new vessels");
        assert_eq!(outcome.name(), "URGENT");
        assert!(
            reason
                .ends_with("other eye not graded (outside the model's domain — not recognised as a fundus photograph)"),
            "{reason}"
        );
        // Ungradable (quality) outranks outside (domain), and says so in its own words.
        let eyes = grade_eyes(&[outside(Right, Macula), field(Left, Macula, [0.0, 0.0, 0.1, 0.9, 0.0, 0.1])]);
        let (outcome, _, reason) = study_outcome(&eyes, words, "new vessels");
        assert_eq!(outcome.name(), "UNGRADABLE");
        assert!(reason.starts_with("ungradable: no gradable field"), "{reason}");
    }

    #[test]
    fn the_grader_never_grades_an_image_outside_the_domain_and_places_its_study() {
        let bands = Bands::new(BANDS.map(String::from).to_vec());
        let grader = DespGrader::new(crate::model::ModelId::new(0), idx(), DespConfig::default(), &bands, words());
        let sure_r3 = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let graded = grader.grade(crate::model::ModelId::new(0), &sure_r3, false, None).expect("DR model");
        assert_eq!(graded.grade.to_string(), "R3M1");
        let outside = grader.grade(crate::model::ModelId::new(0), &sure_r3, true, None).expect("DR model");
        assert_eq!(outside, ImageGrade::outside_domain());
        let study = grader.study(&[Field { eye: Right, field: Macula, grade: outside }]);
        let (band, _, reason) = study.placed.expect("placed by the programme, not the generic rules");
        assert_eq!(bands.name(band), "REVIEW");
        assert!(reason.starts_with("outside the model's domain — not a fundus"), "{reason}");
        assert_eq!(study.right.map(|e| e.grade), Some(Grade::OutOfDomain));
    }

    #[test]
    fn desp_band_names_have_their_colours_and_others_none() {
        for band in BANDS {
            assert!(colour_class(band).is_some_and(|c| c.starts_with("band-")), "{band}");
        }
        assert_eq!(colour_class("NO_FINDING"), None);
    }
}
