"""Train the new-vessel second look (`dr-nv`) on tiles, judge it on whole frames.

    python train_nv.py --train DATA CACHE --val DATA CACHE --out DIR [--epochs 12]

DATA is a synthetic batch (`nightscreen synth --generator v2`, best with
`--grade-mix` rich in R2 and R3), CACHE its `prepare.py --size 1152` cache.
The network is fully convolutional: trained on 128-px tiles around new
vessels and their mimics (`nv_data.py`), it scores a whole frame as the
largest of its cells, so a tuft anywhere in the field counts. After each epoch
it mines hard negatives: the highest-scoring place of a few hundred frames
without new vessels becomes a negative tile. Checkpoints every epoch to
DIR/nv.pt and resumes from it.

Validation, per whole frame: the AUC of frames with counted new vessels
against frames without any, and against R2 frames only.
"""
import argparse
import os
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import nv_data
from prepare import load_cache  # noqa: E402  (models/training on PYTHONPATH)

TILE = 128
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class NVNet(nn.Module):
    """Stride-4 stem with local contrast (as DRNet2), four 3x3 convolutions
    to a 1/32 map of new-vessel logits; ~0.5 GMAC at 1152 x 1152."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, stride=4, bias=False)
        self.bn0 = nn.BatchNorm2d(16)

        def conv(i, o, s):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.body = nn.Sequential(conv(16, 32, 2), conv(32, 64, 2), conv(64, 64, 1), conv(64, 96, 2))
        self.head = nn.Conv2d(96, 1, 1)

    def cells(self, x):
        """Per-cell logits, [N, 1, H/32, W/32]; x normalised as the card says."""
        x = self.stem(x)
        x = x - F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
        x = F.relu(self.bn0(x))
        return self.head(self.body(x))

    def forward(self, x):
        return self.cells(x).amax(dim=(1, 2, 3))


def normalise(u8):
    """uint8 NHWC -> float NCHW with the card's mean and std."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).permute(0, 3, 1, 2).float() / 255
    return (x - MEAN) / STD


def cut(frame, x, y, rng, jitter):
    s = frame.shape[0]
    x += rng.uniform(-jitter, jitter)
    y += rng.uniform(-jitter, jitter)
    x0 = int(np.clip(x - TILE / 2, 0, s - TILE))
    y0 = int(np.clip(y - TILE / 2, 0, s - TILE))
    return frame[y0:y0 + TILE, x0:x0 + TILE]


def augment(tiles, rng):
    """Flips, quarter turns, brightness, contrast and saturation, per tile."""
    out = np.empty_like(tiles)
    for k, t in enumerate(tiles):
        t = np.rot90(t, rng.integers(0, 4))
        if rng.random() < 0.5:
            t = t[:, ::-1]
        f = t.astype(np.float32)
        grey = f.mean(axis=2, keepdims=True)
        f = grey + (f - grey) * rng.uniform(0.6, 1.4)
        m = f.mean()
        f = (m + (f - m) * rng.uniform(0.7, 1.4)) * rng.uniform(0.6, 1.3)
        out[k] = np.clip(f, 0, 255).astype(np.uint8)
    return out


def frame_scores(model, images, idx, batch=4):
    model.eval()
    s = []
    with torch.no_grad():
        for i in range(0, len(idx), batch):
            s.append(torch.sigmoid(model(normalise(images[idx[i:i + batch]]))).numpy())
    return np.concatenate(s) if s else np.zeros(0)


