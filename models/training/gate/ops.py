"""Two back ends for one description of the gate's computation.

`features.py` writes the gate once, as calls on a back end `B`:
`Numpy` computes the result (float32, used to fit and to check), `Onnx`
records the same calls as ONNX nodes (opset 17). Each Numpy operation is
written from the ONNX operator's specification, not from ONNX Runtime, so
comparing the ONNX graph run by ONNX Runtime with the Numpy result on real
tensors checks every operator's semantics (Resize's coordinate rule, pooling
windows, padding) as well as the graph's wiring.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32 = np.float32


class Numpy:
    """Eager float32 evaluation."""

    def const(self, value):
        return np.asarray(value, F32)

    def add(self, a, b):
        return (a + b).astype(F32)

    def sub(self, a, b):
        return (a - b).astype(F32)

    def mul(self, a, b):
        return (a * b).astype(F32)

    def div(self, a, b):
        return (a / b).astype(F32)

    def maximum(self, a, b):
        return np.maximum(a, b).astype(F32)

    def minimum(self, a, b):
        return np.minimum(a, b).astype(F32)

    def abs(self, a):
        return np.abs(a)

    def sqrt(self, a):
        return np.sqrt(a).astype(F32)

    def sigmoid(self, a):
        return (1.0 / (1.0 + np.exp(-a.astype(np.float64)))).astype(F32)

    def tanh(self, a):
        return np.tanh(a).astype(F32)

    def clip(self, a, lo, hi):
        return np.clip(a, lo, hi).astype(F32)

    def resize(self, x, h, w):
        """ONNX Resize, mode linear, coordinate_transformation_mode half_pixel,
        to [N, C, h, w]: x_in = (x_out + 0.5) / scale - 0.5, clamped to the
        input, no anti-aliasing."""

        def axis(n_in, n_out):
            s = F32(n_out) / F32(n_in)
            pos = (np.arange(n_out, dtype=F32) + F32(0.5)) / s - F32(0.5)
            pos = np.clip(pos, 0, n_in - 1).astype(F32)
            i0 = np.floor(pos).astype(np.int64)
            i1 = np.minimum(i0 + 1, n_in - 1)
            return i0, i1, (pos - i0).astype(F32)

        y0, y1, wy = axis(x.shape[2], h)
        x0, x1, wx = axis(x.shape[3], w)
        top = x[:, :, y0, :] * (1 - wy)[None, None, :, None] + x[:, :, y1, :] * wy[None, None, :, None]
        out = top[:, :, :, x0] * (1 - wx) + top[:, :, :, x1] * wx
        return out.astype(F32)

    def avgpool(self, x, k, s):
        n, c, h, w = x.shape
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        acc = np.zeros((n, c, oh, ow), np.float64)
        for dy in range(k):
            for dx in range(k):
                acc += x[:, :, dy : dy + s * (oh - 1) + 1 : s, dx : dx + s * (ow - 1) + 1 : s]
        return (acc / (k * k)).astype(F32)

    def maxpool(self, x, k, pad):
        """Stride 1, `pad` on every side (padding never wins: -inf)."""
        n, c, h, w = x.shape
        xp = np.full((n, c, h + 2 * pad, w + 2 * pad), -np.inf, F32)
        xp[:, :, pad : pad + h, pad : pad + w] = x
        oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
        out = np.full((n, c, oh, ow), -np.inf, F32)
        for dy in range(k):
            for dx in range(k):
                out = np.maximum(out, xp[:, :, dy : dy + oh, dx : dx + ow])
        return out

    def reduce_mean(self, x, axes):
        return x.astype(np.float64).mean(axis=tuple(axes), keepdims=True).astype(F32)

    def reduce_max(self, x, axes):
        return x.max(axis=tuple(axes), keepdims=True)

    def reduce_min(self, x, axes):
        return x.min(axis=tuple(axes), keepdims=True)

    def slice(self, x, axis, start, end):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(start, end)
        return x[tuple(idx)]

    def concat(self, xs, axis):
        return np.concatenate(xs, axis=axis)

    def flatten(self, x):
        return x.reshape(x.shape[0], -1)

    def matmul(self, a, b):
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(F32)


class Onnx:
    """Records the calls as an ONNX graph. Values are tensor names."""

    def __init__(self, input_name="image"):
        self.nodes, self.inits, self.n = [], [], 0
        self.input_name = input_name

    def _name(self, stem):
        self.n += 1
        return f"{stem}_{self.n}"

    def _node(self, op, inputs, **attrs):
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def const(self, value, dtype=F32):
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def _operand(self, v):
        return v if isinstance(v, str) else self.const(v)

    def _bin(self, op, a, b):
        return self._node(op, [self._operand(a), self._operand(b)])

    def add(self, a, b):
        return self._bin("Add", a, b)

    def sub(self, a, b):
        return self._bin("Sub", a, b)

    def mul(self, a, b):
        return self._bin("Mul", a, b)

    def div(self, a, b):
        return self._bin("Div", a, b)

    def maximum(self, a, b):
        return self._bin("Max", a, b)

    def minimum(self, a, b):
        return self._bin("Min", a, b)

    def abs(self, a):
        return self._node("Abs", [a])

    def sqrt(self, a):
        return self._node("Sqrt", [a])

    def sigmoid(self, a):
        return self._node("Sigmoid", [a])

    def tanh(self, a):
        return self._node("Tanh", [a])

    def clip(self, a, lo, hi):
        return self._node("Clip", [a, self.const(lo), self.const(hi)])

    def resize(self, x, h, w):
        # sizes = [N, C, h, w] with N and C taken from the input (batch is dynamic).
        nc = self._node("Slice", [self._node("Shape", [x]), self.const([0], np.int64), self.const([2], np.int64)])
        sizes = self._node("Concat", [nc, self.const([h, w], np.int64)], axis=0)
        return self._node(
            "Resize", [x, "", "", sizes], mode="linear", coordinate_transformation_mode="half_pixel"
        )

    def avgpool(self, x, k, s):
        return self._node("AveragePool", [x], kernel_shape=[k, k], strides=[s, s])

    def maxpool(self, x, k, pad):
        return self._node("MaxPool", [x], kernel_shape=[k, k], strides=[1, 1], pads=[pad] * 4)

    def reduce_mean(self, x, axes):
        # One axis at a time, last first: the same mean, but float32 sums of
        # 64-128 terms instead of one of 4 096-16 129 (ONNX Runtime sums in
        # order; this keeps it within ~1e-7 of numpy's float64 mean).
        for ax in sorted(axes, reverse=True):
            x = self._node("ReduceMean", [x], axes=[ax], keepdims=1)
        return x

    def reduce_max(self, x, axes):
        return self._node("ReduceMax", [x], axes=list(axes), keepdims=1)

    def reduce_min(self, x, axes):
        return self._node("ReduceMin", [x], axes=list(axes), keepdims=1)

    def slice(self, x, axis, start, end):
        big = np.iinfo(np.int64).max
        return self._node(
            "Slice",
            [
                x,
                self.const([start], np.int64),
                self.const([big if end is None else end], np.int64),
                self.const([axis], np.int64),
            ],
        )

    def concat(self, xs, axis):
        return self._node("Concat", list(xs), axis=axis)

    def flatten(self, x):
        return self._node("Flatten", [x], axis=1)

    def matmul(self, a, b):
        return self._bin("MatMul", a, b)

    def model(self, output, output_name, doc):
        self.nodes.append(helper.make_node("Identity", [output], [output_name], name="output"))
        graph = helper.make_graph(
            self.nodes,
            "fundus_gate",
            [helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, ["N", 3, "H", "W"])],
            [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", 1])],
            self.inits,
        )
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", 17)],
            producer_name="nightscreen models/training/gate/make_gate.py",
            doc_string=doc,
        )
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m
