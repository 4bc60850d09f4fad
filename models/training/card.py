"""Write the model card models/dr-screen.toml from the ONNX file, thresholds and held-out metrics.

    python card.py --onnx ../dr-screen.onnx --thresholds thresholds.json --metrics test_metrics.json \
                   --out ../dr-screen.toml [--val-metrics val_metrics.json]

The card schema is nightscreen's (src/model/card.rs, deny_unknown_fields): the
referable rule and the held-out figures go into comments and `limitations`.
"""
import argparse
import hashlib
import json
import os

from model import LABELS, MEAN, SIZE, STD


def pct(v):
    return f"{100 * v:.1f} %"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--thresholds", required=True)
    ap.add_argument("--metrics", required=True, help="held-out (seed 3) metrics from evaluate.py --json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=SIZE)
    a = ap.parse_args()

    with open(a.onnx, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    with open(a.thresholds) as f:
        t = json.load(f)
    with open(a.metrics) as f:
        m = json.load(f)

    figures = (
        f"referable (R2/R3/M1) sensitivity {pct(m['eye_referable_sens'])} per eye "
        f"({m['eyes_referable']} eyes), {pct(m['study_referable_sens'])} per study; "
        f"specificity {pct(m['eye_referable_spec'])} per eye, {pct(m['study_referable_spec'])} per study; "
        f"R3 sensitivity {pct(m['eye_r3_sens'])} per eye ({m['eyes_r3']} eyes); "
        f"ungradable detected {pct(m['eye_ungradable_sens'])} of U eyes ({m['eyes_ungradable']}), "
        f"{pct(m['image_ungradable_sens'])} of ungradable images ({m['images_ungradable']})"
    )
    limitations = (
        "Trained ONLY on synthetic fundus images made by `nightscreen synth` (seed 1); it has never seen a real "
        "photograph and is NOT for clinical use: a real programme must replace it with its own validated model. "
        "Per image it gives R0-R3 probabilities (softmax), M1 and gradability probabilities (sigmoid). "
        f"Held-out synthetic batch (seed 3, {m['studies']} studies), DESP rules (worst gradable field per eye, "
        f"worse eye per study), thresholds chosen on seed 2: {figures}. "
        f"Referable rule: p(r2)+p(r3) >= {t['referable']} or p(m1) >= {t['m1']}. "
        "Recipe, seeds, timings: models/training/README.md."
    )
    metric_lines = "\n".join(
        f"#   {k} = {v:.4f}" if isinstance(v, float) else f"#   {k} = {v}"
        for k, v in m.items() if k not in ("thresholds", "image_r_confusion_truth_by_argmax")
    )
    q = lambda s: json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    floats = lambda xs: "[" + ", ".join(repr(float(x)) for x in xs) + "]"
    text = f"""# Diabetic-retinopathy screening model trained on SYNTHETIC fundus images only.
# NOT for clinical use. Recipe: models/training/README.md (train seed 1, thresholds
# from validation seed 2, figures below from held-out seed 3).
#
# Referable rule (not a label, since it is a sum of two outputs):
#   referable = p(r2) + p(r3) >= {t['referable']}  or  p(m1) >= {t['m1']}
# applied to gradable images only (p(gradable) >= {t['gradable']}); an eye is graded
# by its worst gradable field (no gradable field = U), a study by its worse eye.
#
# Held-out figures (seed 3, evaluate.py):
{metric_lines}
id = "dr-screen"
version = "0.1.0"
file = {q(os.path.basename(a.onnx))}
sha256 = "{sha}"
intended_use = "Research and pipeline demonstration: grades each Ophthalmic Photography fundus image (macula or disc field) for diabetic retinopathy in the English DESP scheme: R0-R3, M1 and gradability. Not a medical device; not for clinical use."
limitations = {q(limitations)}
clinical_use = false

[input]
name = "image"
layout = "NCHW"
channels = 3
height = {a.size}
width = {a.size}
scale = 1.0
mean = {floats(MEAN)}
std = {floats(STD)}
channel_order = "RGB"

[output]
name = "probs"
labels = {json.dumps(LABELS)}
activation = "none"

[accepts]
modalities = ["OP"]
photometric = ["YBR_FULL_422", "YBR_FULL", "RGB"]

[thresholds]
# referable (not a label): p(r2) + p(r3) >= {t['referable']}
r3 = {t['r3']}
m1 = {t['m1']}
gradable = {t['gradable']}
"""
    with open(a.out, "w") as f:
        f.write(text)
    print(f"wrote {a.out} (sha256 {sha})")


if __name__ == "__main__":
    main()
