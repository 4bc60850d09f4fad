#!/usr/bin/env python3
"""Compare a nightscreen DESP run with the synthetic truth.

Usage: evaluate_desp.py OUT TRUTH_CSV [--json FILE] [--check-targets]

OUT is a `nightscreen run --config configs/desp.toml` output folder; TRUTH_CSV
is the `truth.csv` that `nightscreen synth` wrote beside the studies (one row
per eye: study_uid, eye, r_grade, m_grade, gradable, outcome).

Reports, per eye and per study:
  - referable (R2, R3 or M1) sensitivity and specificity over gradable eyes;
    an eye the pipeline calls U is counted as "not referred" (conservative);
  - R3 sensitivity; ungradable detection (truly ungradable eyes called U);
  - study band vs truth outcome agreement, and whether every truly urgent (R3)
    study stands above every truly disease-free study on the worklist.
With --check-targets, exits 1 unless referable sensitivity >= 97 % with
specificity >= 90 % (per eye) and ungradable detection >= 95 %.
"""
import argparse
import csv
import json
import sys

import pyarrow.dataset as ds


def grade_of(value):
    """'R2', '2', 2 -> 2; 'M1', '1', True -> 1."""
    s = str(value).strip().upper().lstrip("RM")
    return int(s) if s.isdigit() else 0


def truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def parse_pred(label):
    """'R2M1' -> (False, 2, True); 'U' -> (True, 0, False); None -> None."""
    if label is None or label == "":
        return None
    if label == "U":
        return (True, 0, False)
    r = int(label[1])
    m = label.endswith("M1")
    return (False, r, m)


def ratio(num, den):
    return (num / den) if den else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("truth")
    ap.add_argument("--json")
    ap.add_argument("--check-targets", action="store_true")
    args = ap.parse_args()

    studies = ds.dataset(f"{args.out}/studies", format="parquet").to_table().to_pylist()
    by_study = {s["study_uid"]: s for s in studies}
    with open(args.truth, newline="") as f:
        truth = list(csv.DictReader(f))

    eye = {"ref_tp": 0, "ref_fn": 0, "ref_tn": 0, "ref_fp": 0, "r3_tp": 0, "r3_n": 0,
           "u_tp": 0, "u_n": 0, "called_u_gradable": 0, "missing": 0, "n": 0}
    truth_outcome = {}
    study_ref = {}
    for row in truth:
        uid = row["study_uid"]
        truth_outcome[uid] = row.get("outcome", "")
        s = by_study.get(uid)
        col = "right_eye_grade" if row["eye"].upper().startswith("R") else "left_eye_grade"
        pred = parse_pred(s[col]) if s else None
        eye["n"] += 1
        if pred is None:
            eye["missing"] += 1
            continue
        called_u, pr, pm = pred
        t_grad = truthy(row["gradable"])
        tr, tm = grade_of(row["r_grade"]), grade_of(row["m_grade"])
        if not t_grad:
            eye["u_n"] += 1
            eye["u_tp"] += called_u
            continue
        t_ref = tr >= 2 or tm == 1
        p_ref = (not called_u) and (pr >= 2 or pm)
        eye["called_u_gradable"] += called_u
        key = ("ref_tp" if p_ref else "ref_fn") if t_ref else ("ref_fp" if p_ref else "ref_tn")
        eye[key] += 1
        if tr == 3:
            eye["r3_n"] += 1
            eye["r3_tp"] += (not called_u) and pr == 3
        st = study_ref.setdefault(uid, [False, False])
        st[0] |= t_ref
        st[1] |= p_ref

    s_tp = sum(1 for t, p in study_ref.values() if t and p)
    s_fn = sum(1 for t, p in study_ref.values() if t and not p)
    s_tn = sum(1 for t, p in study_ref.values() if not t and not p)
    s_fp = sum(1 for t, p in study_ref.values() if not t and p)

    agree = sum(1 for uid, o in truth_outcome.items() if uid in by_study and by_study[uid]["band"] == o)
    confusion = {}
    for uid, o in truth_outcome.items():
        band = by_study[uid]["band"] if uid in by_study else "MISSING"
        confusion.setdefault(o, {}).setdefault(band, 0)
        confusion[o][band] += 1
    urgent_ranks = [by_study[u]["rank"] for u, o in truth_outcome.items() if o == "URGENT" and u in by_study]
    clean_ranks = [by_study[u]["rank"] for u, o in truth_outcome.items() if o == "NO_DISEASE" and u in by_study]
    ordered = (not urgent_ranks or not clean_ranks) or max(urgent_ranks) < min(clean_ranks)

    report = {
        "eyes": eye["n"], "eyes_without_result": eye["missing"],
        "referable_sensitivity_eye": ratio(eye["ref_tp"], eye["ref_tp"] + eye["ref_fn"]),
        "referable_specificity_eye": ratio(eye["ref_tn"], eye["ref_tn"] + eye["ref_fp"]),
        "referable_sensitivity_study": ratio(s_tp, s_tp + s_fn),
        "referable_specificity_study": ratio(s_tn, s_tn + s_fp),
        "r3_sensitivity_eye": ratio(eye["r3_tp"], eye["r3_n"]),
        "ungradable_detected_eye": ratio(eye["u_tp"], eye["u_n"]),
        "gradable_eyes_called_ungradable": eye["called_u_gradable"],
        "counts": {"referable_eyes": eye["ref_tp"] + eye["ref_fn"], "non_referable_eyes": eye["ref_tn"] + eye["ref_fp"],
                   "r3_eyes": eye["r3_n"], "ungradable_eyes": eye["u_n"], "studies": len(truth_outcome)},
        "study_band_agreement": ratio(agree, len(truth_outcome)),
        "band_confusion_truth_to_pipeline": confusion,
        "every_urgent_above_every_no_disease": ordered,
    }
    text = json.dumps(report, indent=2, sort_keys=True)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    if args.check_targets:
        ok = (report["referable_sensitivity_eye"] >= 0.97 and report["referable_specificity_eye"] >= 0.90
              and report["ungradable_detected_eye"] >= 0.95 and ordered and eye["missing"] == 0)
        if not ok:
            print("evaluate_desp: targets NOT met", file=sys.stderr)
            sys.exit(1)
        print("evaluate_desp: targets met", file=sys.stderr)


if __name__ == "__main__":
    main()
