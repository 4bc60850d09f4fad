"""DESP-style evaluation of per-image probabilities against a synthetic batch's truth.

Choose operating thresholds on the validation batch:
    python evaluate.py --probs val_probs.csv --truth VALDIR --choose thresholds.json
Report on the held-out batch with those thresholds:
    python evaluate.py --probs test_probs.csv --truth TESTDIR --thresholds thresholds.json [--json metrics.json]

Image -> eye -> study, as the English DESP grades:
- an image is gradable when p(gradable) >= t_gradable;
- an eye with no gradable image is U; otherwise its grade is the worst over its
  gradable images: referable when p(r2)+p(r3) >= t_referable or p(m1) >= t_m1,
  R3 when p(r3) >= t_r3;
- a study takes the worse eye.
Truth: an eye is referable when gradable and R2, R3 or M1 (truth.csv), U when not gradable.
Needs only numpy and the standard library.
"""
import argparse
import csv
import json
import os
from collections import defaultdict

import numpy as np

# Margins over the targets (97 % referable sensitivity, 95 % ungradable detection)
# when thresholds are chosen on the validation batch.
TARGET = {"referable_sens": 0.99, "r3_sens": 0.98, "ungradable_sens": 0.98}


def grade(value, prefix):
    v = value.strip().upper()
    if v.startswith(prefix):
        v = v[len(prefix):]
    return int(v) if v.isdigit() else -1


