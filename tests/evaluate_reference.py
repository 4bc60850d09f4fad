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
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"numerator": k, "denominator": n, "value": k / n, "lower": ci.low, "upper": ci.high}


data = json.load(sys.stdin)
y = np.array(data["positive"], dtype=bool)
scores = np.array(data["scores"], dtype=float)
called = np.array(data["called"], dtype=bool)
tn, fp, fn, tp = confusion_matrix(y, called, labels=[False, True]).ravel()
tn, fp, fn, tp = int(tn), int(fp), int(fn), int(tp)
fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
print(json.dumps({
    "confusion": {"true_positive": tp, "false_positive": fp, "true_negative": tn, "false_negative": fn},
    "sensitivity": wilson(tp, tp + fn),
    "specificity": wilson(tn, tn + fp),
    "ppv": wilson(tp, tp + fp),
    "npv": wilson(tn, tn + fn),
    "roc": {"false_positive_rate": fpr.tolist(), "true_positive_rate": tpr.tolist(),
            "thresholds": [t if np.isfinite(t) else "inf" for t in thresholds.tolist()]},
    "auc": float(roc_auc_score(y, scores)),
    # Per ROC point after the first: sensitivity, specificity, and the share
    # of cases below the threshold, counted directly.
    "operating_points": [
        {"threshold": t, "sensitivity": r, "specificity": 1 - f, "workload_saved": float(np.mean(scores < t))}
        for f, r, t in zip(fpr[1:].tolist(), tpr[1:].tolist(), thresholds[1:].tolist())
    ],
}))
