#!/usr/bin/env python3
"""Compares synthetic fundus photographs with real ones by statistics.

Usage: compare_fundus.py [--real DIR] [--synth DIR ...] [--montage PNG] [--per-image]

--real: the real photographs (default .deps/photos/fundus; `make photos`
fetches them; validation only, never training data: see tools/photos.tsv).
--synth: folders made by `nightscreen synth` (DICOM, any generator); each
is summarised as one group, named by its folder, over its gradable images
(truth_images.csv's `defect` empty). Every image is first
resampled so that its field of view is 800 px across, so the figures do
not depend on the image size.

Per image, inside the lit field (pixels whose smoothed red level is above
a threshold, eroded by 2 % of the radius):
  field   lit share of the image, and the equivalent-circle radius over
          half the short side (1.0 = the circle just fits the height);
  R G B   mean levels; r, g chromaticity (channel mean over the sum);
  falloff mean luminance at 0.75-0.9 of the radius over that within 0.3;
  vessel  green-channel depth (closing minus image, over the closing;
          a 21 px window at 800 px across): the 99th percentile inside
          0.85 of the radius, and the share of pixels deeper than 0.1;
          vessel colour: red's and blue's depth over green's at the
          deepest 1 % (vessel_r/g, vessel_b/g);
  texture robust spread of the background's mottling (see texture()).
Then the median and the 10-90 % range of each figure per group.
--montage writes the first images of each group side by side (PNG).
Runs in .deps/venv (numpy, scipy, pillow, pydicom).
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
FIELD_PX = 800  # field diameter after resampling
SKIP = {"microaneurysms.png"}  # a 102 px grey crop, not a field


def load(path):
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path)
        a = ds.pixel_array  # pydicom 3 gives YBR as RGB
        return np.asarray(a[..., :3], dtype=np.uint8)
    return np.asarray(Image.open(path).convert("RGB"))


def field_mask(rgb):
    """The lit field, found on a copy at most 1000 px wide, at full size."""
    h, w = rgb.shape[:2]
    step = max(1, w // 1000)
    small = rgb[::step, ::step]
    red = ndimage.uniform_filter(small[..., 0].astype(np.float32), 5)
    lit = red > max(12.0, 0.12 * np.percentile(red, 99))
    lit = ndimage.binary_opening(lit, iterations=3)
    labels, n = ndimage.label(lit)
    if n > 1:
        sizes = ndimage.sum(lit, labels, range(1, n + 1))
        lit = labels == (1 + int(np.argmax(sizes)))
    lit = ndimage.binary_fill_holes(lit)
    if step > 1:
        lit = np.repeat(np.repeat(lit, step, axis=0), step, axis=1)
        lit = np.pad(lit, ((0, max(0, h - lit.shape[0])), (0, max(0, w - lit.shape[1]))))[:h, :w]
    return lit


def normalise(rgb):
    """Resamples so that the field is FIELD_PX across; returns image and mask."""
    lit = field_mask(rgb)
    ys, xs = np.nonzero(lit)
    # The field's width (a clipped field keeps its full width).
    across = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    scale = FIELD_PX / across
    h, w = rgb.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS if scale < 1 else Image.BICUBIC))
    return img, field_mask(img), lit.mean(), (np.sqrt(lit.sum() / np.pi)) / (0.5 * min(h, w))


def stats(rgb):
    img, lit, share, radius_rel = normalise(rgb)
    ys, xs = np.nonzero(lit)
    cy, cx = ys.mean(), xs.mean()
    r = FIELD_PX / 2
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    rho = np.hypot(yy - cy, xx - cx) / r
    inner = ndimage.binary_erosion(lit, iterations=int(0.02 * r) + 1)
    f = img.astype(np.float32)
    mean = [float(f[..., k][inner].mean()) for k in range(3)]
    total = sum(mean)
    lum = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    centre = inner & (rho < 0.3)
    rim = inner & (rho > 0.75) & (rho < 0.9)
    falloff = float(lum[rim].mean() / lum[centre].mean()) if centre.any() and rim.any() else float("nan")
    g = f[..., 1]
    closed = ndimage.grey_closing(g, size=(21, 21))
    depth = np.where(closed > 8, (closed - g) / np.maximum(closed, 1), 0)
    core = inner & (rho < 0.85)
    # Vessel colour: at the deepest 1 % of green-channel vessel pixels, the
    # red and blue channels' depth relative to green's (a vein in a real
    # photograph hardly darkens red).
    deep = core & (depth >= np.percentile(depth[core], 99))

    def depth_of(k):
        c = f[..., k]
        closed_k = ndimage.grey_closing(c, size=(21, 21))
        return float(((closed_k - c) / np.maximum(closed_k, 1))[deep].mean())

    d_g = max(float(depth[deep].mean()), 1e-6)
    return {
        "lit": share,
        "radius": radius_rel,
        "R": mean[0],
        "G": mean[1],
        "B": mean[2],
        "r": mean[0] / total,
        "g": mean[1] / total,
        "falloff": falloff,
        "vessel_p99": float(np.percentile(depth[core], 99)),
        "vessel_share": float((depth[core] > 0.1).mean()),
        "vessel_r/g": depth_of(0) / d_g,
        "vessel_b/g": depth_of(2) / d_g,
        "texture": texture(g, core),
    }


def texture(g, core):
    """Background mottling: the robust spread of the green channel's
    large-scale variation (a 15 px median minus a 61 px mean), relative to
    its level."""
    fine = ndimage.median_filter(g, size=15)
    coarse = ndimage.uniform_filter(fine, 61)
    v = (fine - coarse)[core] / np.maximum(coarse[core], 1)
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


COLS = ["lit", "radius", "R", "G", "B", "r", "g", "falloff", "vessel_p99", "vessel_share", "vessel_r/g", "vessel_b/g", "texture"]


def summary(name, rows):
    out = [name, str(len(rows))]
    for c in COLS:
        v = np.array([row[c] for row in rows], dtype=float)
        v = v[np.isfinite(v)]
        p10, p50, p90 = np.percentile(v, [10, 50, 90])
        out.append(f"{p50:.3g} ({p10:.3g}–{p90:.3g})")
    return "| " + " | ".join(out) + " |"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", type=Path, default=ROOT / ".deps/photos/fundus")
    ap.add_argument("--synth", type=Path, action="append", default=[])
    ap.add_argument("--limit", type=int, default=60, help="images per synthetic folder")
    ap.add_argument("--montage", type=Path)
    ap.add_argument("--per-image", action="store_true")
    ap.add_argument("--no-real", action="store_true", help="synthetic folders only")
    args = ap.parse_args()
    groups = []
    if not args.no_real:
        found = args.real.iterdir() if args.real.is_dir() else []
        real = sorted(p for p in found if p.name not in SKIP and p.suffix in (".png", ".jpg", ".dcm"))
        if not real:
            sys.exit(f"no photographs in {args.real} (make photos)")
        groups.append(("real", real))
    for d in args.synth:
        with open(d / "truth_images.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if not r["defect"]]
        files = [d / r["path"] for r in rows][: args.limit]
        groups.append((d.name, files))
    print("| group | n | " + " | ".join(COLS) + " |")
    print("|" + " --- |" * (len(COLS) + 2))
    per_image = []
    for name, files in groups:
        rows = []
        for f in files:
            s = stats(load(f))
            rows.append(s)
            per_image.append((name, f.name if name == "real" else str(f.relative_to(f.parents[2])), s))
        print(summary(name, rows))
    if args.per_image:
        print()
        print("| group | image | " + " | ".join(COLS) + " |")
        print("|" + " --- |" * (len(COLS) + 2))
        for name, f, s in per_image:
            print(f"| {name} | {f} | " + " | ".join(f"{s[c]:.3g}" for c in COLS) + " |")
    if args.montage:
        tiles = []
        for _, files in groups:
            row = []
            for f in files[:6]:
                img, *_ = normalise(load(f))
                t = Image.fromarray(img)
                t.thumbnail((420, 420))
                canvas = Image.new("RGB", (420, 420))
                canvas.paste(t, ((420 - t.width) // 2, (420 - t.height) // 2))
                row.append(canvas)
            tiles.append(row)
        cols = max(len(r) for r in tiles)
        sheet = Image.new("RGB", (420 * cols, 420 * len(tiles)))
        for j, row in enumerate(tiles):
            for i, t in enumerate(row):
                sheet.paste(t, (420 * i, 420 * j))
        sheet.save(args.montage)


if __name__ == "__main__":
    main()
