#!/usr/bin/env python3
"""Compare a nightscreen DESP run with the synthetic truth.

Usage: evaluate_desp.py OUT TRUTH_CSV [--json FILE] [--check-targets] [--card CARD.toml]

OUT is a `nightscreen run --config configs/desp.toml` output folder (its
worklist.csv is read; standard library only); TRUTH_CSV
is the `truth.csv` that `nightscreen synth` wrote beside the studies (one row
per eye: study_uid, eye, r_grade, m_grade, gradable, outcome).

Reports, per eye and per study:
  - referable (R2, R3 or M1) sensitivity and specificity over gradable eyes;
    an eye the pipeline calls U is counted as "not referred" (conservative);
  - R3 sensitivity; ungradable detection (truly ungradable eyes called U);
  - study band vs truth outcome agreement, and whether every truly urgent (R3)
    study stands above every truly disease-free study on the worklist.
With --check-targets, prints each target as met or missed and exits 1 unless
referable sensitivity >= 97 % with specificity >= 90 % (per eye), ungradable
detection >= 95 %, every R3 study above every R0M0 study and no eye without
a result (R3 specificity >= 90 % is printed, not enforced: not met yet).
With --card, exits 1 unless every figure in the card's [evaluation] table
equals the one computed here (to the 4 decimals the card prints): this is how
`make evaluate` shows the card's held-out figures are reproduced.
"""
import argparse
import csv
import json
import sys
import tomllib



def grade_of(value):
    """'R2', '2', 2 -> 2; 'M1', '1', True -> 1."""
    s = str(value).strip().upper().lstrip("RM")
    return int(s) if s.isdigit() else 0


def truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def parse_pred(label):
    """'R2M1' -> (False, 2, True); 'U' -> (True, 0, False); None -> None.

    'OOD' (outside the model's domain: not graded) -> (False, -1, False): it
    neither detects an ungradable eye nor refers one, so it counts as a miss
    wherever the truth needed either."""
    if label is None or label == "":
        return None
    if label == "U":
        return (True, 0, False)
    if label == "OOD":
        return (False, -1, False)
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
    ap.add_argument("--card", help="model card whose [evaluation] figures must be reproduced")
    args = ap.parse_args()

    # The worklist, not the studies table: it keeps the real StudyInstanceUID
    # that truth.csv is keyed by (the analyst tables need not), and reading
    # it takes nothing beyond the standard library.
    with open(f"{args.out}/worklist.csv", newline="") as f:
        studies = list(csv.DictReader(f))
    for s in studies:
        s["rank"] = int(s["rank"])
    by_study = {s["study_uid"]: s for s in studies}
    with open(args.truth, newline="") as f:
        truth = list(csv.DictReader(f))

    eye = {"ref_tp": 0, "ref_fn": 0, "ref_tn": 0, "ref_fp": 0, "r3_tp": 0, "r3_n": 0, "r3_tn": 0, "r3_neg": 0,
           "u_tp": 0, "u_n": 0, "called_u_gradable": 0, "missing": 0, "n": 0, "ood": 0}
    truth_outcome = {}
    study_ref = {}
    for row in truth:
        uid = row["study_uid"]
        truth_outcome[uid] = row.get("outcome", "")
        s = by_study.get(uid)
        col = "right_eye" if row["eye"].upper().startswith("R") else "left_eye"
        pred = parse_pred(s[col]) if s else None
        eye["n"] += 1
        if pred is None:
            eye["missing"] += 1
            continue
        called_u, pr, pm = pred
        eye["ood"] += pr < 0
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
        else:
            eye["r3_neg"] += 1
            eye["r3_tn"] += called_u or pr != 3
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
        "r3_specificity_eye": ratio(eye["r3_tn"], eye["r3_neg"]),
        "ungradable_detected_eye": ratio(eye["u_tp"], eye["u_n"]),
        "gradable_eyes_called_ungradable": eye["called_u_gradable"],
        # The domain gate's figure on synthetic fundus photographs: eyes it
        # recognised in none of their images (each one is a miss).
        "eyes_outside_domain": eye["ood"],
        "counts": {"referable_eyes": eye["ref_tp"] + eye["ref_fn"], "non_referable_eyes": eye["ref_tn"] + eye["ref_fp"],
                   "r3_eyes": eye["r3_n"], "ungradable_eyes": eye["u_n"], "studies": len(truth_outcome)},
        "study_band_agreement": ratio(agree, len(truth_outcome)),
        "band_confusion_truth_to_pipeline": confusion,
        "every_urgent_above_every_no_disease": ordered,
    }
    print_summary(report)
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if args.check_targets:
        check_targets(report, eye["missing"])
    if args.card:
        check_card(args.card, report)


