//! FHIR R4 result bundles (issue 15, item 4): synthetic studies through the
//! real binary with `configs/desp.toml`; every bundle validated by
//! `fhir.resources` 6.4.0 (R4) and `tests/check_fhir.py` (references,
//! status allow-list), and its values equal to the studies table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{f32s, nightscreen, onnxruntime, python, read_table, root, strict, strings};

const SEED: u64 = 23;
const STUDIES: usize = 8;
/// Probabilities are f32 in the table and in the documents.
const TOLERANCE: f64 = 1e-6;

/// Python with the venv's validators (fhir.resources, hl7apy), or `None`
/// (skip) when run bare; under `NIGHTSCREEN_STRICT=1` a missing one fails.
pub fn validator_python() -> Option<PathBuf> {
    let py = python()?;
    let ok = std::process::Command::new(&py)
        .args(["-c", "import fhir.resources.bundle, hl7apy.parser"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(py);
    }
    if strict() {
        panic!("fhir.resources / hl7apy missing from {} (NIGHTSCREEN_STRICT=1): run `make test`", py.display());
    }
    eprintln!("skipping: fhir.resources / hl7apy are missing; `make test` installs them");
    None
}

/// Runs a validator script of `tests/` over `files`; panics with its report.
pub fn validate(py: &Path, script: &str, files: &[PathBuf]) {
    assert!(!files.is_empty(), "nothing to validate");
    let out =
        std::process::Command::new(py).arg(root().join("tests").join(script)).args(files).output().expect("python");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{report}");
    assert_eq!(report.trim(), format!("ok {}", files.len()), "{script}");
}

/// Synthetic studies, once per test binary.
pub fn synthetic_studies() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        nightscreen::synth::run(&nightscreen::synth::SynthConfig::new(STUDIES, dir.path(), SEED)).expect("synth");
        dir
    })
    .path()
}

/// `nightscreen run --config CONFIG --input STUDIES --out OUT EXTRA…`, exit 0.
pub fn run(config: &Path, out: &Path, extra: &[&str]) {
    let status = nightscreen()
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--input")
        .arg(synthetic_studies())
        .arg("--out")
        .arg(out)
        .args(extra)
        .status()
        .expect("run nightscreen");
    assert_eq!(status.code(), Some(0), "every synthetic file is readable, so the run must exit 0");
}

/// Files under `dir` with extension `ext`, sorted.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// One row of the studies table: what the documents must say.
#[derive(Debug)]
pub struct StudyRow {
    pub band: String,
    pub reason: String,
    /// Right then left: the grade and p(referable), p(R3), p(M1), p(gradable).
    pub eyes: [Option<(String, [Option<f32>; 4])>; 2],
}

/// The studies table by study pseudonym.
pub fn studies_by_pseudonym(out: &Path) -> HashMap<String, StudyRow> {
    let t = read_table(out, "studies");
    let col = |name: &str| strings(&t, name);
    let (ids, bands, reasons) = (col("study_pseudonym"), col("band"), col("reason"));
    let eye = |side: &str| {
        let grades = col(&format!("{side}_eye_grade"));
        let ps: Vec<Vec<Option<f32>>> = ["p_referable", "p_r3", "p_m1", "p_gradable"]
            .iter()
            .map(|p| f32s(&t, &format!("{side}_eye_{p}")))
            .collect();
        (0..grades.len())
            .map(|i| grades[i].clone().map(|g| (g, [ps[0][i], ps[1][i], ps[2][i], ps[3][i]])))
            .collect::<Vec<_>>()
    };
    let (right, left) = (eye("right"), eye("left"));
    (0..ids.len())
        .map(|i| {
            let id = ids[i].clone().expect("every synthetic study has a UID, so a pseudonym");
            let row = StudyRow {
                band: bands[i].clone().expect("band"),
                reason: reasons[i].clone().expect("reason"),
                eyes: [right[i].clone(), left[i].clone()],
            };
            (id, row)
        })
        .collect()
}

pub fn close(doc: f64, table: Option<f32>, what: &str) {
    let table = table.unwrap_or_else(|| panic!("{what}: in the document but null in the table"));
    assert!((doc - f64::from(table)).abs() <= TOLERANCE, "{what}: document {doc}, table {table}");
}

fn resources<'a>(bundle: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    bundle["entry"].as_array().into_iter().flatten().map(|e| &e["resource"]).filter(move |r| r["resourceType"] == kind)
}

fn code(concept: &Value) -> &str {
    concept["coding"][0]["code"].as_str().unwrap_or_default()
}