def mine(model, images, idx):
    """The highest-scoring place of each frame, in cache pixels."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(idx), 4):
            c = model.cells(normalise(images[idx[i:i + 4]]))[:, 0]
            for k in range(c.shape[0]):
                yy, xx = np.unravel_index(int(torch.argmax(c[k])), c[k].shape)
                out.append((idx[i + k], (xx + 0.5) * 32.0, (yy + 0.5) * 32.0))
    return out


def auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs=2, required=True, metavar=("DATA", "CACHE"))
    ap.add_argument("--val", nargs=2, required=True, metavar=("DATA", "CACHE"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--mine", type=int, default=300, help="negative frames mined per epoch")
    ap.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and after the last)")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("NT", "2")))
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    train = load_cache(a.train[1])
    val = load_cache(a.val[1])
    assert int(train["size"]) == int(val["size"]), "train and validation caches differ in size"
    tp = nv_data.places(a.train[0], train, seed=1)
    vp = nv_data.places(a.val[0], val, seed=2)
    pos = [(i, x, y) for i, (p, _) in tp.items() for x, y in p]
    neg = [(i, x, y) for i, (_, n) in tp.items() for x, y in n]
    neg_frames = np.array([i for i, (p, n) in tp.items() if n])
    v_pos = np.array(sorted(i for i, (p, _) in vp.items() if p))
    v_neg = np.array(sorted(i for i, (p, n) in vp.items() if n))
    v_r2 = np.array([i for i in v_neg if val["r_grade"][i] == 2])
    print(f"train: {len(pos)} new-vessel places, {len(neg)} negative places ({len(neg_frames)} frames); "
          f"val frames: {len(v_pos)} with new vessels, {len(v_neg)} without ({len(v_r2)} R2)", flush=True)

    model = NVNet()
    opt = torch.optim.AdamW(model.parameters(), a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, a.lr, total_steps=a.epochs * ((2 * len(pos) + len(neg)) // 64 + 40))
    mined, start = [], 0
    ckpt = os.path.join(a.out, "nv.pt")
    if os.path.exists(ckpt):
        c = torch.load(ckpt)
        model.load_state_dict(c["model"])
        opt.load_state_dict(c["opt"])
        sched.load_state_dict(c["sched"])
        mined, start = c["mined"], c["epoch"]
        rng = np.random.default_rng(start)
        print(f"resumed after epoch {start}", flush=True)
    t0 = time.time()
    for epoch in range(start, a.epochs):
        model.train()
        items = [(i, x, y, 1.0) for i, x, y in pos] * 2 + [(i, x, y, 0.0) for i, x, y in neg + mined]
        order = rng.permutation(len(items))
        # Equal numbers of positive and negative tiles per epoch would waste
        # most negatives; weight the positives instead.
        w_pos = (len(items) - 2 * len(pos)) / (2 * len(pos))
        lossf = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w_pos))
        total = 0.0
        for b in range(0, len(order) - 63, 64):
            chosen = [items[k] for k in order[b:b + 64]]
            tiles = np.stack([cut(train["images"][i], x, y, rng, 24.0) for i, x, y, _ in chosen])
            y = torch.tensor([t[3] for t in chosen])
            loss = lossf(model(normalise(augment(tiles, rng))), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched.last_epoch < sched.total_steps - 1:
                sched.step()
            total += loss.item()
        picked = neg_frames[rng.permutation(len(neg_frames))[:a.mine]]
        mined += [(i, x, y) for i, x, y in mine(model, train["images"], picked)]
        if (epoch + 1) % a.val_every == 0 or epoch + 1 == a.epochs:
            s_pos = frame_scores(model, val["images"], v_pos)
            s_neg = frame_scores(model, val["images"], v_neg)
            s_r2 = s_neg[np.isin(v_neg, v_r2)]
            spec = (s_neg < np.quantile(s_pos, 0.05)).mean() if len(s_pos) else float("nan")
            print(f"epoch {epoch + 1}/{a.epochs} loss {total / max(1, len(order) // 64):.4f} mined {len(mined)} | "
                  f"val frame AUC {auc(s_pos, s_neg):.4f} vs R2 {auc(s_pos, s_r2):.4f} "
                  f"spec at 95% sens {spec:.3f} ({time.time() - t0:.0f} s)", flush=True)
            np.savez(os.path.join(a.out, "val_scores.npz"), pos=v_pos, s_pos=s_pos, neg=v_neg, s_neg=s_neg)
        else:
            print(f"epoch {epoch + 1}/{a.epochs} loss {total / max(1, len(order) // 64):.4f} mined {len(mined)} "
                  f"({time.time() - t0:.0f} s)", flush=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "mined": mined, "epoch": epoch + 1}, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)


if __name__ == "__main__":
    main()
