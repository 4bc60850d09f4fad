"""CPU cost per image of dr-screen models in ONNX Runtime, as ratios to the first.

    python speed.py --model today=../dr-screen.onnx --arch drnet2-768 [--arch drnet512 ...] [--resnet]

Each --model is an exported ONNX file (NAME=PATH); each --arch an architecture of
model.py's ARCHS, exported here with random weights (speed does not depend on
them). The input size is each graph's own. All are timed in one run, same batch
size and threads, round-robin (one batch of each in turn, `--repeats` rounds) so
that the machine's noise falls on all alike; the figure is the median per image,
and the ratio is to the first model's median. --resnet adds torchvision's
ResNet-18 at each input size met (the v1 issue asked for at least its speed).
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
import torchvision

from model import build, macs


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def export(model, size, path):
    model.eval()
    torch.onnx.export(model, torch.zeros(2, 3, size, size), path, opset_version=17, input_names=["image"],
                      output_names=["probs"], dynamic_axes={"image": {0: "N"}, "probs": {0: "N"}},
                      do_constant_folding=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of an ONNX file")
    ap.add_argument("--arch", action="append", default=[], help="an architecture name of model.ARCHS")
    ap.add_argument("--resnet", action="store_true")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []  # (name, path, gmac)
    with tempfile.TemporaryDirectory() as d:
        for spec in a.model:
            name, path = spec.split("=", 1)
            rows.append((name, path, None))
        for arch in a.arch:
            model, size = build(arch)
            path = os.path.join(d, arch + ".onnx")
            export(model, size, path)
            rows.append((arch, path, macs(model, size) / 1e9))
        sessions = [session(path, a.threads) for _, path, _ in rows]
        sizes = [s.get_inputs()[0].shape[2] for s in sessions]
        if a.resnet:
            for size in sorted(set(sizes)):
                path = os.path.join(d, f"resnet18-{size}.onnx")
                export(torchvision.models.resnet18(num_classes=6), size, path)
                rows.append((f"resnet18@{size}", path, None))
                sessions.append(session(path, a.threads))
                sizes.append(size)
        rng = np.random.default_rng(0)
        inputs = [rng.standard_normal((a.batch, 3, s, s)).astype(np.float32) for s in sizes]
        for s, x in zip(sessions, inputs):
            s.run(None, {s.get_inputs()[0].name: x})  # warm-up
        times = [[] for _ in sessions]
        for _ in range(a.repeats):
            for k, (s, x) in enumerate(zip(sessions, inputs)):
                t0 = time.perf_counter()
                s.run(None, {s.get_inputs()[0].name: x})
                times[k].append((time.perf_counter() - t0) / a.batch)
    med = [statistics.median(t) for t in times]
    print(f"ONNX Runtime {ort.__version__}, batch {a.batch}, {a.threads} threads, {a.repeats} rounds "
          f"(round-robin), median ms per image; ratio to {rows[0][0]}")
    print("| model | input | GMAC | ms/image | ratio | min-max ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, _, g), size, m, t in zip(rows, sizes, med, times):
        gm = f"{g:.3f}" if g is not None else "-"
        print(f"| {name} | {size} | {gm} | {1000 * m:.1f} | {m / med[0]:.2f} | {1000 * min(t):.1f}-{1000 * max(t):.1f} |")


if __name__ == "__main__":
    main()
