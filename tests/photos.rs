//! Real photographs through the binary (issue 16 item 4): the photographs
//! `make photos` fetches from packages on PyPI (`tools/photos.tsv`: 14
//! fundus photographs and 24 colour images that are not of an eye), wrapped
//! as Ophthalmic Photography DICOM the way a fundus camera sends them
//! (`tools/wrap_op.py`), screened with the shipped `configs/desp.toml`.
//!
//! They are a check, never training data (see `tools/README-photos.md`).
//! What is asserted is what the shipped models must do with them: no image
//! that is not a fundus photograph is graded or called NO_DISEASE, and each
//! says why; every fundus photograph is recognised as one (fundus-gate
//! 1.0.0 missed three unusual framings; 1.1.0 recognises all 13 fields).
//!
//! The fundus photographs a grader would call gradable
//! (`tools/photos-judged.tsv`) must be graded: recognised by the gate and
//! given an R/M grade, not U. The card's `[evaluation]` carries these
//! real-photograph figures (`real_*`, written by the recipe through
//! `tools/photo_report.py --json`); the second test reproduces them, and names
//! each gradable photograph that is still not graded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, read_table, strings};

/// The fundus photograph that is not a field a camera sends: scikit-image's
/// 102 × 102 grey crop of microaneurysms. The gate may take it either way.
const NOT_A_CAMERA_FIELD: &str = "fundus/microaneurysms_png.dcm";

struct Screened {
    _dir: tempfile::TempDir,
    wrapped: PathBuf,
    out: PathBuf,
}

/// Wraps every photograph (JPEG baseline, YBR_FULL_422, as cameras send)
/// and screens them with the shipped defaults.
fn screen_photos() -> Option<Screened> {
    let photos = util::photos()?;
    let python = util::python()?;
    util::onnxruntime()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapped = dir.path().join("op");
    let wrap = Command::new(python)
        .arg(util::root().join("tools/wrap_op.py"))
        .arg(&photos)
        .arg(&wrapped)
        .output()
        .expect("wrap_op.py");
    assert!(wrap.status.success(), "wrap_op.py: {}", String::from_utf8_lossy(&wrap.stderr));
    let out = dir.path().join("out");
    let run = util::nightscreen()
        .args(["run", "--quiet", "--config", "configs/desp.toml", "--input"])
        .arg(&wrapped)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run nightscreen");
    assert_eq!(run.status.code(), Some(0), "every photograph decodes: {}", String::from_utf8_lossy(&run.stderr));
    Some(Screened { _dir: dir, wrapped, out })
}

/// What the run said of one photograph (one image, one study each).
#[derive(Debug)]
struct Verdict {
    in_domain: Option<bool>,
    image_grade: Option<String>,
    band: String,
    reason: String,
}

fn verdicts(run: &Screened) -> HashMap<String, Verdict> {
    use arrow_array::cast::AsArray;
    let images = read_table(&run.out, "images");
    let paths = util::file_paths(&images, util::every_entry(&run.wrapped));
    let inside: Vec<Option<bool>> = images
        .iter()
        .flat_map(|b| b.column_by_name("in_domain").expect("in_domain").as_boolean().iter().collect::<Vec<_>>())
        .collect();
    let grades = strings(&images, "image_grade");
    let studies = strings(&images, "study_pseudonym");
    let table = read_table(&run.out, "studies");
    let study_band: HashMap<Option<String>, (String, String)> = strings(&table, "study_pseudonym")
        .into_iter()
        .zip(strings(&table, "band").into_iter().zip(strings(&table, "reason")))
        .map(|(study, (band, reason))| (study, (band.unwrap_or_default(), reason.unwrap_or_default())))
        .collect();
    let mut out = HashMap::new();
    for i in 0..paths.len() {
        let path = paths[i].clone().expect("every row's file is one of the wrapped photographs");
        let name = Path::new(&path).strip_prefix(&run.wrapped).expect("under the wrapped folder");
        let (band, reason) = study_band.get(&studies[i]).cloned().expect("each image's study is in the table");
        out.insert(
            name.to_string_lossy().into_owned(),
            Verdict { in_domain: inside[i], image_grade: grades[i].clone(), band, reason },
        );
    }
    out
}

