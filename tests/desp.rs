//! Diabetic eye screening end to end (issue 3): synthetic studies through the
//! real binary with `configs/desp.toml` and the shipped `dr-screen` model,
//! checked against the generator's `truth.csv`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use nightscreen::synth::{self, SynthConfig};
use tempfile::TempDir;

use crate::util::{f32s, nightscreen, onnxruntime, read_table, strings};

/// A seed no training, threshold or held-out batch uses.
const SEED: u64 = 11;
const STUDIES: usize = 40;
const BANDS: [&str; 5] = ["URGENT", "ROUTINE", "UNGRADABLE", "REVIEW", "NO_DISEASE"];

struct DespRun {
    _dir: TempDir,
    studies: std::path::PathBuf,
    out: std::path::PathBuf,
}

fn desp_run() -> Option<&'static DespRun> {
    static RUN: OnceLock<Option<DespRun>> = OnceLock::new();
    RUN.get_or_init(|| {
        onnxruntime()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let studies = dir.path().join("studies");
        let out = dir.path().join("out");
        synth::run(&SynthConfig::new(STUDIES, &studies, SEED)).expect("synth");
        let status = nightscreen()
            .args(["run", "--config", "configs/desp.toml", "--input"])
            .arg(&studies)
            .arg("--out")
            .arg(&out)
            .status()
            .expect("run nightscreen");
        assert_eq!(status.code(), Some(0), "every synthetic file is readable, so the run must exit 0");
        Some(DespRun { _dir: dir, studies, out })
    })
    .as_ref()
}

fn csv_maps(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = reader.headers().expect("csv header").clone();
    reader
        .records()
        .map(|r| {
            let r = r.expect("csv row");
            headers.iter().zip(r.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()
        })
        .collect()
}

/// Truth outcome per study, from the per-eye `truth.csv`.
fn truth_outcomes(run: &DespRun) -> HashMap<String, String> {
    csv_maps(&run.studies.join("truth.csv"))
        .into_iter()
        .map(|row| (row["study_uid"].clone(), row["outcome"].clone()))
        .collect()
}

#[test]
fn every_urgent_study_stands_above_every_disease_free_study() {
    let Some(run) = desp_run() else { return };
    let truth = truth_outcomes(run);
    let worklist = csv_maps(&run.out.join("worklist.csv"));
    assert_eq!(worklist.len(), STUDIES, "one worklist row per study");
    let rank_of = |outcome: &str| -> Vec<u32> {
        worklist
            .iter()
            .filter(|r| truth[&r["study_uid"]] == outcome)
            .map(|r| r["rank"].parse().expect("rank"))
            .collect()
    };
    let (urgent, clean) = (rank_of("URGENT"), rank_of("NO_DISEASE"));
    assert!(!urgent.is_empty() && !clean.is_empty(), "seed {SEED} must give both R3 and R0M0 studies");
    let (last_urgent, first_clean) = (urgent.iter().max().unwrap(), clean.iter().min().unwrap());
    assert!(
        last_urgent < first_clean,
        "an R3 study at rank {last_urgent} is below an R0M0 study at rank {first_clean}"
    );
}

#[test]
fn worklist_is_in_band_order_and_no_referable_study_is_called_disease_free() {
    let Some(run) = desp_run() else { return };
    let truth = truth_outcomes(run);
    let worklist = csv_maps(&run.out.join("worklist.csv"));
    let band_index: Vec<usize> = worklist
        .iter()
        .map(|r| BANDS.iter().position(|b| *b == r["band"]).unwrap_or_else(|| panic!("unknown band {}", r["band"])))
        .collect();
    assert!(band_index.windows(2).all(|w| w[0] <= w[1]), "bands out of order: {band_index:?}");
    let mut missed = Vec::new();
    let mut agree = 0;
    for row in &worklist {
        let want = &truth[&row["study_uid"]];
        agree += usize::from(*want == row["band"]);
        if matches!(want.as_str(), "URGENT" | "ROUTINE") && row["band"] == "NO_DISEASE" {
            missed.push(format!("{} truth {want}: {}", row["study_uid"], row["reason"]));
        }
    }
    assert!(missed.is_empty(), "referable studies sent to recall: {missed:#?}");
    // The card's held-out agreement is far above this; a broken model or a
    // mismatch between preprocessing and training would be far below.
    assert!(agree * 10 >= STUDIES * 7, "only {agree} of {STUDIES} studies in their truth band");
}

#[test]
fn every_row_says_why_naming_eye_and_field() {
    let Some(run) = desp_run() else { return };
    for row in csv_maps(&run.out.join("worklist.csv")) {
        let reason = &row["reason"];
        assert!(!reason.is_empty(), "row without a reason: {row:?}");
        if row["band"] == "URGENT" {
            assert!(reason.contains("R3 suspected"), "{reason}");
            assert!(
                reason.contains(" eye") && reason.contains(" field"),
                "urgent reason names eye and field: {reason}"
            );
        }
        for eye in ["right_eye", "left_eye"] {
            let grade = &row[eye];
            let ok = grade == "U" || (grade.len() == 4 && grade.starts_with('R') && grade[2..].starts_with('M'));
            assert!(ok, "{eye} grade {grade:?}");
        }
    }
}

#[test]
fn tables_carry_eye_grades_laterality_field_and_image_grade() {
    let Some(run) = desp_run() else { return };
    let images = read_table(&run.out, "images");
    let truth_images = csv_maps(&run.studies.join("truth_images.csv"));
    let laterality = strings(&images, "laterality");
    assert_eq!(laterality.len(), truth_images.len(), "one image row per synthetic image");
    assert!(laterality.iter().all(|l| matches!(l.as_deref(), Some("R" | "L"))), "{laterality:?}");
    let field = strings(&images, "field");
    assert!(field.iter().all(|f| matches!(f.as_deref(), Some("macula" | "disc"))), "{field:?}");
    assert!(strings(&images, "image_grade").iter().all(|g| g.as_deref().is_some_and(|g| !g.is_empty())));
    let studies = read_table(&run.out, "studies");
    for column in ["right_eye_grade", "left_eye_grade", "band", "reason"] {
        let values = strings(&studies, column);
        assert_eq!(values.len(), STUDIES);
        assert!(values.iter().all(|v| v.as_deref().is_some_and(|v| !v.is_empty())), "{column}: {values:?}");
    }
    // Per-eye probabilities agree with the eye grades: a referable eye has
    // the highest p(referable) or p(m1), an ungradable one none at all.
    for eye in ["right_eye", "left_eye"] {
        let grades = strings(&studies, &format!("{eye}_grade"));
        let referable = f32s(&studies, &format!("{eye}_p_referable"));
        let gradable = f32s(&studies, &format!("{eye}_p_gradable"));
        for ((grade, p_ref), p_grad) in grades.iter().zip(&referable).zip(&gradable) {
            let grade = grade.as_deref().unwrap_or_default();
            assert!(p_grad.is_some_and(|p| (0.0..=1.0).contains(&p)), "{eye} p_gradable {p_grad:?}");
            if grade == "U" {
                assert!(p_ref.is_none(), "{eye} is U but has p_referable {p_ref:?}");
            } else {
                assert!(p_ref.is_some_and(|p| (0.0..=1.0).contains(&p)), "{eye} {grade} p_referable {p_ref:?}");
            }
        }
    }
}
