"""Training cost per image of the v1 recipe against v2's, as a ratio, in one run.

    python train_speed.py --cache CACHE_768 [--batch 32] [--rounds 4]

One training step (augmentation + forward + backward + AdamW) on the same
images: v1 = DRNet at 384 with v1's light augmentation (flip, exposure,
colour, noise on the normalised batch, as train.py had it), v2 = DRNet2 at 768
with augment.py. Round-robin, first round discarded, median per image. The
machine's load moves the absolute times; the ratio times v1's measured idle
epoch (135 s for 4 800 images, README) estimates v2's.
"""
import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from augment import augment
from model import MEAN, STD, build
from prepare import load_cache
from train import losses, normalise, to_input


def augment_v1(x, gen):
    """v1's train.py augmentation (commit 35c763f), on a normalised batch."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    gain = 1 + 0.15 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1)
    tint = 1 + 0.05 * (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1)
    shift = 0.05 * (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) / std
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) / std
    g = gain * tint
    x = x * g + mean * (g - 1) + shift
    return x + 0.02 / std * torch.randn(x.shape, generator=gen)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="a prepare.py cache at 768")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d = load_cache(a.cache)
    n = len(d["r_grade"])
    idx = np.arange(a.batch) % n
    big = np.asarray(d["images"][idx])
    small = np.stack([np.asarray(Image.fromarray(im).resize((384, 384), Image.BILINEAR)) for im in big])
    r = torch.from_numpy(d["r_grade"][idx]).clamp(min=0)
    m = torch.from_numpy(d["m_grade"][idx]).clamp(min=0)
    g = torch.from_numpy(d["gradable"][idx])
    w = torch.ones(4)
    setups = []
    for name, arch, images, aug in (("v1 (drnet384, v1 augmentation)", "drnet384", small, "v1"),
                                    ("v2 (drnet2-768, augment.py)", "drnet2-768", big, "v2")):
        torch.manual_seed(0)
        model, _ = build(arch)
        setups.append((name, model, torch.optim.AdamW(model.parameters(), 1e-3), images, aug))
    times = [{"aug": [], "step": []} for _ in setups]
    for k in range(a.rounds):
        for t, (name, model, opt, images, aug) in zip(times, setups):
            gen = torch.Generator().manual_seed(k)
            t0 = time.perf_counter()
            x = augment_v1(to_input(images), gen) if aug == "v1" else normalise(augment(images, gen))
            t1 = time.perf_counter()
            lr, lm, lg = losses(model.logits(x), r, m, g, w)
            opt.zero_grad()
            (lr + lm + lg).backward()
            opt.step()
            t2 = time.perf_counter()
            if k:
                t["aug"].append((t1 - t0) / a.batch)
                t["step"].append((t2 - t1) / a.batch)
    tot = []
    for (name, *_), t in zip(setups, times):
        au, st = statistics.median(t["aug"]), statistics.median(t["step"])
        tot.append(au + st)
        print(f"{name}: augmentation {1000 * au:.1f} ms/image, forward+backward {1000 * st:.1f} ms/image, "
              f"total {1000 * (au + st):.1f}")
    print(f"v2 / v1 training cost per image: {tot[1] / tot[0]:.2f}")


if __name__ == "__main__":
    main()
