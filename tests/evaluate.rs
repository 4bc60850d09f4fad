//! Evaluation figures against scikit-learn and SciPy on a fixed set with
//! ties (tests/evaluate_reference.py), to 1e-6.

use std::io::Write;
use std::process::{Command, Stdio};

use nightscreen::evaluate::metrics::{operating_points, roc_auc, roc_auc_bootstrap, roc_curve, Confusion, Proportion};
use serde_json::Value;

use crate::util;

/// 300 cases: scores rounded to 2 decimals (so many ties), positives more
/// likely at high scores, from a fixed linear congruential sequence.
fn fixed_set() -> (Vec<f64>, Vec<bool>) {
    let mut state: u64 = 20_261_124;
    let mut next = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..300)
        .map(|_| {
            let score = (next() * 100.0).round() / 100.0;
            (score, next() < 0.15 + 0.7 * score)
        })
        .unzip()
}

fn close(a: f64, b: &Value, what: &str) {
    let b = b.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {b}"));
    assert!((a - b).abs() <= 1e-6, "{what}: ours {a}, reference {b}");
}

fn same_proportion(ours: &Proportion, reference: &Value, what: &str) {
    assert_eq!(Some(ours.numerator), reference["numerator"].as_u64(), "{what} numerator");
    assert_eq!(Some(ours.denominator), reference["denominator"].as_u64(), "{what} denominator");
    close(ours.value, &reference["value"], what);
    close(ours.lower, &reference["lower"], &format!("{what} lower"));
    close(ours.upper, &reference["upper"], &format!("{what} upper"));
}

