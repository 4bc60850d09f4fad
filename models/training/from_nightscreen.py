"""Turn a nightscreen run's images/ table into the probabilities CSV evaluate.py reads.

    .deps/venv/bin/python models/training/from_nightscreen.py OUT probs.csv --key-file KEY --truth DIR \
        [--compare python_probs.csv]

So the card's figures can be reproduced through the real binary (its own DICOM
decoder and resize) instead of the Python preprocessing. Needs pyarrow (.deps/venv).
The images/ table names instances only by keyed pseudonyms (HMAC-SHA256 under
the run's key, tools/pseudonym.py): each SOP Instance UID of DIR/truth_images.csv
is pseudonymised with KEY to find its row, and the CSV is written with the real
UIDs evaluate.py joins on. With --compare, prints the largest difference from
predict.py's probabilities.
"""
import argparse
import csv
import hashlib
import hmac
import os

import pyarrow.dataset as ds

LABELS = ["r0", "r1", "r2", "r3", "m1", "gradable"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("csv")
    ap.add_argument("--model", default="dr-screen")
    ap.add_argument("--key-file", required=True, help="the key the run used (nightscreen keygen)")
    ap.add_argument("--truth", required=True, help="the batch's folder (truth_images.csv)")
    ap.add_argument("--compare")
    a = ap.parse_args()

    with open(a.key_file) as f:
        key = bytes.fromhex(f.read().strip())
    with open(os.path.join(a.truth, "truth_images.csv"), newline="") as f:
        uids = [r["sop_instance_uid"] for r in csv.DictReader(f)]
    # tools/pseudonym.py: first 16 bytes of HMAC-SHA256(key, b"instance\0" + uid), hex.
    uid_of = {hmac.new(key, b"instance\0" + u.encode(), hashlib.sha256).hexdigest()[:32]: u for u in uids}
    rows = ds.dataset(f"{a.out}/images", format="parquet").to_table(
        columns=["instance_pseudonym", "model_id", "labels", "outputs"]).to_pylist()
    probs, unknown, unscored = {}, 0, 0
    for r in rows:
        if r["model_id"] == a.model:
            uid = uid_of.get(r["instance_pseudonym"])
            if uid is None:
                unknown += 1
                continue
            if r["outputs"] is None:  # not scored (e.g. outside a domain gate): evaluate.py counts it ungradable
                unscored += 1
                continue
            probs[uid] = [r["outputs"][r["labels"].index(k)] for k in LABELS]
    if unknown:
        raise SystemExit(f"{unknown} scored images are not in {a.truth}/truth_images.csv under this key")
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sop_instance_uid"] + LABELS)
        for uid, p in probs.items():
            w.writerow([uid] + [f"{v:.6g}" for v in p])
    print(f"{len(probs)} images scored by {a.model} -> {a.csv}"
          + (f" ({unscored} rows without outputs left out)" if unscored else ""))
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
