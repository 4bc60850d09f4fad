"""Decode a synthetic batch once and cache it at model resolution.

    python prepare.py --data DIR --out CACHE.npz [--size 384] [--workers 2]

Reads DIR/truth_images.csv (one row per image), decodes each DICOM with pydicom
+ pylibjpeg (YBR_FULL_422 -> RGB), resizes the whole frame (stretching, no crop)
to size x size with PIL's bilinear filter, which is anti-aliased when it shrinks,
as nightscreen's preprocess does (fast_image_resize, Convolution(Bilinear)).
Writes CACHE.npz: `images` uint8 [N, S, S, 3] plus the per-image truth columns.
"""
import argparse
import csv
import os
import time
from multiprocessing import Pool

import numpy as np
import pydicom
from PIL import Image

from evaluate import grade, truthy  # the same truth.csv reading as evaluation


def load(job):
    path, size = job
    ds = pydicom.dcmread(path)
    rgb = ds.pixel_array  # pydicom 3 converts YBR_FULL(_422) to RGB by default
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, -1)
    img = Image.fromarray(rgb.astype(np.uint8), "RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8), rgb.shape[1], rgb.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    with open(os.path.join(a.data, "truth_images.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [r["path"] if os.path.isabs(r["path"]) else os.path.join(a.data, r["path"]) for r in rows]
    t0 = time.time()
    images = np.zeros((len(rows), a.size, a.size, 3), np.uint8)
    sizes = set()
    with Pool(a.workers) as pool:
        for i, (img, w, h) in enumerate(pool.imap(load, [(p, a.size) for p in paths], chunksize=8)):
            images[i] = img
            sizes.add((w, h))
    np.savez(
        a.out,
        images=images,
        study_uid=np.array([r["study_uid"] for r in rows]),
        sop_instance_uid=np.array([r["sop_instance_uid"] for r in rows]),
        eye=np.array([r["eye"] for r in rows]),
        field=np.array([r["field"] for r in rows]),
        r_grade=np.array([grade(r["r_grade"], "R") for r in rows], np.int64),
        m_grade=np.array([grade(r["m_grade"], "M") for r in rows], np.int64),
        gradable=np.array([truthy(r["gradable"]) for r in rows], np.int64),
    )
    print(f"{len(rows)} images ({sorted(sizes)}) -> {a.out} [{a.size}x{a.size}] in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