#[test]
fn figures_match_scikit_learn_and_scipy() {
    let Some(python) = util::python() else { return };
    let (scores, positive) = fixed_set();
    let called: Vec<bool> = scores.iter().map(|&s| s >= 0.5).collect();
    let (resamples, seed) = (400, 7);
    let input = serde_json::json!({ "scores": scores, "positive": positive, "called": called, "resamples": resamples, "seed": seed });
    let mut child = Command::new(python)
        .arg(util::root().join("tests/evaluate_reference.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().expect("stdin").write_all(input.to_string().as_bytes()).expect("write");
    let output = child.wait_with_output().expect("reference");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reference: Value = serde_json::from_slice(&output.stdout).expect("json");

    let confusion = Confusion::tally(called.iter().copied().zip(positive.iter().copied()));
    assert_eq!(serde_json::to_value(confusion).expect("json"), reference["confusion"]);
    same_proportion(&confusion.sensitivity(), &reference["sensitivity"], "sensitivity");
    same_proportion(&confusion.specificity(), &reference["specificity"], "specificity");
    same_proportion(&confusion.ppv(), &reference["ppv"], "ppv");
    same_proportion(&confusion.npv(), &reference["npv"], "npv");

    let roc = roc_curve(&scores, &positive);
    let points = reference["roc"]["thresholds"].as_array().expect("thresholds").len();
    assert!(points > 50 && points < 150, "ties merged into {points} points");
    assert_eq!(roc.thresholds.len(), points, "one point per distinct score");
    for i in 0..points {
        close(roc.false_positive_rate[i], &reference["roc"]["false_positive_rate"][i], &format!("fpr[{i}]"));
        close(roc.true_positive_rate[i], &reference["roc"]["true_positive_rate"][i], &format!("tpr[{i}]"));
        let t = &reference["roc"]["thresholds"][i];
        if t == "inf" {
            assert!(roc.thresholds[i].is_infinite(), "threshold[{i}]");
        } else {
            close(roc.thresholds[i], t, &format!("threshold[{i}]"));
        }
    }
    close(roc_auc(&scores, &positive), &reference["auc"], "auc");

    let boot = roc_auc_bootstrap(&scores, &positive, resamples, seed);
    assert_eq!(Some(boot.resamples as u64), reference["bootstrap"]["resamples"].as_u64());
    close(boot.lower, &reference["bootstrap"]["lower"], "bootstrap lower");
    close(boot.upper, &reference["bootstrap"]["upper"], "bootstrap upper");
    assert!(boot.lower < boot.auc && boot.auc < boot.upper, "{boot:?}");

    let table = operating_points(&scores, &positive);
    let want = reference["operating_points"].as_array().expect("operating points");
    assert_eq!(table.len(), want.len());
    for (ours, theirs) in table.iter().zip(want) {
        let at = ours.threshold;
        close(ours.threshold, &theirs["threshold"], "threshold");
        close(ours.sensitivity, &theirs["sensitivity"], &format!("sensitivity at {at}"));
        close(ours.specificity, &theirs["specificity"], &format!("specificity at {at}"));
        close(ours.workload_saved, &theirs["workload_saved"], &format!("workload saved at {at}"));
    }
}

/// `a` and `b` are both null (an undefined figure) or within 1e-6.
fn same(ours: &Value, reference: &Value, what: &str) {
    match (ours.as_f64(), reference.as_f64()) {
        (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-6, "{what}: ours {a}, reference {b}"),
        _ => assert!(
            ours.is_null() && (reference.is_null() || reference == "inf"),
            "{what}: ours {ours}, reference {reference}"
        ),
    }
}

fn same_list(ours: &Value, reference: &Value, what: &str) {
    let (a, b) = (ours.as_array().expect(what), reference.as_array().expect(what));
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        same(x, y, &format!("{what}[{i}]"));
    }
}

/// The `evaluate` command on a real run: every figure in evaluation.json and
/// operating_points.parquet against an independent pyarrow + scikit-learn
/// computation from the studies table and truth.csv.
#[test]
fn the_evaluate_command_matches_scikit_learn_on_a_real_run() {
    let Some(python) = util::python() else { return };
    if util::onnxruntime().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (input, out, report) = (dir.path().join("in"), dir.path().join("out"), dir.path().join("report"));
    util::synth_studies(&input, 80, 11);
    let run = util::nightscreen()
        .args(["run", "--quiet", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let truth = input.join("truth.csv");
    let (resamples, seed) = ("200", "5");
    let evaluate = |truth: &std::path::Path| {
        util::nightscreen()
            .args(["evaluate", "--resamples", resamples, "--seed", seed, "--results"])
            .arg(&out)
            .arg("--reference")
            .arg(truth)
            .arg("--report")
            .arg(&report)
            .output()
            .expect("evaluate")
    };
    let done = evaluate(&truth);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let ours: Value =
        serde_json::from_slice(&std::fs::read(report.join("evaluation.json")).expect("evaluation.json")).expect("json");

    let reference = Command::new(python)
        .arg(util::root().join("tests/evaluate_run_reference.py"))
        .args([&out, &truth])
        .args([resamples, seed])
        .env(nightscreen::privacy::KEY_ENV, util::TEST_KEY)
        .output()
        .expect("reference");
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));
    let theirs: Value = serde_json::from_slice(&reference.stdout).expect("reference json");

    let points = operating_point_rows(&report.join("operating_points.parquet"));
    for level in ["per_eye", "per_study"] {
        for target in ["referable", "r3", "m1", "ungradable"] {
            let (a, b) = (&ours[level][target], &theirs[level][target]);
            let what = format!("{level} {target}");
            assert!(b["positives"].as_u64().is_some_and(|n| n > 0), "{what}: the fixed set has no positives");
            for count in ["cases", "positives", "cases_without_score", "confusion"] {
                assert_eq!(a[count], b[count], "{what} {count}");
            }
            for p in ["sensitivity", "specificity", "ppv", "npv"] {
                for field in ["numerator", "denominator"] {
                    assert_eq!(a[p][field], b[p][field], "{what} {p} {field}");
                }
                for field in ["value", "lower", "upper"] {
                    same(&a[p][field], &b[p][field], &format!("{what} {p} {field}"));
                }
            }
            same(&a["auc"]["auc"], &b["auc"], &format!("{what} auc"));
            same(&a["auc"]["lower"], &b["bootstrap"]["lower"], &format!("{what} auc lower"));
            same(&a["auc"]["upper"], &b["bootstrap"]["upper"], &format!("{what} auc upper"));
            assert_eq!(a["auc"]["resamples"], b["bootstrap"]["resamples"], "{what} resamples");
            for curve in ["false_positive_rate", "true_positive_rate", "thresholds"] {
                same_list(&a["roc"][curve], &b["roc"][curve], &format!("{what} roc {curve}"));
            }
            let bins = a["calibration"].as_array().expect("calibration");
            for field in ["observed", "mean_predicted"] {
                let ours: Vec<Value> = bins.iter().map(|bin| bin[field].clone()).collect();
                same_list(&Value::from(ours), &b["calibration"][field], &format!("{what} calibration {field}"));
            }
            let level_name = level.trim_start_matches("per_");
            let rows: Vec<&[f64; 4]> =
                points.iter().filter(|(l, t, _)| l == level_name && t == target).map(|(_, _, p)| p).collect();
            let want = b["operating_points"].as_array().expect("operating points");
            assert_eq!(rows.len(), want.len(), "{what}: operating points");
            for (row, w) in rows.iter().zip(want) {
                for (i, field) in ["threshold", "sensitivity", "specificity", "workload_saved"].iter().enumerate() {
                    same(&Value::from(row[i]), &w[field], &format!("{what} operating point {field} at {}", row[0]));
                }
            }
        }
    }
    assert_eq!(ours["band_confusion"], theirs["band_confusion"]);
    assert_eq!(ours["matched"]["eyes_without_result"], 0);
    assert_eq!(ours["matched"]["eyes_outside_domain"], 0, "every synthetic fundus photograph is one");

    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 4, "the four plots are embedded");
    for png in ["roc_eye.png", "roc_study.png", "calibration_eye.png", "confusion_bands.png"] {
        let bytes = std::fs::read(report.join(png)).expect(png);
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5_000, "{png}");
    }

    // A reference with a bad grade names its line; a run under another key is refused.
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(&truth).expect("truth");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[4] = lines[4].replacen(",true,", ",maybe,", 1).replacen(",false,", ",maybe,", 1);
    std::fs::write(&bad, lines.join("\n")).expect("write");
    let refused = evaluate(&bad);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("line 5") && stderr.contains("maybe"), "{stderr}");
    let other_key = util::nightscreen()
        .env(nightscreen::privacy::KEY_ENV, "ab".repeat(32))
        .args(["evaluate", "--results"])
        .arg(&out)
        .arg("--reference")
        .arg(&truth)
        .arg("--report")
        .arg(dir.path().join("other"))
        .output()
        .expect("evaluate");
    assert_eq!(other_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other_key.stderr).contains("programme key the run used"));
    assert!(!dir.path().join("other").exists(), "nothing written under the wrong key");
}

/// (level, target, [threshold, sensitivity, specificity, workload saved]) rows.
fn operating_point_rows(path: &std::path::Path) -> Vec<(String, String, [f64; 4])> {
    use arrow_array::{Float64Array, StringArray};
    let file = std::fs::File::open(path).expect("operating_points.parquet");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let text = |name: &str| {
            batch.column_by_name(name).expect(name).as_any().downcast_ref::<StringArray>().expect(name).clone()
        };
        let number = |name: &str| {
            batch.column_by_name(name).expect(name).as_any().downcast_ref::<Float64Array>().expect(name).clone()
        };
        let (level, target) = (text("level"), text("target"));
        let numbers = ["threshold", "sensitivity", "specificity", "workload_saved"].map(number);
        for i in 0..batch.num_rows() {
            rows.push((level.value(i).to_string(), target.value(i).to_string(), numbers.clone().map(|c| c.value(i))));
        }
    }
    rows
}
