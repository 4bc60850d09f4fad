#!/usr/bin/env python3
"""Generate the tiny fixture ONNX models in models/ and check them with onnxruntime.

Usage: .deps/venv/bin/python tools/make_fixture_models.py [OUT_DIR]   (default: models)

- channel-means.onnx:     image  float32 [N,3,H,W] -> means float32 [N,3]  (mean over H,W)
- grey-means-nhwc.onnx:   pixels float32 [N,H,W,1] -> stats float32 [N,2]  ([mean, max] over H,W)
- red-gate.onnx:          image  float32 [N,3,H,W] -> in_domain float32 [N,1]
                          (sigmoid(40 (mean R - mean B - 0.1)): a domain gate for channel-means
                          that calls an image "reddish" when red outweighs blue by 0.1)

Opset 17, IR version 8. Output is deterministic (no timestamps), so re-running gives
byte-identical files.
"""
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8


def finish(graph, doc):
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="nightscreen-fixtures",
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def channel_means():
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("means", TensorProto.FLOAT, ["N", 3])
    # Opset 17: ReduceMean takes axes as an attribute (the input form is opset 18+).
    node = helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0, name="mean_hw")
    graph = helper.make_graph([node], "channel_means", [x], [y])
    return finish(graph, "Per-channel mean over H,W of an NCHW float image.")


def grey_means_nhwc():
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", "H", "W", 1])
    y = helper.make_tensor_value_info("stats", TensorProto.FLOAT, ["N", 2])
    nodes = [
        # [N,H,W,1] -> [N,1]
        helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2], keepdims=0, name="mean_hw"),
        helper.make_node("ReduceMax", ["pixels"], ["max"], axes=[1, 2], keepdims=0, name="max_hw"),
        helper.make_node("Concat", ["mean", "max"], ["stats"], axis=1, name="concat"),
    ]
    graph = helper.make_graph(nodes, "grey_means_nhwc", [x], [y])
    return finish(graph, "NHWC single-channel image -> [mean, max] over H,W.")


def red_gate():
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("in_domain", TensorProto.FLOAT, ["N", 1])
    weights = helper.make_tensor("red_minus_blue", TensorProto.FLOAT, [3, 1], [1.0, 0.0, -1.0])
    offset = helper.make_tensor("offset", TensorProto.FLOAT, [], [0.1])
    gain = helper.make_tensor("gain", TensorProto.FLOAT, [], [40.0])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0, name="mean_hw"),
        helper.make_node("MatMul", ["means", "red_minus_blue"], ["difference"], name="red_minus_blue"),
        helper.make_node("Sub", ["difference", "offset"], ["margin"], name="margin"),
        helper.make_node("Mul", ["margin", "gain"], ["logit"], name="gain"),
        helper.make_node("Sigmoid", ["logit"], ["in_domain"], name="probability"),
    ]
    graph = helper.make_graph(nodes, "red_gate", [x], [y], initializer=[weights, offset, gain])
    return finish(graph, "Domain gate fixture: sigmoid(40 (mean R - mean B - 0.1)) of an NCHW image.")


def red_gate_reference(x):
    means = x.mean(axis=(2, 3))
    return 1.0 / (1.0 + np.exp(-40.0 * (means[:, :1] - means[:, 2:3] - 0.1)))


def verify(path, input_name, output_name, make_input, reference):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    rng = np.random.default_rng(1234)
    for shape in make_input:
        x = (rng.random(shape, dtype=np.float32) * 255.0).astype(np.float32)
        (out,) = sess.run([output_name], {input_name: x})
        ref = reference(x.astype(np.float64))
        assert out.shape == ref.shape, (out.shape, ref.shape)
        assert out.dtype == np.float32
        worst = max(worst, float(np.max(np.abs(out.astype(np.float64) - ref))))
    print(f"  verified {os.path.basename(path)} on {len(make_input)} shapes: max abs diff {worst:.3g}")
    assert worst < 1e-3, worst


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "models"
    os.makedirs(out_dir, exist_ok=True)
    specs = [
        ("channel-means.onnx", channel_means(), "image", "means",
         [(1, 3, 8, 8), (2, 3, 224, 224), (5, 3, 17, 31)],
         lambda x: x.mean(axis=(2, 3))),
        ("grey-means-nhwc.onnx", grey_means_nhwc(), "pixels", "stats",
         [(1, 8, 8, 1), (3, 64, 48, 1), (2, 512, 512, 1)],
         lambda x: np.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=1)),
        ("red-gate.onnx", red_gate(), "image", "in_domain",
         [(1, 3, 8, 8), (2, 3, 64, 64), (5, 3, 17, 31)],
         red_gate_reference),
    ]
    for name, model, inp, outp, shapes, ref in specs:
        path = os.path.join(out_dir, name)
        data = model.SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
        verify(path, inp, outp, shapes, ref)


if __name__ == "__main__":
    main()
