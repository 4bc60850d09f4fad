//! The answer key: per-eye and per-image grades and the per-study outcome,
//! written as `truth.csv` and `truth_images.csv` beside the studies.
//!
//! `truth.csv` — one row per eye: `study_uid, patient_id, eye (R/L),
//! r_grade (R0–R3 or U), m_grade (M0/M1 or U), gradable (true/false),
//! outcome` (the study's outcome, repeated on both rows).
//! `truth_images.csv` — one row per image: `study_uid, sop_instance_uid,
//! eye, field (MACULA/DISC), r_grade, m_grade, gradable, path` (relative to
//! the output folder, `/`-separated) and `defect` (empty, or why the image
//! is ungradable: blur, dark, overexposed, small_pupil, media_opacity).
//!
//! Files made by generator v2 add a last column `generator` (`v2`) to
//! both files, and to `truth_images.csv` the camera of each image:
//! `camera, width, height, encoding (jpeg/native_rgb), field_deg, mask`
//! (`circle`, `clipped`, `rectangle`, with `+notch` and `+text` when the
//! field has notches or burnt-in text) and `fundus` (blond, orange, brown,
//! tigroid). v1 files keep today's columns byte for byte: a file without a
//! `generator` column was made by v1.
//!
//! Generator v2 also writes `truth_lesions.csv` — one row per lesion per
//! image, for studying what a model misses: `sop_instance_uid, kind`
//! ([`super::retina::LesionKind::code`]), `x, y` (its centre in the image,
//! pixels; it may lie outside), `in_field` (the centre is in the lit
//! field), `visible` (a grader could see it there: [`super::visibility`]),
//! `counts` (it counts towards the image's grade: in the field, visible,
//! and the image gradable) and `contrast` (its drawn strength, 0–1).
//!
//! An image's grade is what that field shows (lesions outside its field of
//! view do not count); an eye's grade is the worst of its gradable fields,
//! and U when neither is gradable (the DESP rule). The study outcome is the
//! more urgent eye's, in the order URGENT (R3) > ROUTINE (R2 or M1) >
//! UNGRADABLE (U) > REVIEW (R1) > NO_DISEASE (R0M0).

use std::path::Path;

use super::{GeneratorVersion, SynthError};

/// DESP grade of one image or eye; `None` means ungradable (U).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grade(pub Option<(u8, bool)>);

impl Grade {
    pub fn r(self) -> String {
        self.0.map_or("U".into(), |(r, _)| format!("R{r}"))
    }

    pub fn m(self) -> String {
        self.0.map_or("U".into(), |(_, m)| if m { "M1" } else { "M0" }.into())
    }

    /// The worse of two grades, ignoring ungradable ones.
    pub fn worst_gradable(a: Grade, b: Grade) -> Grade {
        match (a.0, b.0) {
            (Some((ra, ma)), Some((rb, mb))) => Grade(Some((ra.max(rb), ma || mb))),
            (Some(g), None) | (None, Some(g)) => Grade(Some(g)),
            (None, None) => Grade(None),
        }
    }
}

/// Study outcome, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    NoDisease,
    Review,
    Ungradable,
    Routine,
    Urgent,
}

