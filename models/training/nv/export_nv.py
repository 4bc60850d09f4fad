"""Export the new-vessel second look to ONNX and check it against torch.

    python export_nv.py nv.pt dr-nv.onnx [--size 1152] [--version V] [--card dr-nv.toml --trained-on TEXT]

Input `image` [N, 3, S, S] normalised as the card says (ImageNet mean/std,
RGB, the whole frame stretched); output `probs` [N, 1] = p(new vessels
somewhere in the frame): the sigmoid of the largest cell's logit.
"""
import argparse
import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from train_nv import NVNet  # noqa: E402


class Exported(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x)).unsqueeze(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt")
    ap.add_argument("onnx")
    ap.add_argument("--size", type=int, default=1152)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--card", help="write the model card here")
    ap.add_argument("--trained-on", default="", help="the training data, in words, for the card")
    a = ap.parse_args()
    net = NVNet()
    net.load_state_dict(torch.load(a.ckpt)["model"])
    m = Exported(net).eval()
    x = torch.randn(2, 3, a.size, a.size)
    torch.onnx.export(m, x, a.onnx, input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}}, opset_version=17)
    import onnxruntime as ort
    sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = m(x).numpy()
    print(f"{a.onnx}: max |onnxruntime - torch| {np.abs(got - want).max():.2e}")
    if a.card:
        write_card(a)


CARD = """# New-vessel second look for dr-screen, trained on SYNTHETIC fundus images only.
# NOT for clinical use. Recipe: models/training/nv/README.md. The DR card names it in
# [second_look]; configs/desp.toml [triage.desp.r3_second_look] says which images it sees
# and what its answer means.
id = "dr-nv"
version = "{version}"
file = "{file}"
sha256 = "{sha}"
intended_use = "Research and pipeline demonstration: says whether a colour fundus photograph shows new vessels (proliferative diabetic retinopathy, R3) anywhere in the field, looking at the whole frame at {size} x {size}, for images the DR model cannot tell between R2 and R3 at its own size. Not a medical device; not for clinical use."
limitations = "Trained ONLY on synthetic fundus images ({trained_on}); it has never seen a real photograph and is NOT for clinical use. It answers one question (new vessels seen or not) and grades nothing else. Fully convolutional: 128-pixel tiles at training, the largest of its 1/32-scale cells on a whole frame; hard negatives were mined from frames without new vessels. The whole frame is stretched to the input size, as for the DR model."
clinical_use = false

[input]
name = "image"
layout = "NCHW"
channels = 3
height = {size}
width = {size}
scale = 1.0
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
channel_order = "RGB"

[output]
name = "probs"
labels = ["nv"]
activation = "none"

[accepts]
modalities = ["OP"]
photometric = ["YBR_FULL_422", "YBR_FULL", "RGB"]
"""


def write_card(a):
    import hashlib
    sha = hashlib.sha256(open(a.onnx, "rb").read()).hexdigest()
    text = CARD.format(version=a.version, file=os.path.basename(a.onnx), sha=sha, size=a.size, trained_on=a.trained_on)
    with open(a.card, "w") as f:
        f.write(text)
    print(f"{a.card}: dr-nv {a.version}, sha256 {sha}")


if __name__ == "__main__":
    main()