def truthy(value):
    return value.strip().lower() in ("1", "true", "yes", "y", "t")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Batch:
    """Per-image probabilities joined to per-image and per-eye truth."""

    def __init__(self, probs_csv, truth_dir):
        probs = {r["sop_instance_uid"]: r for r in read_csv(probs_csv)}
        images = read_csv(os.path.join(truth_dir, "truth_images.csv"))
        eyes = read_csv(os.path.join(truth_dir, "truth.csv"))
        self.missing = [r["sop_instance_uid"] for r in images if r["sop_instance_uid"] not in probs]
        self.eye_keys = [(r["study_uid"], r["eye"]) for r in eyes]
        index = {k: i for i, k in enumerate(self.eye_keys)}
        self.eye_r = np.array([grade(r["r_grade"], "R") for r in eyes])
        self.eye_m = np.array([grade(r["m_grade"], "M") for r in eyes])
        self.eye_gradable = np.array([truthy(r["gradable"]) for r in eyes])
        self.eye_study = np.array([r["study_uid"] for r in eyes])
        self.outcome = {r["study_uid"]: r["outcome"] for r in eyes}
        labels = ["r0", "r1", "r2", "r3", "m1", "gradable"]
        kept = [r for r in images if r["sop_instance_uid"] in probs]
        # An image nightscreen could not score is treated as ungradable (p = 0).
        self.p = np.array([[float(probs[r["sop_instance_uid"]][k]) for k in labels] for r in kept])
        self.img_eye = np.array([index[(r["study_uid"], r["eye"])] for r in kept])
        self.img_gradable = np.array([truthy(r["gradable"]) for r in kept])
        self.img_r = np.array([grade(r["r_grade"], "R") for r in kept])
        self.img_m = np.array([grade(r["m_grade"], "M") for r in kept])

    def eyes(self, t):
        """Per-eye predictions (U, referable, R3) under thresholds t."""
        n = len(self.eye_keys)
        ok = self.p[:, 5] >= t["gradable"]
        ref = ok & ((self.p[:, 2] + self.p[:, 3] >= t["referable"]) | (self.p[:, 4] >= t["m1"]))
        r3 = ok & (self.p[:, 3] >= t["r3"])
        dr = ok & (self.p[:, 1] + self.p[:, 2] + self.p[:, 3] >= t.get("any_dr", 0.5))
        u = np.ones(n, bool)
        pref, pr3, pdr = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
        np.logical_and.at(u, self.img_eye, ~ok)
        np.logical_or.at(pref, self.img_eye, ref)
        np.logical_or.at(pr3, self.img_eye, r3)
        np.logical_or.at(pdr, self.img_eye, dr)
        return u, pref, pr3, pdr

    def metrics(self, t):
        u, pref, pr3, pdr = self.eyes(t)
        g = self.eye_gradable
        truth_ref = g & ((self.eye_r >= 2) | (self.eye_m == 1))
        truth_neg = g & ~truth_ref
        truth_r3 = g & (self.eye_r == 3)
        out = {
            "eyes": int(len(g)), "eyes_referable": int(truth_ref.sum()), "eyes_non_referable": int(truth_neg.sum()),
            "eyes_r3": int(truth_r3.sum()), "eyes_ungradable": int((~g).sum()),
            # Strict: a referable eye called U counts as missed.
            "eye_referable_sens": frac(pref & ~u, truth_ref),
            "eye_referable_or_u_sens": frac(pref | u, truth_ref),
            "eye_referable_spec": frac(~pref & ~u, truth_neg),
            "eye_r3_sens": frac(pr3 & ~u, truth_r3),
            "eye_r3_spec": frac(~pr3, g & ~truth_r3),
            # Any DR (R1 or worse, or M1) vs R0M0, the REVIEW / NO_DISEASE split.
            "eye_any_dr_sens": frac(pdr & ~u, g & ((self.eye_r >= 1) | (self.eye_m == 1))),
            "eye_any_dr_spec": frac(~pdr & ~u, g & (self.eye_r == 0) & (self.eye_m == 0)),
            "eye_ungradable_sens": frac(u, ~g),
            "eye_false_u_rate": frac(u, g),
        }
        # Studies: the worse eye. Negative = both eyes gradable and non-referable.
        studies = sorted(set(self.eye_study))
        sidx = {s: i for i, s in enumerate(studies)}
        k = np.array([sidx[s] for s in self.eye_study])
        ns = len(studies)

        def any_(v):
            acc = np.zeros(ns, bool)
            np.logical_or.at(acc, k, v)
            return acc

        def all_(v):
            acc = np.ones(ns, bool)
            np.logical_and.at(acc, k, v)
            return acc

        s_ref, s_neg = any_(truth_ref), all_(truth_neg)
        s_pref, s_u = any_(pref & ~u), any_(u)
        out.update({
            "studies": ns, "studies_referable": int(s_ref.sum()), "studies_negative": int(s_neg.sum()),
            "study_referable_sens": frac(s_pref, s_ref),
            "study_referable_spec": frac(~s_pref & ~s_u, s_neg),
            "study_r3_sens": frac(any_(pr3 & ~u), any_(truth_r3)),
        })
        ig = self.img_gradable
        iok = self.p[:, 5] >= t["gradable"]
        out.update({
            "images": int(len(ig)), "images_ungradable": int((~ig).sum()), "images_unscored": len(self.missing),
            "image_ungradable_sens": frac(~iok, ~ig),
            "image_false_ungradable_rate": frac(~iok, ig),
        })
        # How the per-image R grades separate (gradable images, argmax of R0..R3).
        gi = ig & (self.img_r >= 0)
        conf = np.zeros((4, 4), int)
        np.add.at(conf, (self.img_r[gi], self.p[gi, :4].argmax(1)), 1)
        out["image_r_confusion_truth_by_argmax"] = conf.tolist()
        return out


def frac(hit, among):
    n = int(np.sum(among))
    return float(np.sum(hit & among) / n) if n else float("nan")


def logit_mid(a, b):
    """Midpoint of two probabilities in logit space."""
    lo = lambda p: np.log(np.clip(p, 1e-7, 1 - 1e-7) / (1 - np.clip(p, 1e-7, 1 - 1e-7)))
    return float(1 / (1 + np.exp(-(lo(a) + lo(b)) / 2)))


def threshold_for(pos_scores, neg_scores, sens):
    """Threshold t (score >= t is positive) with the best specificity among those
    keeping sensitivity >= sens, then the best sensitivity; placed in the middle
    (logit space) of the gap between the two scores it falls between."""
    pos, neg = np.asarray(pos_scores, float), np.asarray(neg_scores, float)
    s = np.unique(np.concatenate([pos, neg]))
    cuts = [s[0] / 2] + [logit_mid(a, b) for a, b in zip(s[:-1], s[1:])]
    best = None
    for c in cuts:
        se, sp = np.mean(pos >= c), np.mean(neg < c)
        key = (se >= sens, sp if se >= sens else se, se)
        if best is None or key > best[0]:
            best = (key, c)
    return float(best[1])


