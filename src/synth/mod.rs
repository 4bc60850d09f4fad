//! Synth: a labelled synthetic diabetic eye screening data set.
//!
//! Count and seed in; DICOM studies, `truth.csv` and `truth_images.csv`
//! out. No graded fundus photographs can be had on the project's machines,
//! so the DR model is trained on, and the pipeline demonstrated with, images
//! made here. Each study is one patient photographed as the English Diabetic
//! Eye Screening Programme does it: two 45° fields (macula-centred and
//! disc-centred) per eye, four Ophthalmic Photography images in all.
//!
//! The stages mirror the pipeline's shape: [`study`] plans a study from the
//! seed (patient, UIDs, grades, image defects), [`retina`] builds each eye's
//! anatomy and (with `lesions`) its lesions in retina coordinates, [`render`]
//! photographs each field as a view over that retina (with [`stamp`] and
//! [`optics`]), [`jpeg`] compresses them, [`dicom`] writes the files and
//! [`truth`] the answer key. Studies are independent and run on rayon; each
//! draws from its own stream forked from the seed, so output is
//! byte-identical for a seed whatever the thread count.
//!
//! Layout: `OUT/study-000001/<n>-<R|L>-<macula|disc>/1.dcm` with `n` the
//! SeriesNumber (1 R macula, 2 R disc, 3 L macula, 4 L disc).
//!
//! Two generator versions ([`GeneratorVersion`]). `v1`, the default, is
//! the generator the shipped model was trained on, kept byte for byte:
//! every image 1600 × 1200 JPEG, one circular field. `v2` (issue 16) spans
//! real cameras: [`camera`] draws a camera per image (size, aspect,
//! encoding, field angle: 30–50°), [`fov`] its field-of-view mask and
//! burnt-in text, [`appearance`] the fundus type and the photograph's
//! look, [`vasculature`] a vessel tree grown by Murray's law, [`disease`]
//! each lesion's contrast and the features v1 leaves out, and
//! [`visibility`] which lesions a grader could see in each photograph:
//! only those count towards the image's grade. v2 draws only from
//! streams forked off labels v1 never uses, so the v1 stream is
//! untouched, and its truth files say `generator = v2`. Each module's doc
//! has the table of its parameters' ranges and where they come from;
//! `tools/compare_fundus.py` compares a batch with real photographs.

pub mod appearance;
pub mod camera;
pub mod dicom;
pub mod disease;
pub mod fov;
pub mod jpeg;
mod lesions;
pub mod optics;
pub mod render;
pub mod retina;
pub mod rng;
pub mod stamp;
pub mod study;
pub mod truth;
pub mod vasculature;
pub mod visibility;

pub use study::GradeMix;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use render::View;
use retina::Retina;
use rng::Rng;
use study::{EyePlan, StudyPlan};
use truth::{EyeTruth, Grade, ImageTruth, StudyTruth};

/// Which generator makes the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GeneratorVersion {
    /// Today's generator (the shipped model's training data), byte for byte.
    #[default]
    V1,
    /// Spans real cameras: sizes, encodings, masks, pigmentation, look.
    V2,
}

impl GeneratorVersion {
    pub fn name(self) -> &'static str {
        match self {
            GeneratorVersion::V1 => "v1",
            GeneratorVersion::V2 => "v2",
        }
    }
}

impl std::fmt::Display for GeneratorVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GeneratorVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(GeneratorVersion::V1),
            "v2" | "2" => Ok(GeneratorVersion::V2),
            other => Err(format!("unknown generator {other:?} (v1 or v2)")),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub studies: usize,
    pub out: PathBuf,
    /// Same seed, same bytes. Default: 1.
    pub seed: u64,
    /// Image size; default 1600 × 1200, the smallest common fundus camera
    /// format (larger costs time and disk with no gain for a 512-px model).
    pub width: u32,
    pub height: u32,
    /// Replace a previous data set in `out` (its `study-*` folders and truth
    /// files); anything else in `out` is left alone.
    pub overwrite: bool,
    /// Which generator. Default: v1. v2 draws its own image size per
    /// camera and ignores `width` and `height`.
    pub generator: GeneratorVersion,
    /// Each eye's R grade weights. Default: the documented prevalence.
    pub grade_mix: study::GradeMix,
}

