"""Export the trained weights to ONNX and check ONNX Runtime agrees with torch.

    python export.py --weights dr-screen.pt --out OUT/dr-screen.onnx --check VAL_CACHE [--arch drnet2-768]

Input `image` float32 [N, 3, S, S] (dynamic N, S the architecture's size),
output `probs` float32 [N, 6] (softmax R0..R3, sigmoid M1, sigmoid gradable),
opset 17. The first 32 images of the cache (prepare.py) go through both, in
batches of 5; more than 1e-4 apart in any probability is an error.
"""
import argparse

import numpy as np
import onnxruntime as ort
import torch

from model import LABELS, build
from prepare import load_cache
from train import to_input


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", required=True, help="a cache (prepare.py) whose first images are compared")
    ap.add_argument("--arch", default="drnet2-768")
    a = ap.parse_args()

    torch.manual_seed(0)
    model, size = build(a.arch)
    model.load_state_dict(torch.load(a.weights))
    model.eval()
    dummy = torch.zeros(2, 3, size, size)
    torch.onnx.export(
        model, dummy, a.out, opset_version=17, input_names=["image"], output_names=["probs"],
        dynamic_axes={"image": {0: "N"}, "probs": {0: "N"}}, do_constant_folding=True,
    )

    images = np.asarray(load_cache(a.check)["images"][:32])
    if images.shape[1] != size:
        raise SystemExit(f"{a.check} holds {images.shape[1]} px images; {a.arch} takes {size}")
    x = to_input(images)
    with torch.no_grad():
        want = model(x).numpy()
    sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(["probs"], {"image": x[i:i + 5].numpy()})[0] for i in range(0, len(x), 5)])
    diff = float(np.abs(got - want).max())
    assert got.shape == (len(x), len(LABELS)) and got.dtype == np.float32
    print(f"exported {a.out} ({a.arch}, {size} x {size}): max |onnxruntime - torch| = {diff:.2e} "
          f"over {len(x)} images (batches of 5)")
    if diff > 1e-4:
        raise SystemExit("ONNX output differs from torch by more than 1e-4")


if __name__ == "__main__":
    main()
