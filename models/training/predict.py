"""Score a cache with the shipped ONNX model (ONNX Runtime), one CSV row per image.

    python predict.py --model ../dr-screen.onnx --cache test.npz --out test_probs.csv

Columns: sop_instance_uid, r0, r1, r2, r3, m1, gradable. evaluate.py reads this
file; a CSV with the same columns made from nightscreen's images/ table works too
(see README.md).
"""
import argparse
import csv
import time

import numpy as np
import onnxruntime as ort

from model import LABELS
from prepare import load_cache
from train import to_input


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    z = load_cache(a.cache)
    images, uids = z["images"], z["sop_instance_uid"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    t0 = time.time()
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sop_instance_uid"] + LABELS)
        for i in range(0, len(images), a.batch):
            p = sess.run(["probs"], {"image": to_input(images[i:i + a.batch]).numpy()})[0]
            for uid, row in zip(uids[i:i + a.batch], p):
                w.writerow([uid] + [f"{v:.6g}" for v in row])
    dt = time.time() - t0
    print(f"{len(images)} images -> {a.out} in {dt:.1f} s ({len(images) / dt:.0f} img/s, {a.threads} threads)")


if __name__ == "__main__":
    main()