impl SynthConfig {
    pub fn new(studies: usize, out: impl Into<PathBuf>, seed: u64) -> Self {
        Self {
            studies,
            out: out.into(),
            seed,
            width: 1600,
            height: 1200,
            overwrite: false,
            generator: GeneratorVersion::V1,
            grade_mix: study::GradeMix::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    #[error("{} already holds files; choose an empty folder or pass --overwrite", path.display())]
    NotEmpty { path: PathBuf },
    #[error("cannot prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image size {width}x{height} is not supported (1..=65535 each)")]
    Size { width: u32, height: u32 },
    #[error("cannot build the file meta group of {}", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::WithMetaError>,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: Box<dicom_object::WriteError>,
    },
    #[error("cannot write {}", path.display())]
    Truth {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
}

/// What a run made.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    pub studies: usize,
    pub images: usize,
    pub ungradable_images: usize,
    /// Eyes per grade (`R0M0`, `R1M1`, …, `U`).
    pub eye_grades: BTreeMap<String, usize>,
    /// Studies per outcome name.
    pub outcomes: BTreeMap<&'static str, usize>,
    pub seconds: f64,
}

/// Generates the data set described by `cfg`.
///
/// # Errors
/// When `out` holds files (without `overwrite`), or any file cannot be
/// written; files already written are left in place.
pub fn run(cfg: &SynthConfig) -> Result<SynthSummary, SynthError> {
    let started = Instant::now();
    prepare_out(cfg)?;
    let truths = (0..cfg.studies)
        .into_par_iter()
        .map_init(render::Scratch::default, |scratch, i| generate_study(cfg, i, scratch))
        .collect::<Result<Vec<_>, _>>()?;
    truth::write(&cfg.out, &truths, cfg.generator)?;
    let mut summary = SynthSummary {
        studies: truths.len(),
        images: 0,
        ungradable_images: 0,
        eye_grades: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        seconds: 0.0,
    };
    for t in &truths {
        summary.images += t.images.len();
        summary.ungradable_images += t.images.iter().filter(|i| i.grade.0.is_none()).count();
        for e in &t.eyes {
            let key = if e.grade.0.is_some() { format!("{}{}", e.grade.r(), e.grade.m()) } else { "U".into() };
            *summary.eye_grades.entry(key).or_default() += 1;
        }
        *summary.outcomes.entry(t.outcome().name()).or_default() += 1;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

/// Creates `out`, refusing one with files in it unless `overwrite`, in
/// which case only a previous data set's own files are removed.
fn prepare_out(cfg: &SynthConfig) -> Result<(), SynthError> {
    let out = &cfg.out;
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let entries: Vec<_> = std::fs::read_dir(out).map_err(io_err(out))?.filter_map(|e| e.ok()).collect();
    if entries.is_empty() {
        return Ok(());
    }
    if !cfg.overwrite {
        return Err(SynthError::NotEmpty { path: out.clone() });
    }
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with("study-") && path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
        } else if matches!(name.as_str(), "truth.csv" | "truth_images.csv" | "truth_lesions.csv") {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Plans, renders and writes study `index`; returns its truth.
///
/// # Errors
/// When a folder or file cannot be written.
pub fn generate_study(
    cfg: &SynthConfig,
    index: usize,
    scratch: &mut render::Scratch,
) -> Result<StudyTruth, SynthError> {
    let plan = StudyPlan::with_mix(cfg.seed, index, &cfg.grade_mix);
    let study_dir = format!("study-{:06}", index + 1);
    let mut truth = StudyTruth {
        study_uid: plan.study_uid.clone(),
        patient_id: plan.patient.id.clone(),
        eyes: Vec::new(),
        images: Vec::new(),
    };
    for eye in &plan.eyes {
        let grade = match cfg.generator {
            GeneratorVersion::V1 => generate_eye(cfg, &plan, eye, &study_dir, &mut truth.images, scratch)?,
            GeneratorVersion::V2 => generate_eye_v2(cfg, &plan, eye, &study_dir, &mut truth.images, scratch)?,
        };
        truth.eyes.push(EyeTruth { eye: eye.eye.code(), grade });
    }
    Ok(truth)
}

/// Renders and writes the two fields of one eye; returns the eye's grade.
fn generate_eye(
    cfg: &SynthConfig,
    plan: &StudyPlan,
    eye: &EyePlan,
    study_dir: &str,
    images: &mut Vec<ImageTruth>,
    scratch: &mut render::Scratch,
) -> Result<Grade, SynthError> {
    let retina = Retina::generate(eye.eye, eye.r, eye.m1, eye.seed);
    let mut rng = Rng::new(eye.seed).fork(100);
    let mut eye_grade = Grade(None);
    for image in &eye.images {
        let view = View::new(&retina, image.field, cfg.width, cfg.height, &mut rng);
        let rgb = render::render_planes(&retina, &view, image.defect, &mut rng, cfg.width, cfg.height, scratch);
        let jpeg = dicom::encode_jpeg(rgb, cfg.width, cfg.height)?;
        let series_dir = format!("{}-{}-{}", image.series_number, eye.eye.code(), image.field.code().to_lowercase());
        let rel = format!("{study_dir}/{series_dir}/1.dcm");
        let dir = cfg.out.join(study_dir).join(&series_dir);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        dicom::write(&dir.join("1.dcm"), plan, eye, image, jpeg, cfg.width, cfg.height)?;
        let grade = match image.defect {
            Some(_) => Grade(None),
            None => Grade(Some(retina.grade_in(view.centre, view.radius_dd()))),
        };
        eye_grade = Grade::worst_gradable(eye_grade, grade);
        images.push(ImageTruth {
            sop_uid: image.sop_uid.clone(),
            eye: eye.eye.code(),
            field: image.field.code(),
            grade,
            path: rel,
            defect: image.defect.map_or("", |d| d.code()),
            camera: None,
            lesions: Vec::new(),
        });
    }
    Ok(eye_grade)
}

/// The v2 eye: a camera per image, the retina re-coloured and its small
/// lesions resized ([`appearance`]), the field masked ([`fov`]) and each
/// image stored as its camera would (JPEG or native RGB).
fn generate_eye_v2(
    cfg: &SynthConfig,
    plan: &StudyPlan,
    eye: &EyePlan,
    study_dir: &str,
    images: &mut Vec<ImageTruth>,
    scratch: &mut render::Scratch,
) -> Result<Grade, SynthError> {
    let eye_rng = Rng::new(eye.seed);
    let anatomy = vasculature::draw(&mut eye_rng.fork(303));
    let mut retina = Retina::generate_with(eye.eye, eye.r, eye.m1, eye.seed, &anatomy, |r| {
        disease::add_lesions(r, &mut eye_rng.fork(302), eye.r);
    });
    let fundus = appearance::Fundus::draw(&mut eye_rng.fork(300), plan.age_years());
    fundus.apply(&mut retina, eye.seed);
    appearance::scale_lesions(&mut retina, &mut eye_rng.fork(301));
    disease::draw_contrast(&mut retina, &mut eye_rng.fork(304));
    // The same stream v1 draws its looks and noise from: only its use differs.
    let mut rng = eye_rng.fork(100);
    let mut eye_grade = Grade(None);
    for (k, image) in eye.images.iter().enumerate() {
        let mut cam_rng = eye_rng.fork(200 + k as u64);
        let cam = camera::Camera::draw(&mut cam_rng, eye.eye);
        let (w, h) = (cam.width, cam.height);
        let view = cam.view(&retina, image.field, &mut cam_rng);
        let mask = fov::Mask::draw(&cam, &view, &mut cam_rng);
        let look = appearance::Look2::draw(&mut eye_rng.fork(400 + k as u64), image.defect, &view, &fundus);
        scratch.set_vessel_reflex(fundus.reflex.0, fundus.reflex.1);
        scratch.set_vessel_fade(vasculature::FADE_W0);
        scratch.set_absorption(vasculature::ABSORPTION);
        scratch.set_vignette_scale(look.vignette);
        render::render_planes(&retina, &view, image.defect, &mut rng, w, h, scratch);
        let text = cam.overlay_text(plan, eye.eye);
        let text = text.as_deref().map(|lines| (lines, cam.text_colour));
        let burnt = appearance::finish(scratch.planes_mut(), w, h, &look, &retina, &view, &mask, text).1;
        let rgb = scratch.planes();
        let photo = visibility::Photo {
            view: &view,
            green: &rgb[1],
            w: w as usize,
            h: h as usize,
            blur_var: visibility::Photo::box_var(look.blur, 2),
            gamma: look.gamma,
            fade: Some(vasculature::FADE_W0),
            beading: anatomy.beading,
            absorption: vasculature::ABSORPTION,
        };
        // Each lesion: in the lit field, and visible there (pure functions
        // of the finished image: recording them changes nothing drawn).
        let seen: Vec<(bool, bool)> = retina
            .lesions
            .iter()
            .map(|l| {
                let in_field = mask.sees(view.to_px(l.centre), 0.95);
                (in_field, photo.visible(&retina, l, |x, y| scratch.vessels_at(x, y)))
            })
            .collect();
        let counted = retina.lesions.iter().zip(&seen).filter(|(_, &(in_field, visible))| in_field && visible);
        let grade = match image.defect {
            Some(_) => Grade(None),
            None => Grade(Some(retina.grade_of(counted.map(|(l, _)| l), mask.sees(view.to_px(retina.fovea), 0.9)))),
        };
        let lesions = retina
            .lesions
            .iter()
            .zip(&seen)
            .map(|(l, &(in_field, visible))| {
                let [x, y] = view.to_px(l.centre);
                let counts = grade.0.is_some() && in_field && visible;
                truth::LesionTruth { kind: l.kind.code(), x, y, in_field, visible, counts, contrast: l.contrast }
            })
            .collect();
        let pixels = match cam.encoding {
            camera::Encoding::Jpeg => {
                let planes = [&rgb[0][..], &rgb[1][..], &rgb[2][..]];
                dicom::Pixels::Jpeg(dicom::encode_jpeg(planes, w, h)?)
            }
            camera::Encoding::NativeRgb => dicom::Pixels::NativeRgb(dicom::interleave(rgb)),
        };
        let series_dir = format!("{}-{}-{}", image.series_number, eye.eye.code(), image.field.code().to_lowercase());
        let rel = format!("{study_dir}/{series_dir}/1.dcm");
        let dir = cfg.out.join(study_dir).join(&series_dir);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let device = dicom::Device { model: cam.model.name, field_deg: cam.field_deg, burned_in: burnt };
        dicom::write_image(&dir.join("1.dcm"), plan, eye, image, pixels, w, h, Some(&device))?;
        eye_grade = Grade::worst_gradable(eye_grade, grade);
        images.push(ImageTruth {
            sop_uid: image.sop_uid.clone(),
            eye: eye.eye.code(),
            field: image.field.code(),
            grade,
            path: rel,
            defect: image.defect.map_or("", |d| d.code()),
            camera: Some(truth::CameraTruth {
                model: cam.model.name,
                width: w,
                height: h,
                encoding: cam.encoding.code(),
                field_deg: cam.field_deg,
                mask: mask.describe(burnt),
                fundus: fundus.kind.code(),
            }),
            lesions,
        });
    }
    Ok(eye_grade)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_versions_parse_and_print() {
        assert_eq!("v2".parse::<GeneratorVersion>(), Ok(GeneratorVersion::V2));
        assert_eq!("V1".parse::<GeneratorVersion>(), Ok(GeneratorVersion::V1));
        assert!("v3".parse::<GeneratorVersion>().is_err());
        assert_eq!(GeneratorVersion::default().to_string(), "v1");
        assert_eq!(SynthConfig::new(1, "x", 1).generator, GeneratorVersion::V1);
    }
}
