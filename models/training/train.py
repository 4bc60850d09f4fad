"""Train dr-screen on cached synthetic images (see prepare.py).

    python train.py --train train.npz --val val.npz --out dr-screen.pt [--epochs 10]

Loss per image: cross-entropy on the R grade (class-weighted) + BCE on M1, both
only for gradable images, + BCE on gradability (ungradable images up-weighted).
Seeded; CPU only, 2 threads.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from model import MEAN, STD, DRNet, macs


def load(path):
    z = np.load(path)
    return {k: z[k] for k in z.files}


def to_input(images_u8):
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W], as nightscreen builds it."""
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(x, gen):
    """Mirror (left/right eyes), small exposure, contrast and colour changes, sensor noise.

    Works in normalised space on a whole batch; geometry other than flips is left
    alone because nightscreen always stretches the full frame to the input size.
    """
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    gain = 1 + 0.15 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1)
    tint = 1 + 0.05 * (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1)
    shift = 0.05 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) / std
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) / std
    # scale the 0..1 pixel values: (x*std+mean)*g -> x*g + mean*(g-1)/std
    g = gain * tint
    x = x * g + mean * (g - 1) + shift
    return x + 0.02 / std * torch.randn(x.shape, generator=gen)


def losses(logits, r, m, g, r_weight):
    ok = (g == 1) & (r >= 0)
    lr = F.cross_entropy(logits[ok, :4], r[ok], weight=r_weight) if ok.any() else logits.sum() * 0
    okm = (g == 1) & (m >= 0)
    lm = F.binary_cross_entropy_with_logits(logits[okm, 4], m[okm].float()) if okm.any() else logits.sum() * 0
    gw = torch.where(g == 1, 1.0, 4.0)  # ungradable images are rare (~6 %)
    lg = F.binary_cross_entropy_with_logits(logits[:, 5], g.float(), weight=gw)
    return lr, lm, lg


@torch.no_grad()
def validate(model, d, batch=64):
    model.eval()
    probs = []
    for i in range(0, len(d["images"]), batch):
        probs.append(model(to_input(d["images"][i:i + batch])))
    p = torch.cat(probs).numpy()
    model.train()
    g = d["gradable"] == 1
    r, m = d["r_grade"], d["m_grade"]
    ref_true = g & ((r >= 2) | (m == 1))
    ref_score = np.maximum(p[:, 2] + p[:, 3], p[:, 4])
    return {
        "r_acc": float((p[g, :4].argmax(1) == r[g]).mean()),
        "ref_auc": auc(ref_score[g], ref_true[g]),
        "r3_auc": auc(p[g, 3], r[g] == 3),
        "m1_auc": auc(p[g, 4], m[g] == 1),
        "ungradable_auc": auc(1 - p[:, 5], ~g),
    }


def auc(score, positive):
    """Area under the ROC curve by ranks (ties averaged)."""
    positive = np.asarray(positive, bool)
    n1, n0 = positive.sum(), (~positive).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = np.asarray(score)[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator().manual_seed(a.seed)

    tr, va = load(a.train), load(a.val)
    n = len(tr["images"])
    r = torch.from_numpy(tr["r_grade"])
    m = torch.from_numpy(tr["m_grade"])
    g = torch.from_numpy(tr["gradable"])
    counts = np.bincount(tr["r_grade"][(tr["gradable"] == 1) & (tr["r_grade"] >= 0)], minlength=4)
    # Inverse square-root frequency, mean 1; R2/R3 errors cost more than R0/R1 ones.
    w = 1 / np.sqrt(np.maximum(counts, 1))
    w = w / w.mean() * np.array([1.0, 1.0, 1.5, 1.5])
    r_weight = torch.tensor(w / w.mean(), dtype=torch.float32)
    print(f"train {n} images; R counts {counts.tolist()}; M1 {(tr['m_grade'] == 1).sum()}; "
          f"ungradable {(tr['gradable'] == 0).sum()}; R weights {np.round(r_weight.numpy(), 2).tolist()}")

    model = DRNet()
    print(f"params {sum(p.numel() for p in model.parameters())}, {macs(model) / 1e9:.3f} GMAC/image")
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    steps = a.epochs * (n // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.15)
    t0 = time.time()
    for epoch in range(a.epochs):
        perm = torch.randperm(n, generator=gen).numpy()
        tot = np.zeros(3)
        for s in range(n // a.batch):
            idx = np.sort(perm[s * a.batch:(s + 1) * a.batch])
            x = augment(to_input(tr["images"][idx]), gen)
            lr, lm, lg = losses(model.logits(x), r[idx], m[idx], g[idx], r_weight)
            loss = lr + lm + lg
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += [lr.item(), lm.item(), lg.item()]
        v = validate(model, va)
        k = n // a.batch
        print(f"epoch {epoch + 1}/{a.epochs} {time.time() - t0:.0f}s loss R {tot[0] / k:.3f} M {tot[1] / k:.3f} "
              f"G {tot[2] / k:.3f} | val " + " ".join(f"{key} {val:.4f}" for key, val in v.items()), flush=True)
        # Every epoch, so a run stopped part-way still leaves its latest weights
        # (under another name: a.out itself means "finished").
        torch.save(model.state_dict(), a.out + ".last")
    torch.save(model.state_dict(), a.out)
    print(f"trained in {time.time() - t0:.0f} s -> {a.out}")


if __name__ == "__main__":
    main()
