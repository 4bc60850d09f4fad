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
