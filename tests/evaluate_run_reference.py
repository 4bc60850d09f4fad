"""Reference for `nightscreen evaluate` (tests/evaluate.rs): the same
figures from a run's studies table and truth.csv, computed independently
with pyarrow, scikit-learn and SciPy.

Usage: evaluate_run_reference.py OUT TRUTH_CSV RESAMPLES SEED (key in
NIGHTSCREEN_KEY). Prints {"per_eye": {target: figures}, "per_study": ...,
"calibration": {target: [[lower, upper, cases, mean_predicted, observed]]},
"band_confusion": ...}.
"""
import csv
import glob
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq
from sklearn.calibration import calibration_curve

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from evaluate_reference import counts, curve  # noqa: E402
from pseudonym import load_key, pseudonym  # noqa: E402

out, truth_path, resamples, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
key = load_key()
rows = pq.read_table(glob.glob(f"{out}/studies/*.parquet")).to_pylist()
by_pseudonym = {r["study_pseudonym"]: r for r in rows}
with open(truth_path, newline="") as f:
    truth = list(csv.DictReader(f))


def predicted(row, side):
    grade = row[f"{side}_eye_grade"] or ""
    r = int(grade[1]) if grade.startswith("R") else None
    m1 = grade.endswith("M1")
    p = lambda name: row[f"{side}_eye_p_{name}"]  # noqa: E731
    g = p("gradable")
    return {
        "grade": grade,
        "referable": (r is not None and r >= 2) or m1, "r3": r == 3, "m1": m1, "ungradable": grade == "U",
        "score": {"referable": p("referable"), "r3": p("r3"), "m1": p("m1"),
                  "ungradable": None if g is None else 1.0 - g},
    }


eyes = []  # (study_uid, target -> (positive, called, score)) in truth order
for t in truth:
    row = by_pseudonym.get(pseudonym(key, "study", t["study_uid"]))
    if row is None:
        continue
    pred = predicted(row, "right" if t["eye"].upper().startswith("R") else "left")
    if not pred["grade"]:
        continue
    gradable = t["gradable"].strip().lower() == "true"
    r = int(t["r_grade"][1]) if gradable else 0
    m1 = gradable and t["m_grade"] == "M1"
    truth_of = {"referable": r >= 2 or m1, "r3": r == 3, "m1": m1, "ungradable": not gradable}
    cases = {}
    for target in ["referable", "r3", "m1", "ungradable"]:
        if target != "ungradable" and not gradable:
            continue
        cases[target] = (truth_of[target], pred[target], pred["score"][target])
    eyes.append((t["study_uid"], cases))


def study_level(target):
    order, grouped = [], {}
    for uid, cases in eyes:
        if target not in cases:
            continue
        if uid not in grouped:
            order.append(uid)
            grouped[uid] = []
        grouped[uid].append(cases[target])
    result = []
    for uid in order:
        cs = grouped[uid]
        scores = [s for _, _, s in cs if s is not None]
        result.append((any(p for p, _, _ in cs), any(c for _, c, _ in cs), max(scores) if scores else None))
    return result


def evaluate(cases):
    y = [p for p, _, _ in cases]
    called = [c for _, c, _ in cases]
    scored = [(p, s) for p, _, s in cases if s is not None]
    # Counts over every case; curves over the cases with a score.
    result = counts(y, called) | curve([p for p, _ in scored], [s for _, s in scored], resamples, seed)
    result["cases"], result["positives"], result["cases_without_score"] = len(cases), sum(y), len(cases) - len(scored)
    prob_true, prob_pred = calibration_curve([p for p, _ in scored], [s for _, s in scored], n_bins=10, strategy="uniform")
    result["calibration"] = {"observed": prob_true.tolist(), "mean_predicted": prob_pred.tolist()}
    return result


report = {"per_eye": {}, "per_study": {}}
for target in ["referable", "r3", "m1", "ungradable"]:
    report["per_eye"][target] = evaluate([cases[target] for _, cases in eyes if target in cases])
    report["per_study"][target] = evaluate(study_level(target))
confusion = {}
for t in truth:
    if t.get("outcome"):
        row = by_pseudonym.get(pseudonym(key, "study", t["study_uid"]))
        confusion.setdefault(t["study_uid"], (t["outcome"], row["band"] if row else "MISSING"))
bands = {}
for outcome, band in confusion.values():
    bands.setdefault(outcome, {}).setdefault(band, 0)
    bands[outcome][band] += 1
report["band_confusion"] = bands
print(json.dumps(report))
