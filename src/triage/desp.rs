//! English Diabetic Eye Screening Programme (DESP) grading.
//!
//! Per image, the DR model's probabilities become a grade (R0–R3, M0/M1,
//! gradable or not); per eye the worst *gradable* field wins and an eye
//! with no gradable field is U; per study the worse eye decides the
//! outcome. Thresholds are the programme's operating point, so they live in
//! the config (`[triage.desp]`), with defaults from the held-out evaluation
//! in the model card.

use serde::{Deserialize, Serialize};

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
        }
    }
}

/// The five DESP worklist bands, most urgent first.
pub const BANDS: [&str; 5] = ["URGENT", "ROUTINE", "UNGRADABLE", "REVIEW", "NO_DISEASE"];
const URGENT: usize = 0;
const ROUTINE: usize = 1;
const UNGRADABLE: usize = 2;
const REVIEW: usize = 3;
const NO_DISEASE: usize = 4;

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
    pub gradable: bool,
    /// 0..=3 for R0..R3 (meaningless when not gradable).
    pub r: u8,
    pub m1: bool,
    pub unsure: bool,
    pub p_gradable: f32,
    pub p_r3: f32,
    pub p_referable: f32,
    pub p_m1: f32,
    pub p_any_dr: f32,
}

impl ImageGrade {
    /// "R2M1", "R0M0" or "U".
    pub fn label(&self) -> String {
        if self.gradable {
            format!("R{}M{}", self.r, u8::from(self.m1))
        } else {
            "U".into()
        }
    }
}

impl DespConfig {
    /// Grades one image from the model's outputs.
    pub fn grade(&self, idx: &Outputs, out: &[f32]) -> ImageGrade {
        let p = |i: usize| out.get(i).copied().unwrap_or(0.0);
        let (p1, p2, p3) = (p(idx.r[1]), p(idx.r[2]), p(idx.r[3]));
        let p_referable = p2 + p3;
        let p_any_dr = p1 + p2 + p3;
        let p_m1 = p(idx.m1);
        let p_gradable = p(idx.gradable);
        let r = if p3 >= self.r3_at_least {
            3
        } else if p_referable >= self.referable_at_least {
            2
        } else if p_any_dr >= self.any_dr_at_least {
            1
        } else {
            0
        };
        let m1 = p_m1 >= self.m1_at_least;
        let near = |p: f32, t: f32| p < t && p >= t - self.unsure_margin;
        let unsure = r < 2
            && !m1
            && (near(p_referable, self.referable_at_least)
                || near(p_m1, self.m1_at_least)
                || near(p3, self.r3_at_least));
        ImageGrade {
            gradable: p_gradable >= self.gradable_at_least,
            r,
            m1,
            unsure,
            p_gradable,
            p_r3: p3,
            p_referable,
            p_m1,
            p_any_dr,
        }
    }
}

/// The grade of a field whose file could not be read: ungradable.
pub fn unreadable() -> ImageGrade {
    ImageGrade {
        gradable: false,
        r: 0,
        m1: false,
        unsure: false,
        p_gradable: 0.0,
        p_r3: 0.0,
        p_referable: 0.0,
        p_m1: 0.0,
        p_any_dr: 0.0,
    }
}

/// One graded image with where it was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Field {
    /// "R", "L" or "" when the header has no laterality.
    pub eye: String,
    /// "macula", "disc" or "".
    pub field: String,
    pub grade: ImageGrade,
}

/// One eye's grade: the worst gradable field.
#[derive(Debug, Clone)]
pub struct EyeGrade {
    pub eye: String,
    pub ungradable: bool,
    pub r: u8,
    pub m1: bool,
    pub unsure: bool,
    /// The field that decided the grade (the worst gradable one, or the
    /// least ungradable when none is gradable).
    pub decisive: Field,
    pub probs: EyeProbs,
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
            fields.iter().filter(|x| x.grade.gradable).map(|x| f(&x.grade)).reduce(f32::max)
        };
        Self {
            referable: top(|g| g.p_referable),
            r3: top(|g| g.p_r3),
            m1: top(|g| g.p_m1),
            gradable: fields.iter().map(|x| x.grade.p_gradable).fold(0.0, f32::max),
        }
    }
}

impl EyeGrade {
    pub fn label(&self) -> String {
        if self.ungradable {
            "U".into()
        } else {
            format!("R{}M{}", self.r, u8::from(self.m1))
        }
    }
}

