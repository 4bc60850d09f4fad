"""Write the model card models/dr-screen.toml.

    python card.py --onnx OUT/dr-screen.onnx --out OUT/dr-screen.toml \
        [--thresholds thresholds.json] [--evaluation heldout.json --studies 500 --seed 3] \
        [--generator v2] [--trained-on "..."] [--version 2.0.0] [--real real.json]

The input size is read from the ONNX file's input shape.

--thresholds is evaluate.py --choose's output (chosen on the validation seed);
--evaluation is tools/evaluate_desp.py --json's output on the held-out seed,
through the real binary. Its figures go into the card's [evaluation] table,
which `make evaluate` checks against a fresh run. --real is
tools/photo_report.py --json's output on the real photographs of `make photos`
(validation only): its real_* figures go into [evaluation] too, and
tests/photos.rs checks them against a fresh run. The card schema is
nightscreen's (src/model/card.rs, deny_unknown_fields).
"""
import argparse
import hashlib
import json
import os

import onnxruntime as ort

from model import LABELS, MEAN, STD

# evaluate_desp.py report keys copied into [evaluation], in this order.
FIGURES = [
    "referable_sensitivity_eye", "referable_specificity_eye",
    "referable_sensitivity_study", "referable_specificity_study",
    "r3_sensitivity_eye", "r3_specificity_eye", "ungradable_detected_eye", "study_band_agreement",
]
COUNTS = ["studies", "referable_eyes", "non_referable_eyes", "r3_eyes", "ungradable_eyes"]
# The domain gate on the held-out batch: eyes it recognised in none of their images.
GATE = ["eyes_outside_domain"]
DEFAULTS = {"gradable": 0.5, "r3": 0.5, "referable": 0.5, "m1": 0.5, "any_dr": 0.5}