def check_targets(r, missing):
    """Prints every issue-16 target as met or missed; exits 1 when one the
    shipped model is held to is missed. R3 specificity (>= 90 % at >= 95 %
    R3 sensitivity) is reported, not enforced: no model here meets it yet."""
    held = [
        ("referable sensitivity >= 97 %", r["referable_sensitivity_eye"] >= 0.97),
        ("referable specificity >= 90 %", r["referable_specificity_eye"] >= 0.90),
        ("ungradable detected >= 95 %", r["ungradable_detected_eye"] >= 0.95),
        ("every R3 study above every R0M0 study", r["every_urgent_above_every_no_disease"]),
        ("every eye has a result", missing == 0),
    ]
    reported = [("R3 specificity >= 90 % at R3 sensitivity >= 95 %",
                 r["r3_sensitivity_eye"] >= 0.95 and r["r3_specificity_eye"] >= 0.90)]
    for name, ok in held + reported:
        print(f"evaluate_desp: {'met    ' if ok else 'MISSED '} {name}", file=sys.stderr)
    if not all(ok for _, ok in held):
        print("evaluate_desp: targets NOT met", file=sys.stderr)
        sys.exit(1)
    missed = [name for name, ok in reported if not ok]
    print("evaluate_desp: enforced targets met" + (f"; still missed: {'; '.join(missed)}" if missed else ""),
          file=sys.stderr)


def print_summary(r):
    pct = lambda v: f"{100 * v:5.1f} %"
    c = r["counts"]
    print(f"{c['studies']} studies, {r['eyes']} eyes: {c['referable_eyes']} referable, "
          f"{c['non_referable_eyes']} not referable, {c['r3_eyes']} R3, {c['ungradable_eyes']} ungradable "
          f"(truth); {r['eyes_without_result']} without a result")
    print(f"referable (R2/R3/M1)  sensitivity {pct(r['referable_sensitivity_eye'])} per eye, "
          f"{pct(r['referable_sensitivity_study'])} per study; specificity {pct(r['referable_specificity_eye'])} "
          f"per eye, {pct(r['referable_specificity_study'])} per study")
    print(f"R3 sensitivity {pct(r['r3_sensitivity_eye'])}, specificity {pct(r['r3_specificity_eye'])} per eye; ungradable eyes detected "
          f"{pct(r['ungradable_detected_eye'])}; gradable eyes called U: {r['gradable_eyes_called_ungradable']}; "
          f"eyes outside the model's domain (OOD): {r['eyes_outside_domain']}")
    print(f"study band = truth outcome for {pct(r['study_band_agreement'])} of studies; every URGENT study "
          f"above every NO_DISEASE study: {'yes' if r['every_urgent_above_every_no_disease'] else 'NO'}")
    bands = ["URGENT", "ROUTINE", "UNGRADABLE", "REVIEW", "NO_DISEASE"]
    conf = r["band_confusion_truth_to_pipeline"]
    cols = bands + sorted({b for row in conf.values() for b in row} - set(bands))
    print("truth \\ pipeline " + " ".join(f"{b:>10}" for b in cols))
    for t in [b for b in bands if b in conf] + sorted(set(conf) - set(bands)):
        print(f"{t:>17} " + " ".join(f"{conf[t].get(b, 0):>10}" for b in cols))


def check_card(card_path, report):
    """Every numeric figure in the card's [evaluation] must match the report."""
    with open(card_path, "rb") as f:
        evaluation = tomllib.load(f).get("evaluation")
    if not evaluation:
        sys.exit(f"evaluate_desp: {card_path} has no [evaluation] table")
    flat = {**report, **report["counts"]}
    wrong = []
    for key, want in evaluation.items():
        # real_*: the real-photograph check, reproduced by tests/photos.rs
        # (tools/photo_report.py --json), not by this synthetic batch.
        if isinstance(want, str) or key.startswith("real_"):
            continue
        got = flat.get(key)
        if got is None or abs(got - want) > 5.1e-5:
            wrong.append(f"{key}: card {want}, measured {got}")
    if wrong:
        print("evaluate_desp: the card's figures are NOT reproduced:\n  " + "\n  ".join(wrong), file=sys.stderr)
        sys.exit(1)
    print(f"evaluate_desp: all {sum(not isinstance(v, str) and not k.startswith('real_') for k, v in evaluation.items())} "
          "synthetic figures in "
          f"{card_path} [evaluation] reproduced", file=sys.stderr)


if __name__ == "__main__":
    main()