fn severity(g: &ImageGrade) -> (u8, bool, u8, f32) {
    // R3 outranks M1, M1 outranks R2 only on ties of R; then unsure; then strength.
    (g.r, g.m1, u8::from(g.unsure), g.p_referable.max(g.p_m1))
}

/// Grades each eye from its fields.
pub fn grade_eyes(fields: &[Field]) -> Vec<EyeGrade> {
    let mut eyes: Vec<String> = fields.iter().map(|f| f.eye.clone()).collect();
    eyes.sort();
    eyes.dedup();
    eyes.into_iter()
        .filter_map(|eye| {
            let mut of_eye: Vec<&Field> = fields.iter().filter(|f| f.eye == eye).collect();
            // Fields arrive in whatever order decode finished them; ties
            // (two fields equally ungradable) must not depend on that.
            of_eye.sort_by(|a, b| {
                a.field
                    .cmp(&b.field)
                    .then(a.grade.p_gradable.total_cmp(&b.grade.p_gradable))
                    .then(a.grade.p_referable.total_cmp(&b.grade.p_referable))
            });
            let probs = EyeProbs::of(&of_eye);
            let gradable = of_eye.iter().filter(|f| f.grade.gradable);
            match gradable
                .max_by(|a, b| severity(&a.grade).partial_cmp(&severity(&b.grade)).unwrap_or(std::cmp::Ordering::Equal))
            {
                Some(worst) => Some(EyeGrade {
                    eye,
                    ungradable: false,
                    r: worst.grade.r,
                    m1: of_eye.iter().any(|f| f.grade.gradable && f.grade.m1),
                    unsure: of_eye.iter().any(|f| f.grade.gradable && f.grade.unsure),
                    decisive: (*worst).clone(),
                    probs,
                }),
                None => {
                    let best = of_eye.iter().max_by(|a, b| a.grade.p_gradable.total_cmp(&b.grade.p_gradable))?;
                    Some(EyeGrade {
                        eye,
                        ungradable: true,
                        r: 0,
                        m1: false,
                        unsure: false,
                        decisive: (*best).clone(),
                        probs,
                    })
                }
            }
        })
        .collect()
}

