//! Results pinned to commit `ac3a23b`, before the restructuring of issue 14:
//! the same inputs under the test key must give the same worklist, the same
//! model outputs on every image row, the same error and skip rows and the
//! same studies table.
//!
//! Two runs: the shipped DESP config over a synthetic batch plus a few broken
//! files, and the fixture models over every pydicom and pydicom-data test
//! file (every transfer syntax and most ways a file can be bad). The
//! expected files in `tests/data/golden/` were written by this test at
//! `ac3a23b` with `NIGHTSCREEN_BLESS_GOLDEN=1`; re-bless only for a change
//! of results that is intended and said in its commit. `desp.json` was
//! re-blessed once since, when dr-screen 2.0.0 replaced 1.0.0 (a new model
//! gives new scores; until that commit 1.0.0 still gave `ac3a23b`'s).
//!
//! Paths are written relative to the input root (file pseudonyms are turned
//! back into them), so the files do not depend on where the clone lives;
//! floats are compared to 2e-5, since inference in other batch sizes may
//! differ in the last bits.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::Value;

use crate::util;

/// Columns that differ between any two runs of the same inputs.
const VOLATILE: &[&str] = &["run_id", "scored_at", "recorded_at"];

/// Columns the domain gate (issue 16) added after `ac3a23b`, so not in the
/// pinned files. Checked here instead: every pinned image is one its model
/// was made for, so a gate may rule none of them out (`in_domain` is null
/// for a model without a gate, else true).
const ADDED_BY_THE_GATE: &[&str] =
    &["in_domain", "domain_score", "domain_model_id", "domain_model_version", "domain_model_sha256"];

/// Columns the second look (issue 16, R3) added, kept out of the pinned
/// files like the gate's: what a look decides shows in the pinned grades and
/// bands, and `second_look.rs` checks the columns themselves.
const ADDED_BY_THE_SECOND_LOOK: &[&str] = &[
    "second_look_score",
    "second_look_error",
    "second_look_model_id",
    "second_look_model_version",
    "second_look_model_sha256",
];

/// How far a float may move between runs (batch composition).
const FLOAT_TOLERANCE: f64 = 2e-5;

fn golden_dir() -> PathBuf {
    util::root().join("tests/data/golden")
}

/// One cell as JSON: numbers as numbers, lists as arrays.
fn cell(col: &dyn Array, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Float32 => Value::from(f64::from(col.as_primitive::<arrow_array::types::Float32Type>().value(i))),
        DataType::Float64 => Value::from(col.as_primitive::<arrow_array::types::Float64Type>().value(i)),
        DataType::Int32 => Value::from(col.as_primitive::<arrow_array::types::Int32Type>().value(i)),
        DataType::Utf8 => Value::from(col.as_string::<i32>().value(i)),
        DataType::Timestamp(..) => {
            Value::from(col.as_primitive::<arrow_array::types::TimestampMicrosecondType>().value(i))
        }
        DataType::List(_) => {
            let list = col.as_list::<i32>().value(i);
            Value::Array((0..list.len()).map(|j| cell(list.as_ref(), j)).collect())
        }
        other => panic!("no golden form for {other:?}"),
    }
}

/// A table's rows as JSON objects, volatile columns out, file pseudonyms
/// replaced by the path relative to `root`, sorted by their text without
/// floats (so a last-bit difference cannot reorder them).
fn table_rows(out: &Path, table: &str, root: &Path) -> Vec<Value> {
    let batches: Vec<RecordBatch> = util::read_table(out, table);
    let has_files = batches.first().is_some_and(|b| b.column_by_name("file_pseudonym").is_some());
    let paths = if has_files { util::file_paths(&batches, util::every_entry(root)) } else { Vec::new() };
    let mut rows = Vec::new();
    let mut n = 0;
    for batch in &batches {
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let mut row = serde_json::Map::new();
            for (c, field) in schema.fields().iter().enumerate() {
                let name = field.name().as_str();
                if VOLATILE.contains(&name) {
                    continue;
                }
                if ADDED_BY_THE_GATE.contains(&name) {
                    if name == "in_domain" {
                        let col = batch.column(c).as_boolean();
                        assert!(col.is_null(i) || col.value(i), "{table} row {n}: ruled out by a domain gate");
                    }
                    continue;
                }
                if ADDED_BY_THE_SECOND_LOOK.contains(&name) {
                    continue;
                }
                let value = if name == "file_pseudonym" {
                    let path = paths[n].clone().unwrap_or_default();
                    Value::from(relative(&path, root))
                } else {
                    cell(batch.column(c).as_ref(), i)
                };
                row.insert(name.to_string(), value);
            }
            rows.push(Value::Object(row));
            n += 1;
        }
    }
    rows.sort_by_key(sort_key);
    rows
}

fn relative(path: &str, root: &Path) -> String {
    let root = root.to_string_lossy();
    path.strip_prefix(root.as_ref()).map_or(path, |p| p.trim_start_matches('/')).to_string()
}

/// A row's text with every float left out.
fn sort_key(row: &Value) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() => Value::Null,
            Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), strip(v))).collect()),
            other => other.clone(),
        }
    }
    strip(row).to_string()
}