#[test]
fn no_photograph_that_is_not_of_an_eye_is_graded_and_every_fundus_photograph_is_recognised() {
    let Some(run) = screen_photos() else { return };
    let verdicts = verdicts(&run);
    let count = |group: &str| verdicts.keys().filter(|k| k.starts_with(group)).count();
    assert_eq!((count("fundus/"), count("other/")), (14, 24), "{:?}", verdicts.keys().collect::<Vec<_>>());
    let mut problems = Vec::new();
    let not_recognised = |v: &Verdict| {
        v.in_domain == Some(false)
            && v.image_grade.as_deref() == Some("OOD")
            && v.band != "NO_DISEASE"
            && v.reason.starts_with("outside the model's domain — not recognised as a fundus photograph")
    };
    for (name, v) in &verdicts {
        if name.starts_with("other/") {
            // Never a grade, never "no disease": outside the domain, and the
            // worklist says so in the card's words.
            if !not_recognised(v) {
                problems.push(format!("{name}: {v:?}"));
            }
        } else if name != NOT_A_CAMERA_FIELD {
            let ok = v.in_domain == Some(true)
                && v.image_grade.as_deref().is_some_and(|g| g != "OOD")
                && !v.reason.contains("outside the model's domain");
            if !ok {
                problems.push(format!("{name}: {v:?}"));
            }
        }
    }
    problems.sort();
    assert!(problems.is_empty(), "{} photograph(s) not as they must be:\n{}", problems.len(), problems.join("\n"));
}

/// `tools/photos-judged.tsv`: wrapped file name (`fundus/retina_jpg.dcm`) →
/// what a grader would say of it.
fn judged() -> HashMap<String, String> {
    let text = std::fs::read_to_string(util::root().join("tools/photos-judged.tsv")).expect("photos-judged.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (format!("fundus/{}.dcm", cols[0].replace('.', "_")), cols[1].to_string())
        })
        .collect()
}

/// An R/M grade: neither U (ungradable) nor OOD (outside the domain).
fn graded(v: &Verdict) -> bool {
    v.image_grade.as_deref().is_some_and(|g| g.starts_with('R'))
}

#[test]
fn the_cards_real_photograph_figures_are_reproduced() {
    let Some(run) = screen_photos() else { return };
    let verdicts = verdicts(&run);
    let judged = judged();
    let mut measured: HashMap<String, f64> = HashMap::new();
    let mut not_graded = Vec::new();
    for (name, v) in &verdicts {
        let group = match (name.starts_with("other/"), judged.get(name).map(String::as_str)) {
            (true, _) => "other",
            (false, Some("gradable")) => "fundus_gradable",
            _ => continue,
        };
        *measured.entry(format!("real_{group}_images")).or_default() += 1.0;
        *measured.entry(format!("real_{group}_recognised")).or_default() += f64::from(v.in_domain == Some(true));
        *measured.entry(format!("real_{group}_graded")).or_default() += f64::from(graded(v));
        if group == "fundus_gradable" && !graded(v) {
            not_graded.push(format!("{name}: {} ({})", v.image_grade.as_deref().unwrap_or("-"), v.reason));
        }
    }
    let card = nightscreen::model::card::ModelCard::load(&util::root().join("models/dr-screen.toml")).expect("card");
    let figures = card.evaluation.expect("the card's [evaluation]").figures;
    let carried: HashMap<&String, &f64> = figures.iter().filter(|(k, _)| k.starts_with("real_")).collect();
    // scikit-image's retina.jpg, a normal eye (CC0): graded, and not URGENT.
    let retina = &verdicts["fundus/retina_jpg.dcm"];
    measured.insert("real_retina_graded_not_urgent".into(), f64::from(graded(retina) && retina.band != "URGENT"));
    assert_eq!(carried.len(), 7, "the card carries the seven real-photograph figures: {carried:?}");
    for (key, want) in carried {
        assert_eq!(
            measured.get(key.as_str()),
            Some(want),
            "{key}: card {want}, measured {:?}",
            measured.get(key.as_str())
        );
    }
    assert_eq!(measured["real_other_graded"], 0.0);
    not_graded.sort();
    eprintln!("gradable real fundus photographs not graded: {}\n{}", not_graded.len(), not_graded.join("\n"));
    eprintln!("retina.jpg: {retina:?}");
}
