"""Decode a synthetic batch once and cache it at model resolution, on disk.

    python prepare.py --data DIR --out CACHE_DIR [--size 768] [--workers 2]

Reads DIR/truth_images.csv (one row per image, v1 or v2 columns), decodes each
DICOM with pydicom + pylibjpeg (YBR_FULL_422 -> RGB; native RGB as stored),
resizes the whole frame (stretching, no crop) to size x size with PIL's bilinear
filter, which is anti-aliased when it shrinks, as nightscreen's preprocess does
(fast_image_resize, Convolution(Bilinear)).

CACHE_DIR holds `images.npy`, uint8 [N, S, S, 3], written through a memory map
one image at a time (never the whole array in RAM: 4 800 images at 768 are
8.5 GB), and `meta.npz` with the per-image truth columns. It is built in
CACHE_DIR.tmp and renamed when complete, so an existing CACHE_DIR is a finished
cache. `load_cache` opens it with the images memory-mapped (read-only).
"""
import argparse
import csv
import os
import shutil
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


def load_cache(path):
    """A cache as a dict of arrays; `images` memory-mapped, read-only.

    Also reads a v1 recipe's single .npz cache (images in RAM)."""
    if path.endswith(".npz"):
        z = np.load(path)
        return {k: z[k] for k in z.files}
    z = np.load(os.path.join(path, "meta.npz"))
    d = {k: z[k] for k in z.files}
    d["images"] = np.load(os.path.join(path, "images.npy"), mmap_mode="r")
    return d


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    with open(os.path.join(a.data, "truth_images.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [r["path"] if os.path.isabs(r["path"]) else os.path.join(a.data, r["path"]) for r in rows]
    out = a.out.rstrip("/")
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.time()
    images = np.lib.format.open_memmap(os.path.join(tmp, "images.npy"), mode="w+", dtype=np.uint8,
                                       shape=(len(rows), a.size, a.size, 3))
    sizes = set()
    with Pool(a.workers) as pool:
        for i, (img, w, h) in enumerate(pool.imap(load, [(p, a.size) for p in paths], chunksize=4)):
            images[i] = img
            sizes.add((w, h))
    images.flush()
    del images
    np.savez(
        os.path.join(tmp, "meta.npz"),
        size=np.int64(a.size),
        study_uid=np.array([r["study_uid"] for r in rows]),
        sop_instance_uid=np.array([r["sop_instance_uid"] for r in rows]),
        eye=np.array([r["eye"] for r in rows]),
        field=np.array([r["field"] for r in rows]),
        generator=np.array([r.get("generator") or "v1" for r in rows]),
        r_grade=np.array([grade(r["r_grade"], "R") for r in rows], np.int64),
        m_grade=np.array([grade(r["m_grade"], "M") for r in rows], np.int64),
        gradable=np.array([truthy(r["gradable"]) for r in rows], np.int64),
    )
    for name in ("images.npy", "meta.npz"):
        with open(os.path.join(tmp, name), "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(tmp)
    os.replace(tmp, out) if not os.path.exists(out) else (shutil.rmtree(out), os.replace(tmp, out))
    fsync_dir(os.path.dirname(os.path.abspath(out)))
    mb = os.path.getsize(os.path.join(out, "images.npy")) / 2**20
    print(f"{len(rows)} images ({len(sizes)} frame sizes, {min(sizes)}..{max(sizes)}) -> {out} "
          f"[{a.size}x{a.size}, {mb:.0f} MiB] in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