def pct(v):
    return f"{100 * v:.1f} %"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--thresholds")
    ap.add_argument("--evaluation")
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--generator", default="v1", help="the held-out batch's generator")
    ap.add_argument("--trained-on", default="`nightscreen synth` (seed 1)",
                    help="what the training images were, for the card's limitations")
    ap.add_argument("--version", default="2.0.0")
    ap.add_argument("--real", help="tools/photo_report.py --json output: the real-photograph check")
    a = ap.parse_args()

    with open(a.onnx, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    shape = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    height, width = shape[2], shape[3]
    synth = "nightscreen synth" + ("" if a.generator == "v1" else f" --generator {a.generator}")
    t = dict(DEFAULTS)
    if a.thresholds:
        with open(a.thresholds) as f:
            t.update(json.load(f))
    held_out = ""
    evaluation = ""
    if a.evaluation:
        with open(a.evaluation) as f:
            m = json.load(f)
        c = m["counts"]
        held_out = (
            f" Held-out synthetic batch ({c['studies']} studies, generator {a.generator}, seed {a.seed}), "
            "thresholds chosen on seed 2, "
            f"DESP rules through nightscreen: referable (R2/R3/M1) sensitivity "
            f"{pct(m['referable_sensitivity_eye'])} per eye ({c['referable_eyes']} eyes), "
            f"{pct(m['referable_sensitivity_study'])} per study; specificity {pct(m['referable_specificity_eye'])} "
            f"per eye, {pct(m['referable_specificity_study'])} per study; R3 sensitivity "
            f"{pct(m['r3_sensitivity_eye'])} ({c['r3_eyes']} eyes) with specificity {pct(m['r3_specificity_eye'])}"
            + (" (many R2 eyes are also called R3: the R3 threshold favours sensitivity)"
               if m["r3_specificity_eye"] < 0.9 else "")
            + "; ungradable eyes detected "
            f"{pct(m['ungradable_detected_eye'])} ({c['ungradable_eyes']} eyes). Synthetic figures say nothing "
            "about performance on real photographs."
        )
        lines = [f'data = "synthetic, held out: {synth} --studies {a.studies} --seed {a.seed}; '
                 'thresholds chosen on seed 2; DESP rules of configs/desp.toml"',
                 'command = "make evaluate"']
        lines += [f"{k} = {round(m[k], 4)}" for k in FIGURES]
        lines += [f"{k} = {c[k]}" for k in COUNTS]
        lines += [f"{k} = {m[k]}" for k in GATE if k in m]
        if a.real:
            with open(a.real) as f:
                r = json.load(f)
            lines += [f"{k} = {v}" for k, v in r.items()]
            held_out += (
                f" Real photographs (validation only, never trained on; `make photos`, wrapped as OP DICOM): of "
                f"{r['real_fundus_gradable_images']} fundus photographs a grader would call gradable, "
                f"{r['real_fundus_gradable_recognised']} were recognised by the domain gate and "
                f"{r['real_fundus_gradable_graded']} graded (the rest: not graded, as ungradable or outside the "
                f"domain); of {r['real_other_images']} colour images that are not fundus photographs, "
                f"{r['real_other_graded']} graded; scikit-image's retina.jpg (a normal eye) "
                + ("graded and not URGENT." if r["real_retina_graded_not_urgent"] else "NOT graded as it should be "
                   "(ungradable, outside the domain or URGENT).")
            )
        evaluation = "\n[evaluation]\n" + "\n".join(lines) + "\n"
    limitations = (
        f"Trained ONLY on synthetic fundus images made by {a.trained_on}; it has never seen a real "
        "photograph and is NOT for clinical use: a real programme must replace it with its own validated model. "
        "Per image it gives R0-R3 probabilities (softmax), M1 and gradability probabilities (sigmoid). "
        "The whole frame is stretched to the input size, so very different fields of view or aspect ratios are "
        f"outside what it was trained on.{held_out} Recipe, seeds, timings: models/training/README.md."
    )
    q = lambda s: json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    floats = lambda xs: "[" + ", ".join(repr(float(x)) for x in xs) + "]"
    text = f"""# Diabetic-retinopathy screening model trained on SYNTHETIC fundus images only.
# NOT for clinical use. Recipe: models/training/README.md (trained on {a.trained_on};
# thresholds from validation seed 2, [evaluation] figures from held-out seed {a.seed}).
#
# The programme's operating point lives in configs/desp.toml [triage.desp]; the
# values chosen on seed 2 were:
#   gradable_at_least = {t['gradable']}    p(gradable)
#   r3_at_least = {t['r3']}          p(r3)
#   referable_at_least = {t['referable']}  p(r2) + p(r3)
#   m1_at_least = {t['m1']}          p(m1)
#   any_dr_at_least = {t['any_dr']}      p(r1) + p(r2) + p(r3)
# applied to gradable images; an eye is graded by its worst gradable field (no
# gradable field = U), a study by its worse eye.
id = "dr-screen"
version = "{a.version}"
file = {q(os.path.basename(a.onnx))}
sha256 = "{sha}"
intended_use = "Research and pipeline demonstration: grades each Ophthalmic Photography fundus image (macula or disc field) for diabetic retinopathy in the English DESP scheme: R0-R3, M1 and gradability. Not a medical device; not for clinical use."
limitations = {q(limitations)}
clinical_use = false

[input]
name = "image"
layout = "NCHW"
channels = 3
height = {height}
width = {width}
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
r3 = {t['r3']}
m1 = {t['m1']}
gradable = {t['gradable']}
{evaluation}
# What this model was made for: colour fundus photographs, as the companion
# model fundus-gate recognises them (its card says what it measures and how it
# was calibrated; models/training/gate/). An image it does not recognise is
# never graded: its study says why, in these words. The gate scores this
# model's own tensor, so its card's [input] must be this card's (the gate's
# graph takes any size: make_gate.py writes its card for the size given).
[domain]
model = "fundus-gate"
label = "fundus"
outside = "not recognised as a fundus photograph"

# Occlusion maps on the worklist page. Under [triage] mode = "desp" the
# programme picks the images (every gradable image at a referral threshold);
# this rule is for other programmes: p(r3) >= 0.5 is scored again with each cell of a 4 x 4 grid of the
# input blanked (16 extra inferences per explained image; `run --no-explain`
# or [infer] explain = false skips them).
[explain]
method = "occlusion"
grid = 4
labels = ["r3"]
at_least = 0.5
"""
    with open(a.out, "w") as f:
        f.write(text)
    print(f"wrote {a.out} (sha256 {sha})")


if __name__ == "__main__":
    main()