/// A study's DESP outcome: band index into [`BANDS`], risk within the band, reason.
pub fn study_outcome(eyes: &[EyeGrade]) -> (usize, f32, String) {
    let band_of = |e: &EyeGrade| {
        if e.ungradable {
            UNGRADABLE
        } else if e.r >= 3 {
            URGENT
        } else if e.r == 2 || e.m1 {
            ROUTINE
        } else if e.r == 1 || e.unsure {
            REVIEW
        } else {
            NO_DISEASE
        }
    };
    let risk = |e: &EyeGrade, band: usize| {
        let g = &e.decisive.grade;
        match band {
            URGENT => g.p_r3,
            ROUTINE => g.p_referable.max(g.p_m1),
            UNGRADABLE => 1.0 - g.p_gradable,
            REVIEW => g.p_any_dr.max(g.p_referable),
            _ => g.p_referable.max(g.p_m1),
        }
    };
    let Some(worst) = eyes
        .iter()
        .min_by(|a, b| band_of(a).cmp(&band_of(b)).then(risk(b, band_of(b)).total_cmp(&risk(a, band_of(a)))))
    else {
        return (UNGRADABLE, 1.0, "no DR-model result for this study".into());
    };
    let band = band_of(worst);
    let score = risk(worst, band);
    let g = &worst.decisive.grade;
    let what = match band {
        URGENT => format!("R3 suspected, p={:.2}", g.p_r3),
        ROUTINE if worst.m1 && worst.r < 2 => format!("M1 suspected, p={:.2}", g.p_m1),
        ROUTINE if worst.m1 => format!("R2 and M1 suspected, p={:.2}", g.p_referable.max(g.p_m1)),
        ROUTINE => format!("R2 suspected, p={:.2}", g.p_referable),
        UNGRADABLE => format!("ungradable: no gradable field, p(gradable)={:.2}", g.p_gradable),
        REVIEW if worst.r == 1 => format!("R1 suspected, p={:.2}", g.p_any_dr),
        REVIEW => format!("model unsure: p(referable)={:.2} close to the threshold", g.p_referable.max(g.p_m1)),
        _ => format!(
            "R0M0 in {}, highest p(referable)={:.2}",
            if eyes.len() > 1 { "both eyes" } else { "the eye seen" },
            score
        ),
    };
    let mut reason = what;
    if band != NO_DISEASE {
        let eye = match worst.eye.as_str() {
            "R" => "right eye",
            "L" => "left eye",
            _ => "eye not recorded",
        };
        reason.push_str(&format!(", {eye}"));
        if !worst.decisive.field.is_empty() {
            reason.push_str(&format!(", {} field", worst.decisive.field));
        }
    }
    let others: Vec<String> =
        eyes.iter().filter(|e| e.eye != worst.eye).map(|e| format!("other eye {}", e.label())).collect();
    if !others.is_empty() {
        reason.push_str(&format!("; {}", others.join(", ")));
    }
    if eyes.len() < 2 {
        reason.push_str("; only one eye imaged");
    }
    (band, score, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> Outputs {
        Outputs::find(&["r0", "r1", "r2", "r3", "m1", "gradable"].map(String::from)).expect("labels")
    }

    fn field(eye: &str, name: &str, probs: [f32; 6]) -> Field {
        Field { eye: eye.into(), field: name.into(), grade: DespConfig::default().grade(&idx(), &probs) }
    }

    #[test]
    fn equally_ungradable_fields_give_the_same_decisive_field_in_any_order() {
        let macula = field("R", "macula", [0.9, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let disc = field("R", "disc", [0.9, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let one = grade_eyes(&[macula.clone(), disc.clone()]);
        let other = grade_eyes(&[disc, macula]);
        assert!(one[0].ungradable);
        assert_eq!(one[0].decisive.field, other[0].decisive.field);
    }

    #[test]
    fn image_grades_follow_the_thresholds() {
        let c = DespConfig::default();
        assert_eq!(c.grade(&idx(), &[0.9, 0.05, 0.03, 0.02, 0.1, 0.9]).label(), "R0M0");
        assert_eq!(c.grade(&idx(), &[0.2, 0.7, 0.05, 0.05, 0.1, 0.9]).label(), "R1M0");
        assert_eq!(c.grade(&idx(), &[0.1, 0.2, 0.6, 0.1, 0.7, 0.9]).label(), "R2M1");
        assert_eq!(c.grade(&idx(), &[0.0, 0.0, 0.2, 0.8, 0.0, 0.9]).label(), "R3M0");
        assert_eq!(c.grade(&idx(), &[0.0, 0.0, 0.2, 0.8, 0.0, 0.1]).label(), "U");
        let unsure = c.grade(&idx(), &[0.6, 0.0, 0.2, 0.2, 0.0, 0.9]);
        assert!(unsure.unsure && unsure.r == 0, "{unsure:?}");
    }

    #[test]
    fn the_worst_gradable_field_decides_the_eye_and_no_gradable_field_is_u() {
        let eyes = grade_eyes(&[
            field("R", "macula", [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
            field("R", "disc", [0.0, 0.0, 0.1, 0.9, 0.0, 0.9]),
            field("L", "macula", [0.0, 0.0, 0.1, 0.9, 0.0, 0.1]),
            field("L", "disc", [0.0, 0.0, 0.1, 0.9, 0.0, 0.2]),
        ]);
        assert_eq!(eyes.iter().map(EyeGrade::label).collect::<Vec<_>>(), ["U", "R3M0"]);
        assert_eq!(eyes[1].decisive.field, "disc");
    }

    #[test]
    fn the_worse_eye_decides_the_study_and_the_reason_says_where() {
        let eyes = grade_eyes(&[
            field("L", "disc", [0.0, 0.0, 0.09, 0.91, 0.0, 0.95]),
            field("R", "macula", [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
        ]);
        let (band, score, reason) = study_outcome(&eyes);
        assert_eq!(BANDS[band], "URGENT");
        assert!((score - 0.91).abs() < 1e-6);
        assert_eq!(reason, "R3 suspected, p=0.91, left eye, disc field; other eye R0M0");
        let eyes = grade_eyes(&[
            field("L", "macula", [0.0, 0.0, 0.1, 0.9, 0.0, 0.1]),
            field("R", "macula", [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
        ]);
        assert_eq!(BANDS[study_outcome(&eyes).0], "UNGRADABLE");
        let eyes = grade_eyes(&[
            field("L", "macula", [0.95, 0.02, 0.02, 0.01, 0.1, 0.9]),
            field("R", "macula", [0.9, 0.05, 0.03, 0.02, 0.1, 0.9]),
        ]);
        let (band, _, reason) = study_outcome(&eyes);
        assert_eq!(BANDS[band], "NO_DISEASE");
        assert!(reason.starts_with("R0M0 in both eyes"), "{reason}");
    }
}
