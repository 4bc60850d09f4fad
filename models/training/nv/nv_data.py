"""Where the new vessels are, in a cached batch's frames (issue 16's R3 gap).

A batch cached by `prepare.py --size S` holds each whole frame stretched to
S x S, as nightscreen's preprocess makes it. `truth_lesions.csv` gives every
lesion's centre in the stored frame's pixels; `places()` maps them into the
cache and says, per image, what a tile there should be called:

- positive: the centre of a new-vessel tuft that counts (inside the lit
  field and visible in the photograph, as the generator's grader sees it);
- negative: only from images with no new vessels at all (counted or not, so
  a faint tuft never becomes a negative), at the lesions a grader must tell
  apart from new vessels (IRMA, venous beading, blot haemorrhages), at the
  optic disc (the brightest blurred spot: a disc is where NVD sit, so the
  disc itself must not give new vessels away) and at random points inside
  the lit field.
"""
import collections
import csv
import os

import numpy as np
from PIL import Image

# The lesions a grader must tell apart from new vessels.
MIMICS = ("irma", "venous_beading", "blot_haemorrhage")


def disc_centre(frame):
    """The brightest spot of the green channel blurred over ~1/12 of the frame."""
    s = frame.shape[0]
    k = max(4, s // 96)
    g = np.asarray(Image.fromarray(frame[..., 1]).resize((s // k, s // k), Image.BOX), np.float32)
    box = np.ones(7) / 7
    g = np.apply_along_axis(lambda r: np.convolve(r, box, "same"), 0, g)
    g = np.apply_along_axis(lambda r: np.convolve(r, box, "same"), 1, g)
    yy, xx = np.unravel_index(np.argmax(g), g.shape)
    return (xx + 0.5) * k, (yy + 0.5) * k


def in_field(frame, rng, n):
    """`n` random points where the frame is lit (green above its 20th
    percentile of lit pixels), away from the border by an eighth of a tile."""
    s = frame.shape[0]
    small = frame[::8, ::8].max(axis=2)
    ys, xs = np.nonzero(small > 12)
    if len(xs) == 0:
        return []
    pick = rng.integers(0, len(xs), n)
    return [(xs[i] * 8 + 4.0, ys[i] * 8 + 4.0) for i in pick if 16 < xs[i] * 8 < s - 16]


def places(data_dir, cache, seed=0, negatives_per_image=6):
    """Per cached image index, (positives, negatives): lists of (x, y) in
    cache pixels. Ungradable images are left out."""
    rows = {r["sop_instance_uid"]: r for r in csv.DictReader(open(os.path.join(data_dir, "truth_images.csv")))}
    lesions = collections.defaultdict(list)
    with open(os.path.join(data_dir, "truth_lesions.csv"), newline="") as f:
        for lesion in csv.DictReader(f):
            lesions[lesion["sop_instance_uid"]].append(lesion)
    size = int(cache["size"])
    rng = np.random.default_rng(seed)
    out = {}
    for i, uid in enumerate(cache["sop_instance_uid"]):
        row = rows[str(uid)]
        if not cache["gradable"][i]:
            continue
        sx, sy = size / float(row["width"]), size / float(row["height"])
        here = lesions[str(uid)]
        at = lambda les: (float(les["x"]) * sx, float(les["y"]) * sy)  # noqa: E731
        pos = [at(les) for les in here if les["kind"] == "new_vessels" and les["counts"] == "true"]
        if any(les["kind"] == "new_vessels" for les in here):
            out[i] = (pos, [])
            continue
        frame = cache["images"][i]
        neg = [at(les) for les in here if les["kind"] in MIMICS and les["in_field"] == "true"]
        neg = [neg[j] for j in rng.permutation(len(neg))[:3]]
        neg.append(disc_centre(frame))
        neg += in_field(frame, rng, negatives_per_image - len(neg))
        out[i] = ([], neg)
    return out