impl Outcome {
    pub fn of_eye(g: Grade) -> Outcome {
        match g.0 {
            None => Outcome::Ungradable,
            Some((3, _)) => Outcome::Urgent,
            Some((2, _)) | Some((_, true)) => Outcome::Routine,
            Some((1, false)) => Outcome::Review,
            Some(_) => Outcome::NoDisease,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Urgent => "URGENT",
            Outcome::Routine => "ROUTINE",
            Outcome::Ungradable => "UNGRADABLE",
            Outcome::Review => "REVIEW",
            Outcome::NoDisease => "NO_DISEASE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImageTruth {
    pub sop_uid: String,
    pub eye: &'static str,
    pub field: &'static str,
    pub grade: Grade,
    pub path: String,
    pub defect: &'static str,
    /// The camera that took it (v2 only).
    pub camera: Option<CameraTruth>,
    /// Every lesion of the eye as this image shows it (v2 only).
    pub lesions: Vec<LesionTruth>,
}

/// One lesion in one v2 image, as `truth_lesions.csv` records it.
#[derive(Debug, Clone)]
pub struct LesionTruth {
    pub kind: &'static str,
    /// Centre in image pixels.
    pub x: f32,
    pub y: f32,
    pub in_field: bool,
    pub visible: bool,
    pub counts: bool,
    pub contrast: f32,
}

/// How a v2 image was taken, as `truth_images.csv` records it.
#[derive(Debug, Clone)]
pub struct CameraTruth {
    pub model: &'static str,
    pub width: u32,
    pub height: u32,
    pub encoding: &'static str,
    pub field_deg: f32,
    pub mask: String,
    pub fundus: &'static str,
}

#[derive(Debug, Clone)]
pub struct EyeTruth {
    pub eye: &'static str,
    pub grade: Grade,
}

#[derive(Debug, Clone)]
pub struct StudyTruth {
    pub study_uid: String,
    pub patient_id: String,
    pub eyes: Vec<EyeTruth>,
    pub images: Vec<ImageTruth>,
}

impl StudyTruth {
    pub fn outcome(&self) -> Outcome {
        self.eyes.iter().map(|e| Outcome::of_eye(e.grade)).max().unwrap_or(Outcome::Ungradable)
    }
}

/// Writes the truth files into `dir`, studies in index order.
///
/// # Errors
/// When a file cannot be created or written.
pub fn write(dir: &Path, studies: &[StudyTruth], generator: GeneratorVersion) -> Result<(), SynthError> {
    let v2 = generator == GeneratorVersion::V2;
    let csv_err = |name: &str| {
        let path = dir.join(name);
        move |source: csv::Error| SynthError::Truth { path: path.clone(), source }
    };
    let mut eyes = csv::Writer::from_path(dir.join("truth.csv")).map_err(csv_err("truth.csv"))?;
    let mut eye_header = vec!["study_uid", "patient_id", "eye", "r_grade", "m_grade", "gradable", "outcome"];
    let mut image_header =
        vec!["study_uid", "sop_instance_uid", "eye", "field", "r_grade", "m_grade", "gradable", "path", "defect"];
    if v2 {
        eye_header.push("generator");
        image_header.extend(["camera", "width", "height", "encoding", "field_deg", "mask", "fundus", "generator"]);
    }
    eyes.write_record(&eye_header).map_err(csv_err("truth.csv"))?;
    let mut images = csv::Writer::from_path(dir.join("truth_images.csv")).map_err(csv_err("truth_images.csv"))?;
    images.write_record(&image_header).map_err(csv_err("truth_images.csv"))?;
    for s in studies {
        let outcome = s.outcome().name();
        for e in &s.eyes {
            let gradable = e.grade.0.is_some().to_string();
            let (r, m) = (e.grade.r(), e.grade.m());
            let mut row = vec![s.study_uid.as_str(), s.patient_id.as_str(), e.eye, &r, &m, &gradable, outcome];
            if v2 {
                row.push(generator.name());
            }
            eyes.write_record(&row).map_err(csv_err("truth.csv"))?;
        }
        for i in &s.images {
            let gradable = i.grade.0.is_some().to_string();
            let (r, m) = (i.grade.r(), i.grade.m());
            let mut row: Vec<String> = [&s.study_uid, &i.sop_uid, i.eye, i.field, &r, &m, &gradable, &i.path, i.defect]
                .iter()
                .map(|v| v.to_string())
                .collect();
            if v2 {
                if let Some(c) = &i.camera {
                    row.extend([
                        c.model.to_string(),
                        c.width.to_string(),
                        c.height.to_string(),
                        c.encoding.to_string(),
                        format!("{:.1}", c.field_deg),
                        c.mask.clone(),
                        c.fundus.to_string(),
                    ]);
                } else {
                    row.extend(std::iter::repeat_n(String::new(), 7));
                }
                row.push(generator.name().to_string());
            }
            images.write_record(&row).map_err(csv_err("truth_images.csv"))?;
        }
    }
    eyes.flush().map_err(|e| csv_err("truth.csv")(e.into()))?;
    images.flush().map_err(|e| csv_err("truth_images.csv")(e.into()))?;
    if v2 {
        write_lesions(dir, studies)?;
    }
    Ok(())
}

fn write_lesions(dir: &Path, studies: &[StudyTruth]) -> Result<(), SynthError> {
    let name = "truth_lesions.csv";
    let err = |source: csv::Error| SynthError::Truth { path: dir.join(name), source };
    let mut out = csv::Writer::from_path(dir.join(name)).map_err(err)?;
    out.write_record(["sop_instance_uid", "kind", "x", "y", "in_field", "visible", "counts", "contrast"])
        .map_err(err)?;
    for image in studies.iter().flat_map(|s| &s.images) {
        for l in &image.lesions {
            let row = [
                image.sop_uid.clone(),
                l.kind.to_string(),
                format!("{:.1}", l.x),
                format!("{:.1}", l.y),
                l.in_field.to_string(),
                l.visible.to_string(),
                l.counts.to_string(),
                format!("{:.3}", l.contrast),
            ];
            out.write_record(&row).map_err(err)?;
        }
    }
    out.flush().map_err(|e| err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(r: u8, m: bool) -> Grade {
        Grade(Some((r, m)))
    }

    #[test]
    fn outcome_order_follows_desp() {
        assert_eq!(Outcome::of_eye(g(3, false)), Outcome::Urgent);
        assert_eq!(Outcome::of_eye(g(1, true)), Outcome::Routine);
        assert_eq!(Outcome::of_eye(g(2, false)), Outcome::Routine);
        assert_eq!(Outcome::of_eye(Grade(None)), Outcome::Ungradable);
        assert_eq!(Outcome::of_eye(g(1, false)), Outcome::Review);
        assert_eq!(Outcome::of_eye(g(0, false)), Outcome::NoDisease);
        assert!(Outcome::Ungradable > Outcome::Review && Outcome::Routine > Outcome::Ungradable);
    }

    #[test]
    fn eye_grade_ignores_ungradable_fields() {
        assert_eq!(Grade::worst_gradable(g(1, false), Grade(None)), g(1, false));
        assert_eq!(Grade::worst_gradable(g(1, true), g(2, false)), g(2, true));
        assert_eq!(Grade::worst_gradable(Grade(None), Grade(None)), Grade(None));
    }
}
