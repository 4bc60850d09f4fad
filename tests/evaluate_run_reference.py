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
import tomllib

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
with open(f"{out}/run.json") as f:
    desp = tomllib.loads(json.load(f)["config"]).get("triage", {}).get("desp", {})
# float32, as nightscreen holds them
thresholds = {name: float(np.float32(desp.get(f"{name}_at_least", 0.5))) for name in ("referable", "m1", "r3")}


def rescaled(p, t):
    # The threshold at 0.5, 0 and 1 fixed: ranks as the decision does.
    return 0.5 * p / t if p < t else (0.5 + 0.5 * (p - t) / (1 - t) if t < 1 else 1.0)


def referral_score(p):
    if p("referable") is None:
        return None
    return max(rescaled(p(name), thresholds[name]) for name in ("referable", "m1", "r3") if p(name) is not None)


def predicted(row, side):
    grade = row[f"{side}_eye_grade"] or ""
    r = int(grade[1]) if grade.startswith("R") else None
    m1 = grade.endswith("M1")
    p = lambda name: row[f"{side}_eye_p_{name}"]  # noqa: E731
    g = p("gradable")
    return {
        "grade": grade,
        "referable": (r is not None and r >= 2) or m1, "r3": r == 3, "m1": m1, "ungradable": grade == "U",
        "score": {"referable": referral_score(p), "r3": p("r3"), "m1": p("m1"),
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


def evaluate(cases, probability=True):
    y = [p for p, _, _ in cases]
    called = [c for _, c, _ in cases]
    scored = [(p, s) for p, _, s in cases if s is not None]
    # Counts over every case; curves over the cases with a score.
    result = counts(y, called) | curve([p for p, _ in scored], [s for _, s in scored], resamples, seed)
    result["cases"], result["positives"], result["cases_without_score"] = len(cases), sum(y), len(cases) - len(scored)
    if probability:
        prob_true, prob_pred = calibration_curve([p for p, _ in scored], [s for _, s in scored], n_bins=10, strategy="uniform")
        result["calibration"] = {"observed": prob_true.tolist(), "mean_predicted": prob_pred.tolist()}
    else:  # the referral score ranks, it is not a probability
        result["calibration"] = {"observed": [], "mean_predicted": []}
    return result


report = {"per_eye": {}, "per_study": {}}
for target in ["referable", "r3", "m1", "ungradable"]:
    probability = target != "referable"
    report["per_eye"][target] = evaluate([cases[target] for _, cases in eyes if target in cases], probability)
    report["per_study"][target] = evaluate(study_level(target), probability)
# The referral score is the decision's: at 0.5 it calls exactly the referred eyes.
for _, cases in eyes:
    if "referable" in cases and cases["referable"][2] is not None:
        assert (cases["referable"][2] >= 0.5) == cases["referable"][1], cases["referable"]
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
