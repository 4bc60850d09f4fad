//! What each synthetic study is before any pixel exists: the patient, the
//! headers, the UIDs and, per eye, the intended grade and any image-quality
//! defect. Drawn from one seeded stream per study, so a study's plan does
//! not depend on how many studies come before it or on thread scheduling.
//!
//! Prevalence is enriched for training, not realistic for a screening
//! population (where about 70 % of eyes are R0M0). Per eye, before
//! gradability: R0 55 %, R1 22 %, R2 14 %, R3 9 %; M1 in 20 % of eyes
//! with R1 or worse (≈ 9 % of all eyes). The second eye copies the first
//! eye's grade with probability 0.6 and is otherwise drawn afresh, which
//! keeps the per-eye marginals while making disease mostly bilateral.
//! Image quality: 4.5 % of eyes are "poor eyes" (small pupil or media
//! opacity) whose two fields are both ungradable; each other image fails
//! on its own (blur, too dark, over-exposed) with probability 2 %. That
//! makes ≈ 6.4 % of images and ≈ 4.5 % of eyes ungradable.

use super::rng::Rng;

/// Per-eye R grade weights: R0, R1, R2, R3.
pub const R_WEIGHTS: [f32; 4] = [0.55, 0.22, 0.14, 0.09];
/// Per-eye R grade weights (R0, R1, R2, R3), normalised to sum to 1: the
/// default is [`R_WEIGHTS`]. A training batch may enrich a grade (e.g. a
/// second-look model that needs many R3 eyes); evaluation batches keep the
/// default, whose figures the card reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradeMix([f32; 4]);

impl Default for GradeMix {
    fn default() -> Self {
        Self(R_WEIGHTS)
    }
}

impl std::str::FromStr for GradeMix {
    type Err = String;

    /// Four comma-separated non-negative weights, R0 to R3.
    fn from_str(s: &str) -> Result<Self, String> {
        let w: Vec<f32> = s
            .split(',')
            .map(|v| v.trim().parse::<f32>().map_err(|e| format!("{v:?} is not a weight: {e}")))
            .collect::<Result<_, _>>()?;
        let [r0, r1, r2, r3] = w[..] else {
            return Err(format!("expected four weights R0,R1,R2,R3, got {}", w.len()));
        };
        let sum = r0 + r1 + r2 + r3;
        if w.iter().any(|v| !v.is_finite() || *v < 0.0) || sum <= 0.0 {
            return Err("weights must be non-negative and not all zero".into());
        }
        Ok(Self([r0 / sum, r1 / sum, r2 / sum, r3 / sum]))
    }
}

/// Probability of maculopathy in an eye with R1 or worse.
pub const M1_GIVEN_DR: f32 = 0.20;
/// Probability that the second eye copies the first eye's grades.
pub const SAME_AS_OTHER_EYE: f32 = 0.6;
/// Probability that an eye cannot be photographed well at all.
pub const POOR_EYE: f32 = 0.045;
/// Probability that one image of an otherwise good eye fails.
pub const IMAGE_FAILURE: f32 = 0.02;

/// Right or left eye, as ImageLaterality writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eye {
    Right,
    Left,
}

impl Eye {
    pub fn code(self) -> &'static str {
        match self {
            Eye::Right => "R",
            Eye::Left => "L",
        }
    }
}

/// The two DESP fields per eye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Field 1: centred on the fovea.
    Macula,
    /// Field 2: centred on the optic disc.
    Disc,
}

impl Field {
    /// The value written to SeriesDescription (and truth files).
    pub fn code(self) -> &'static str {
        match self {
            Field::Macula => "MACULA",
            Field::Disc => "DISC",
        }
    }

    /// DESP field number.
    pub fn number(self) -> u8 {
        match self {
            Field::Macula => 1,
            Field::Disc => 2,
        }
    }
}

/// Why an image cannot be graded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// Out of focus or eye movement.
    Blur,
    /// Under-exposed.
    Dark,
    /// Over-exposed, washed out by flare.
    Bright,
    /// Undilated or small pupil: only the centre of the field is lit.
    SmallPupil,
    /// Cataract or other media opacity: haze and blur over the whole field.
    Opacity,
}

impl Defect {
    pub fn code(self) -> &'static str {
        match self {
            Defect::Blur => "blur",
            Defect::Dark => "dark",
            Defect::Bright => "overexposed",
            Defect::SmallPupil => "small_pupil",
            Defect::Opacity => "media_opacity",
        }
    }
}