/// Where two values differ beyond the float tolerance, if they do.
fn difference(expected: &Value, actual: &Value, at: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) if e.is_f64() || a.is_f64() => {
            let (e, a) = (e.as_f64().unwrap_or(f64::NAN), a.as_f64().unwrap_or(f64::NAN));
            ((e - a).abs() > FLOAT_TOLERANCE).then(|| format!("{at}: expected {e}, got {a}"))
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{at}: expected {} items, got {}", e.len(), a.len()));
            }
            e.iter().zip(a).enumerate().find_map(|(i, (e, a))| difference(e, a, &format!("{at}[{i}]")))
        }
        (Value::Object(e), Value::Object(a)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            if keys(e) != keys(a) {
                return Some(format!("{at}: expected columns {:?}, got {:?}", keys(e), keys(a)));
            }
            e.iter().find_map(|(k, ev)| difference(ev, &a[k], &format!("{at}.{k}")))
        }
        (e, a) => (e != a).then(|| format!("{at}: expected {e}, got {a}")),
    }
}

/// Runs `nightscreen run` and returns the outputs this test pins.
fn pinned_outputs(config: &str, inputs: &[PathBuf], root: &Path, out: &Path) -> Value {
    let mut cmd = util::nightscreen();
    cmd.args(["run", "--quiet", "--config", config, "--out"]).arg(out);
    for input in inputs {
        cmd.arg("--input").arg(input);
    }
    let run = cmd.output().expect("run nightscreen");
    let code = run.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1, "run failed ({code}): {}", String::from_utf8_lossy(&run.stderr));
    let worklist = std::fs::read_to_string(out.join("worklist.csv")).expect("worklist.csv");
    let failed = std::fs::read_to_string(out.join("failed_files.csv")).expect("failed_files.csv");
    let failed_lines = failed_files(&failed, root);
    serde_json::json!({
        "exit_code": code,
        "worklist_csv": worklist.lines().collect::<Vec<_>>(),
        "failed_files_csv": failed_lines,
        "images": table_rows(out, "images", root),
        "errors": table_rows(out, "errors", root),
        "skipped": table_rows(out, "skipped", root),
        "studies": table_rows(out, "studies", root),
    })
}

/// `failed_files.csv` with paths relative to `root`, each row's pseudonym
/// checked against its path and then left out (it is keyed on the absolute
/// path, which depends on where the test runs).
fn failed_files(text: &str, root: &Path) -> Vec<String> {
    let key = util::test_key();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut lines = vec![reader.headers().expect("failed_files.csv header").iter().collect::<Vec<_>>().join(",")];
    for record in reader.records() {
        let record = record.expect("failed_files.csv row");
        let fields: Vec<&str> = record.iter().collect();
        let (path, pseudonym) = (fields[0], fields[fields.len() - 1]);
        assert_eq!(
            pseudonym,
            key.file_pseudonym(&nightscreen::message::SourceId::File(path.into())),
            "pseudonym of {path}"
        );
        let mut row = vec![relative(path, root)];
        row.extend(fields[1..fields.len() - 1].iter().map(|f| f.to_string()));
        lines.push(row.join(","));
    }
    lines[1..].sort();
    lines
}

/// Compares with (or, with `NIGHTSCREEN_BLESS_GOLDEN=1`, writes) one golden file.
fn check(name: &str, actual: &Value) {
    let path = golden_dir().join(name);
    if std::env::var("NIGHTSCREEN_BLESS_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).expect("golden dir");
        let text = serde_json::to_string_pretty(actual).expect("json");
        std::fs::write(&path, text + "\n").expect("write golden");
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected: Value = serde_json::from_str(&text).expect("golden json");
    for part in ["exit_code", "worklist_csv", "failed_files_csv", "images", "errors", "skipped", "studies"] {
        if let Some(diff) = difference(&expected[part], &actual[part], part) {
            panic!("{name}: results differ from the pinned ones: {diff}");
        }
    }
}

#[test]
fn a_synthetic_desp_batch_with_broken_files_gives_the_pinned_results() {
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    util::synth_studies(&input, 12, 14);
    // An ingest error, a truncated image (decode error), a fuzz finding, a skip.
    std::fs::write(input.join("broken.dcm"), b"DICM but not really").expect("write");
    let whole = std::fs::read(input.join("study-000003/1-R-macula/1.dcm")).expect("read synth image");
    std::fs::write(input.join("truncated.dcm"), &whole[..whole.len() * 3 / 5]).expect("write");
    std::fs::copy(util::root().join("tests/data/fuzz/oom-e219e25206c3.dcm"), input.join("fuzz.dcm")).expect("copy");
    std::fs::write(input.join("notes.txt"), b"not an image").expect("write");
    let out = dir.path().join("out");
    let actual = pinned_outputs("configs/desp.toml", std::slice::from_ref(&input), &input, &out);
    check("desp.json", &actual);
}

#[test]
fn the_fixture_models_over_every_pydicom_file_give_the_pinned_results() {
    let Some(data) = util::testdata() else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let inputs = [data.join("pydicom"), data.join("pydicom-data")];
    let actual = pinned_outputs("configs/fixtures.toml", &inputs, &data, &out);
    check("fixtures.json", &actual);
}
