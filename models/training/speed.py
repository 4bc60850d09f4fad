"""CPU speed of dr-screen against a ResNet-18 at the same input size, in ONNX Runtime.

    python speed.py --model ../dr-screen.onnx [--batch 8] [--threads 2]

The issue asks that the model run at least as fast on CPU as a ResNet-18-class
CNN at its input size. torchvision's ResNet-18 (random weights: speed does not
depend on them) is exported at 384 x 384 and both are timed on the same batch,
same threads, median of repeated runs.
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

from model import SIZE


def time_model(path, x, threads, repeats):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((a.batch, 3, SIZE, SIZE)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        resnet = os.path.join(d, "resnet18.onnx")
        torch.onnx.export(torchvision.models.resnet18(num_classes=6).eval(), torch.zeros(1, 3, SIZE, SIZE), resnet,
                          opset_version=17, input_names=["image"], dynamic_axes={"image": {0: "N"}})
        ours = time_model(a.model, x, a.threads, a.repeats)
        theirs = time_model(resnet, x, a.threads, a.repeats)
    print(f"{SIZE}x{SIZE}, batch {a.batch}, {a.threads} threads: dr-screen {1000 * ours:.1f} ms/image, "
          f"ResNet-18 {1000 * theirs:.1f} ms/image, dr-screen is {theirs / ours:.1f}x faster")


if __name__ == "__main__":
    main()