/// One image to render.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    pub field: Field,
    pub defect: Option<Defect>,
    pub series_uid: String,
    pub sop_uid: String,
    pub series_number: u32,
}

/// One eye: its latent disease (what the retina holds) and its two images.
#[derive(Debug, Clone)]
pub struct EyePlan {
    pub eye: Eye,
    /// Intended R grade 0..=3 of the retina.
    pub r: u8,
    pub m1: bool,
    pub images: [ImagePlan; 2],
    /// Seed for the anatomy and lesions of this eye.
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct Patient {
    pub name: String,
    pub id: String,
    pub birth_date: String,
    pub sex: &'static str,
}

/// One study: one patient, two eyes, four images.
#[derive(Debug, Clone)]
pub struct StudyPlan {
    pub index: usize,
    pub patient: Patient,
    pub study_uid: String,
    pub study_id: String,
    pub accession: String,
    /// DA, `YYYYMMDD`.
    pub date: String,
    /// TM, `HHMMSS`.
    pub time: String,
    pub eyes: [EyePlan; 2],
}

const FAMILY: &[&str] = &[
    "SMITH", "JONES", "TAYLOR", "BROWN", "WILLIAMS", "WILSON", "JOHNSON", "DAVIES", "PATEL", "WRIGHT", "ROBINSON",
    "THOMPSON", "EVANS", "WALKER", "WHITE", "ROBERTS", "GREEN", "HALL", "KHAN", "WOOD", "HUGHES", "CLARKE", "LEWIS",
    "EDWARDS", "HUSSAIN", "MARTIN", "OKAFOR", "NGUYEN", "SINGH", "COOPER",
];
const GIVEN_F: &[&str] = &[
    "MARGARET", "SUSAN", "PATRICIA", "FATIMA", "LINDA", "JEAN", "CAROL", "AMINA", "PRIYA", "HELEN", "SARAH", "JOY",
    "GRACE", "ANNE", "MEI",
];
const GIVEN_M: &[&str] = &[
    "JOHN", "DAVID", "MICHAEL", "PETER", "MOHAMMED", "RAJ", "JAMES", "ROBERT", "PAUL", "KWAME", "STEPHEN", "ALAN",
    "TARIQ", "WEI", "GEORGE",
];

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm); kept
/// here so no wall-clock or time-zone code is anywhere near the output.
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) as i32 / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

fn da(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}")
}

/// A `2.25.` UID from a random UUID (PS3.5 B.2).
pub fn uid(rng: &mut Rng) -> String {
    format!("2.25.{}", rng.uuid())
}

fn draw_r(rng: &mut Rng, mix: &GradeMix) -> u8 {
    let u = rng.f32();
    let mut acc = 0.0;
    for (g, w) in mix.0.iter().enumerate() {
        acc += w;
        if u < acc {
            return g as u8;
        }
    }
    3
}

fn draw_grades(rng: &mut Rng, mix: &GradeMix) -> (u8, bool) {
    let r = draw_r(rng, mix);
    let m1 = r >= 1 && rng.chance(M1_GIVEN_DR);
    (r, m1)
}

impl StudyPlan {
    /// The patient's age in whole years on the study date (from the DA
    /// strings, so nothing but the plan decides it).
    pub fn age_years(&self) -> u32 {
        let num = |s: &str, r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
        let (sy, smd) = (num(&self.date, 0..4), num(&self.date, 4..8));
        let (by, bmd) = (num(&self.patient.birth_date, 0..4), num(&self.patient.birth_date, 4..8));
        (sy - by - i32::from(smd < bmd)).max(0) as u32
    }

    /// Plans study `index` of the data set made with `seed`.
    pub fn new(seed: u64, index: usize) -> Self {
        Self::with_mix(seed, index, &GradeMix::default())
    }

