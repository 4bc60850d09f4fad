"""Feasibility (issue 16): can a small CNN see new vessels in a tile?

Tiles of 0.2 x the image's short side (about 1.5 DD of a 45-degree field),
centred (jittered) on a counted new-vessel tuft (positive), or for R1/R2
images on a counted blot, dot, IRMA or beading, a point in the middle of the
field and the optic disc (its brightest blurred spot, so a disc in the tile
does not give new vessels at the disc away) (negative), from
`truth_lesions.csv`; cut at 224 px once (cached beside the studies) and
resampled to RES px. A small CNN is trained from scratch on TRAIN_DIR's
tiles and its AUC reported on VAL_DIR's after each epoch.

    NT=1 EPOCHS=12 train-venv/bin/python nv_tiles.py TRAIN_DIR VAL_DIR RES [minutes]

First look (2026-12-07, train v2 seed 41 600 studies: 224 NV tiles of 3 041;
validation v2 seed 2: 122 of 1 387): AUC 0.68-0.74 at 96 px, 0.72-0.75 at
160 px; without the disc-centred negatives 0.92 at 96 px (the disc was a
shortcut). Limited by its data: next, far more NV tiles and 2.0.0's own
features.
"""
import collections
import csv
import os
import sys
import time

import numpy as np
import pydicom
import torch
from PIL import Image
from torch import nn

torch.set_num_threads(int(os.environ.get("NT", "2")))


def tiles(d, res, rng, neg_per_img=2):
    imgs = {r["sop_instance_uid"]: r for r in csv.DictReader(open(f"{d}/truth_images.csv"))}
    les = collections.defaultdict(list)
    for l in csv.DictReader(open(f"{d}/truth_lesions.csv")):
        les[l["sop_instance_uid"]].append(l)
    X, Y = [], []
    for uid, im in imgs.items():
        if im["gradable"] != "true" or im["r_grade"] not in ("R1", "R2", "R3"):
            continue
        L = [l for l in les[uid] if l["counts"] == "true"]
        pos = [l for l in L if l["kind"] == "new_vessels"]
        negc = [l for l in L if l["kind"] in ("blot_haemorrhage", "irma", "venous_beading", "dot_haemorrhage")]
        if not pos and im["r_grade"] == "R3":
            continue  # R3 by pre-retinal blood only: not this question
        if not pos and not negc:
            continue
        a = pydicom.dcmread(f"{d}/{im['path']}").pixel_array
        h, w = a.shape[:2]
        side = int(0.2 * min(h, w))
        centres = [(float(l["x"]), float(l["y"]), 1) for l in pos]
        if not pos:
            for l in rng.permutation(len(negc))[:neg_per_img]:
                centres.append((float(negc[l]["x"]), float(negc[l]["y"]), 0))
            # and somewhere in the middle of the field, on whatever is there
            centres.append((w / 2 + rng.uniform(-0.3, 0.3) * w, h / 2 + rng.uniform(-0.3, 0.3) * h, 0))
            # and on the optic disc (the brightest blurred spot), so that a
            # disc in the tile does not give new vessels at the disc away
            g = np.asarray(Image.fromarray(a[..., 1]).resize((w // 16, h // 16), Image.BOX), np.float32)
            k = np.ones(5) / 5
            g = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 0, g)
            g = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, g)
            yy, xx = np.unravel_index(np.argmax(g), g.shape)
            centres.append((xx * 16 + 8, yy * 16 + 8, 0))
        for x, y, lab in centres:
            for _ in range(2 if lab else 1):
                jx, jy = rng.uniform(-0.25, 0.25, 2) * side
                x0 = int(np.clip(x + jx - side / 2, 0, w - side))
                y0 = int(np.clip(y + jy - side / 2, 0, h - side))
                t = Image.fromarray(a[y0:y0 + side, x0:x0 + side]).resize((res, res), Image.BILINEAR)
                X.append(np.asarray(t, np.uint8))
                Y.append(lab)
    return np.stack(X), np.array(Y)


def net():
    def blk(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.MaxPool2d(2))
    return nn.Sequential(blk(3, 16), blk(16, 32), blk(32, 48), blk(48, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 1))


def to_t(X):
    x = torch.from_numpy(X).permute(0, 3, 1, 2).float() / 255
    return (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-3)


def auc(y, s):
    """Mann-Whitney AUC (ties count half)."""
    y = np.asarray(y).astype(bool)
    pos, neg = np.asarray(s)[y], np.asarray(s)[~y]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def cached(d, seed):
    import os
    path = f"{d}/nv_tiles_224.npz"
    if not os.path.exists(path):
        X, Y = tiles(d, 224, np.random.default_rng(seed))
        np.savez(path, X=X, Y=Y)
    z = np.load(path)
    return z["X"], z["Y"]


def shrink(X, res):
    if res == X.shape[1]:
        return X
    return np.stack([np.asarray(Image.fromarray(x).resize((res, res), Image.BILINEAR)) for x in X])


def main():
    train_dir, val_dir, res = sys.argv[1], sys.argv[2], int(sys.argv[3])
    minutes = float(sys.argv[4]) if len(sys.argv) > 4 else 10
    t0 = time.time()
    Xt, Yt = cached(train_dir, 0)
    Xv, Yv = cached(val_dir, 1)
    Xt, Xv = shrink(Xt, res), shrink(Xv, res)
    print(f"res {res}: train {len(Yt)} tiles ({Yt.sum()} NV), val {len(Yv)} ({Yv.sum()} NV), {time.time() - t0:.0f} s", flush=True)
    m = net()
    opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=1e-4)
    w = torch.tensor([(len(Yt) - Yt.sum()) / max(1, Yt.sum())])
    lossf = nn.BCEWithLogitsLoss(pos_weight=w)
    xt, yt, xv = to_t(Xt), torch.from_numpy(Yt).float(), to_t(Xv)
    end = time.time() + 60 * minutes
    ep = 0
    max_epochs = int(os.environ.get("EPOCHS", "1000"))
    while time.time() < end and ep < max_epochs:
        m.train()
        perm = torch.randperm(len(yt))
        for i in range(0, len(perm), 32):
            b = perm[i:i + 32]
            x = xt[b]
            if np.random.rand() < 0.5:
                x = x.flip(3)
            if np.random.rand() < 0.5:
                x = x.flip(2)
            loss = lossf(m(x).squeeze(1), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        ep += 1
        m.eval()
        with torch.no_grad():
            s = torch.cat([m(xv[i:i + 128]).squeeze(1) for i in range(0, len(xv), 128)]).numpy()
        print(f"epoch {ep} loss {loss.item():.3f} val AUC {auc(Yv, s):.3f} ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
