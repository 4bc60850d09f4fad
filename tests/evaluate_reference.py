"""Reference figures for tests/evaluate.rs from scikit-learn and SciPy.

Reads {"scores": [...], "positive": [...], "called": [...]} on stdin and
prints the same figures nightscreen's evaluate::metrics computes.
"""
import json
import sys

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve


def wilson(k, n):
    if n == 0:
        return {"numerator": k, "denominator": n, "value": None, "lower": None, "upper": None}
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"numerator": k, "denominator": n, "value": k / n, "lower": ci.low, "upper": ci.high}


def splitmix64(state):
    mask = (1 << 64) - 1
    while True:
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        yield z ^ (z >> 31)


def bootstrap_auc(y, scores, resamples, seed):
    rng = splitmix64(seed)
    n = len(y)
    aucs = []
    for _ in range(resamples):
        idx = np.array([next(rng) % n for _ in range(n)])
        if y[idx].all() or not y[idx].any():
            continue
        aucs.append(roc_auc_score(y[idx], scores[idx]))
    return {"lower": float(np.percentile(aucs, 2.5)), "upper": float(np.percentile(aucs, 97.5)), "resamples": len(aucs)}


def counts(y, called):
    """Confusion counts and the four proportions with Wilson intervals."""
    tn, fp, fn, tp = confusion_matrix(np.asarray(y, dtype=bool), np.asarray(called, dtype=bool), labels=[False, True]).ravel()
    tn, fp, fn, tp = int(tn), int(fp), int(fn), int(tp)
    return {
        "confusion": {"true_positive": tp, "false_positive": fp, "true_negative": tn, "false_negative": fn},
        "sensitivity": wilson(tp, tp + fn),
        "specificity": wilson(tn, tn + fp),
        "ppv": wilson(tp, tp + fp),
        "npv": wilson(tn, tn + fn),
    }


def curve(y, scores, resamples, seed):
    """ROC curve, AUC with its bootstrap interval, and operating points."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
    return {
        "roc": {"false_positive_rate": fpr.tolist(), "true_positive_rate": tpr.tolist(),
                "thresholds": [t if np.isfinite(t) else "inf" for t in thresholds.tolist()]},
        "auc": float(roc_auc_score(y, scores)),
        "bootstrap": bootstrap_auc(y, scores, resamples, seed),
        # Per ROC point after the first: sensitivity, specificity, and the share
        # of cases below the threshold, counted directly.
        "operating_points": [
            {"threshold": t, "sensitivity": r, "specificity": 1 - f, "workload_saved": float(np.mean(scores < t))}
            for f, r, t in zip(fpr[1:].tolist(), tpr[1:].tolist(), thresholds[1:].tolist())
        ],
    }


if __name__ == "__main__":
    data = json.load(sys.stdin)
    print(json.dumps(counts(data["positive"], data["called"]) | curve(data["positive"], data["scores"], data["resamples"], data["seed"])))
