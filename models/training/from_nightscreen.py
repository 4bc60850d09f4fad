"""Turn a nightscreen run's images/ table into the probabilities CSV evaluate.py reads.

    .deps/venv/bin/python models/training/from_nightscreen.py OUT probs.csv [--compare python_probs.csv]

So the card's figures can be reproduced through the real binary (its own DICOM
decoder and resize) instead of the Python preprocessing. Needs pyarrow (.deps/venv).
With --compare, prints the largest difference from predict.py's probabilities.
"""
import argparse
import csv

import pyarrow.dataset as ds

LABELS = ["r0", "r1", "r2", "r3", "m1", "gradable"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("csv")
    ap.add_argument("--model", default="dr-screen")
    ap.add_argument("--compare")
    a = ap.parse_args()

    rows = ds.dataset(f"{a.out}/images", format="parquet").to_table(
        columns=["sop_instance_uid", "model_id", "labels", "outputs"]).to_pylist()
    probs = {}
    for r in rows:
        if r["model_id"] == a.model:
            probs[r["sop_instance_uid"]] = [r["outputs"][r["labels"].index(k)] for k in LABELS]
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sop_instance_uid"] + LABELS)
        for uid, p in probs.items():
            w.writerow([uid] + [f"{v:.6g}" for v in p])
    print(f"{len(probs)} images scored by {a.model} -> {a.csv}")
    if a.compare:
        with open(a.compare, newline="") as f:
            ref = {r["sop_instance_uid"]: [float(r[k]) for k in LABELS] for r in csv.DictReader(f)}
        common = [u for u in probs if u in ref]
        diffs = [max(abs(x - y) for x, y in zip(probs[u], ref[u])) for u in common]
        diffs.sort()
        print(f"vs {a.compare}: {len(common)} images in common; |difference| max {diffs[-1]:.4f}, "
              f"median {diffs[len(diffs) // 2]:.5f}, 99th percentile {diffs[int(0.99 * (len(diffs) - 1))]:.4f}")


if __name__ == "__main__":
    main()