    /// As [`StudyPlan::new`], drawing each eye's R grade from `mix`.
    pub fn with_mix(seed: u64, index: usize, mix: &GradeMix) -> Self {
        let root = Rng::new(seed).fork(index as u64);
        let mut rng = root.fork(1);
        let sex = if rng.chance(0.5) { "F" } else { "M" };
        let given = rng.pick(if sex == "F" { GIVEN_F } else { GIVEN_M });
        let family = rng.pick(FAMILY);
        // Screening days in 2026, working hours; ages 25–89, skewed old as
        // type 2 diabetes is.
        let study_day = days_from_civil(2026, 1, 5) + rng.int(0, 300) as i32;
        let age_years = 25.0 + 64.0 * rng.f32().sqrt();
        let birth = study_day - (age_years * 365.25) as i32;
        let minutes = 8 * 60 + rng.int(0, 9 * 60 + 30);
        let seconds = rng.int(0, 59);
        let patient = Patient {
            name: format!("{family}^{given}"),
            id: format!("NS{:08}", rng.int(0, 99_999_999)),
            birth_date: da(birth),
            sex,
        };
        let study_uid = uid(&mut rng);
        let accession = format!("DES{:07}", rng.int(0, 9_999_999));
        let first = draw_grades(&mut rng, mix);
        let second = if rng.chance(SAME_AS_OTHER_EYE) { first } else { draw_grades(&mut rng, mix) };
        let mut series_number = 0;
        let mut eye = |eye: Eye, (r, m1): (u8, bool), rng: &mut Rng| {
            let poor = rng.chance(POOR_EYE).then(|| if rng.chance(0.6) { Defect::SmallPupil } else { Defect::Opacity });
            let mut image = |field: Field, rng: &mut Rng| {
                let own = rng.chance(IMAGE_FAILURE).then(|| *rng.pick(&[Defect::Blur, Defect::Dark, Defect::Bright]));
                series_number += 1;
                ImagePlan { field, defect: poor.or(own), series_uid: uid(rng), sop_uid: uid(rng), series_number }
            };
            let images = [image(Field::Macula, rng), image(Field::Disc, rng)];
            EyePlan { eye, r, m1, images, seed: rng.next_u64() }
        };
        let eyes = [eye(Eye::Right, first, &mut rng), eye(Eye::Left, second, &mut rng)];
        StudyPlan {
            index,
            patient,
            study_uid,
            study_id: format!("{}", index + 1),
            accession,
            date: da(study_day),
            time: format!("{:02}{:02}{:02}", minutes / 60, minutes % 60, seconds),
            eyes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(da(days_from_civil(2026, 2, 28) + 1), "20260301");
        assert_eq!(da(days_from_civil(2024, 2, 28) + 1), "20240229");
    }

    #[test]
    fn plans_are_deterministic_and_distinct() {
        let a = StudyPlan::new(1, 5);
        let b = StudyPlan::new(1, 5);
        assert_eq!(a.study_uid, b.study_uid);
        assert_eq!(a.eyes[1].images[1].sop_uid, b.eyes[1].images[1].sop_uid);
        assert_ne!(a.study_uid, StudyPlan::new(1, 6).study_uid);
        assert_ne!(a.study_uid, StudyPlan::new(2, 5).study_uid);
        assert!(a.study_uid.starts_with("2.25.") && a.study_uid.len() <= 64);
    }

    #[test]
    fn a_grade_mix_enriches_and_is_checked() {
        let mix: GradeMix = "0, 0, 1, 3".parse().unwrap();
        let eyes: Vec<u8> = (0..500).flat_map(|i| StudyPlan::with_mix(9, i, &mix).eyes.map(|e| e.r)).collect();
        assert!(eyes.iter().all(|&r| r >= 2));
        let r3 = eyes.iter().filter(|&&r| r == 3).count() as f32 / eyes.len() as f32;
        assert!((0.7..0.8).contains(&r3), "{r3}");
        // The default mix is the documented one, so default batches keep their bytes.
        assert_eq!(StudyPlan::with_mix(9, 3, &GradeMix::default()).study_uid, StudyPlan::new(9, 3).study_uid);
        for bad in ["1,2,3", "1,2,3,x", "0,0,0,0", "1,-1,1,1"] {
            assert!(bad.parse::<GradeMix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prevalence_is_close_to_the_documented_figures() {
        let n = 4000;
        let mut r = [0usize; 4];
        let mut poor_images = 0;
        for i in 0..n {
            let s = StudyPlan::new(9, i);
            for e in &s.eyes {
                r[e.r as usize] += 1;
                poor_images += e.images.iter().filter(|im| im.defect.is_some()).count();
            }
        }
        let eyes = (2 * n) as f32;
        for (g, w) in R_WEIGHTS.iter().enumerate() {
            assert!((r[g] as f32 / eyes - w).abs() < 0.02, "R{g}: {}", r[g]);
        }
        let rate = poor_images as f32 / (2.0 * eyes);
        assert!((0.05..0.08).contains(&rate), "{rate}");
    }
}