/// Checks one bundle's values against its studies-table row.
fn check_values(name: &str, bundle: &Value, row: &StudyRow, model_sha256: &str) {
    let report: Vec<&Value> = resources(bundle, "DiagnosticReport").collect();
    assert_eq!(report.len(), 1, "{name}: one DiagnosticReport");
    let conclusion = report[0]["conclusion"].as_str().expect("conclusion");
    assert!(conclusion.starts_with(&format!("{}: {}. ", row.band, row.reason)), "{name}: {conclusion}");
    assert!(conclusion.contains("Made by a machine") && conclusion.contains("not verified"), "{conclusion}");
    let devices: Vec<&Value> = resources(bundle, "Device").collect();
    assert_eq!(devices.len(), 1, "{name}: the DR model");
    assert_eq!(devices[0]["identifier"][0]["value"], model_sha256);
    assert!(devices[0]["note"][0]["text"].as_str().is_some_and(|t| t.contains("Not for clinical use")));
    let observations: Vec<&Value> = resources(bundle, "Observation").collect();
    assert_eq!(observations.len(), row.eyes.iter().flatten().count(), "{name}: one Observation per graded eye");
    for (side, laterality, eye) in [("right", "24028007", &row.eyes[0]), ("left", "7771000", &row.eyes[1])] {
        let found: Vec<&&Value> = observations
            .iter()
            .filter(|o| {
                o["component"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| code(&c["valueCodeableConcept"]) == laterality))
            })
            .collect();
        let Some((grade, probs)) = eye else {
            assert!(found.is_empty(), "{name}: no {side} eye in the table, none in the bundle");
            continue;
        };
        assert_eq!(found.len(), 1, "{name}: one {side} eye Observation");
        let obs = found[0];
        assert_eq!(code(&obs["bodySite"]), "81745001", "{name}: Eye");
        assert_eq!(code(&obs["valueCodeableConcept"]), grade, "{name}: {side} grade");
        let component = |c: &str| {
            obs["component"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| code(&x["code"]) == c)
                .map(|x| &x["valueQuantity"])
        };
        for (c, table) in ["p-referable", "p-r3", "p-m1", "p-gradable"].into_iter().zip(probs) {
            match component(c) {
                Some(q) => {
                    assert_eq!(
                        (q["system"].as_str(), q["code"].as_str()),
                        (Some("http://unitsofmeasure.org"), Some("1"))
                    );
                    close(q["value"].as_f64().expect("value"), *table, &format!("{name} {side} {c}"));
                }
                None => assert!(table.is_none(), "{name}: {side} {c} is in the table but not the bundle"),
            }
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read bundle")).expect("bundle is JSON")
}

/// The bundle without `issued` (the run's start time).
fn without_issued(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("issued");
            for x in map.values_mut() {
                *x = without_issued(std::mem::take(x));
            }
        }
        Value::Array(items) => {
            for x in items {
                *x = without_issued(std::mem::take(x));
            }
        }
        _ => {}
    }
    v
}

#[test]
fn every_bundle_validates_as_r4_and_says_what_the_studies_table_says() {
    let Some(py) = validator_python() else { return };
    let Some(_) = onnxruntime() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    run(&root().join("configs/desp.toml"), &out, &[]);
    let bundles = files(&out.join("fhir"), "json");
    validate(&py, "check_fhir.py", &bundles);
    assert!(!out.join("hl7").exists(), "no HL7 unless [sinks] hl7 = true");

    let studies = studies_by_pseudonym(&out);
    assert_eq!(bundles.len(), studies.len(), "one bundle per study");
    let sha = strings(&read_table(&out, "images"), "model_sha256")[0].clone().expect("model sha256");
    let mut first = HashMap::new();
    for path in &bundles {
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        let row = studies.get(&name).unwrap_or_else(|| panic!("{name}: not a study pseudonym of the studies table"));
        let bundle = read_json(path);
        check_values(&name, &bundle, row, &sha);
        first.insert(name, bundle);
    }

    // Same study, software, config and models: the same bundle (ids and all).
    run(&root().join("configs/desp.toml"), &out, &["--force"]);
    for (name, bundle) in &first {
        let again = read_json(&out.join("fhir").join(format!("{name}.json")));
        assert_eq!(without_issued(again), without_issued(bundle.clone()), "{name}: re-written differently");
    }

    // Two shards into one OUT: each writes its own studies' bundles, and
    // together they are the single run's.
    let sharded = dir.path().join("sharded");
    for shard in ["0/2", "1/2"] {
        run(&root().join("configs/desp.toml"), &sharded, &["--shard", shard]);
    }
    let names: Vec<String> = files(&sharded.join("fhir"), "json")
        .iter()
        .map(|p| p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), first.len(), "one bundle per study across the shards");
    for (name, bundle) in &first {
        let from_shard = read_json(&sharded.join("fhir").join(format!("{name}.json")));
        assert_eq!(without_issued(from_shard), without_issued(bundle.clone()), "{name}: a shard wrote it differently");
    }

    // A shadow run says so, under other ids: it must never replace a clinical result.
    let shadow = dir.path().join("shadow");
    run(&root().join("configs/desp.toml"), &shadow, &["--shadow"]);
    for (name, bundle) in &first {
        let s = read_json(&shadow.join("fhir").join(format!("{name}.json")));
        let conclusion =
            resources(&s, "DiagnosticReport").next().and_then(|r| r["conclusion"].as_str()).expect("conclusion");
        assert!(conclusion.contains("SHADOW"), "{conclusion}");
        assert_ne!(s["id"], bundle["id"], "{name}: a shadow bundle shares the clinical one's id");
    }
}