def choose(b):
    """Thresholds from a validation batch, in order: gradable, then referable pair, then R3."""
    t = {}
    # Gradable: per image, catch >= 98 % of ungradable images (score = 1 - p(gradable)).
    bad = 1 - b.p[:, 5]
    tu = threshold_for(bad[~b.img_gradable], bad[b.img_gradable], TARGET["ungradable_sens"])
    t["gradable"] = 1 - tu
    # Referable: per eye, grid over (t_referable, t_m1); max specificity at sensitivity >= target.
    grid = np.unique(np.concatenate([np.geomspace(0.002, 0.98, 80), [0.5]]))
    scored = []
    for tr in grid:
        for tm in grid:
            m = b.metrics({**t, "referable": tr, "m1": tm, "r3": 0.5})
            ok = m["eye_referable_sens"] >= TARGET["referable_sens"]
            # Feasible pairs first, then specificity, then sensitivity; if none
            # is feasible, the most sensitive pair.
            scored.append(((ok, round(m["eye_referable_spec"], 6), round(m["eye_referable_sens"], 6)), tr, tm))
    top = max(k for k, _, _ in scored)
    ties = sorted((np.log(tr) + np.log(tm), tr, tm) for k, tr, tm in scored if k == top)
    _, t["referable"], t["m1"] = ties[len(ties) // 2]  # the middle of the equally good pairs
    t["referable"], t["m1"] = float(t["referable"]), float(t["m1"])
    # R3: per gradable image of R3 eyes, the eye's best image must reach t_r3.
    u, _, _, _ = b.eyes({**t, "r3": 0.5})
    r3_eye = np.zeros(len(b.eye_keys))
    ok = b.p[:, 5] >= t["gradable"]
    np.maximum.at(r3_eye, b.img_eye[ok], b.p[ok, 3])
    g = b.eye_gradable & ~u
    pos = g & (b.eye_r == 3)
    t["r3"] = threshold_for(r3_eye[pos], r3_eye[g & ~pos], TARGET["r3_sens"])
    # Any DR (R1+ or M1 vs R0M0, per eye): the threshold with the largest
    # sensitivity + specificity (R1 has no referral target; it sets REVIEW vs NO_DISEASE).
    dr_eye = np.zeros(len(b.eye_keys))
    np.maximum.at(dr_eye, b.img_eye[ok], b.p[ok, 1] + b.p[ok, 2] + b.p[ok, 3])
    pos = g & ((b.eye_r >= 1) | (b.eye_m == 1))
    neg = g & ~pos
    cands = np.unique(dr_eye[g])
    j = [np.mean(dr_eye[pos] >= c) + np.mean(dr_eye[neg] < c) for c in cands]
    i = int(np.argmax(j))
    t["any_dr"] = logit_mid(cands[i], cands[i - 1]) if i > 0 else float(cands[i])
    return {k: round(v, 4) for k, v in t.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probs", required=True)
    ap.add_argument("--truth", required=True, help="folder with truth.csv and truth_images.csv")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--choose", help="write thresholds chosen on this batch to this JSON file")
    g.add_argument("--thresholds", help="JSON file of thresholds to evaluate")
    ap.add_argument("--json", help="write the metrics to this JSON file")
    a = ap.parse_args()

    b = Batch(a.probs, a.truth)
    if b.missing:
        print(f"warning: {len(b.missing)} images have no probabilities (counted as unscored)")
    if a.choose:
        t = choose(b)
        with open(a.choose, "w") as f:
            json.dump(t, f, indent=2)
        print("thresholds:", json.dumps(t))
    else:
        with open(a.thresholds) as f:
            t = json.load(f)
    m = b.metrics(t)
    m["thresholds"] = t
    for k, v in m.items():
        print(f"{k:36s} {v:.4f}" if isinstance(v, float) else f"{k:36s} {v}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(m, f, indent=2)


if __name__ == "__main__":
    main()
