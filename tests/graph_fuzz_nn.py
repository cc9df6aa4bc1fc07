"""Generators of the generated-model fuzz for the network layers: convolutions, pooling, batch and layer norm,
reductions, softmax, PReLU, Resize and torch's Softplus threshold. Registers into graph_fuzz_onnx.REG."""

from __future__ import annotations

import math

import numpy as np
from graph_fuzz_onnx import Builder, V, gen


def _spatial_attrs(b: Builder, k: tuple[int, int], pool: bool) -> dict:
    attrs: dict = {"kernel_shape": list(k)} if pool or b.coin() else {}
    if b.coin(0.6):
        attrs["strides"] = [int(v) for v in b.rng.integers(1, 3 if not pool else 4, 2)]
    if b.coin(0.3) and (not pool or b.opset >= 10):
        attrs["dilations"] = [int(v) for v in b.rng.integers(1, 3, 2)]
    auto = b.pick(["NOTSET"] * 5 + ["SAME_UPPER", "SAME_LOWER", "VALID"])
    if auto != "NOTSET":
        attrs["auto_pad"] = auto
    elif b.coin(0.6):
        attrs["pads"] = [int(b.rng.integers(0, kk)) if kk > 1 else 0 for kk in (*k, *k)]
    return attrs


@gen("Conv", ranks=(3, 2))
def _conv(b, x):
    c, *hw = x.shape
    groups = [g for g in (1, 2, 3) if c % g == 0]
    g = b.pick(groups) if b.coin(0.4) else 1
    out = g * int(b.rng.integers(1, 4))
    k = tuple(int(v) for v in b.rng.integers(1, 4, len(hw)))
    attrs = _spatial_attrs(b, (k + k)[:2], False)
    if len(hw) == 1:  # Conv1d
        attrs = {key: val[:1] if key in ("strides", "dilations", "kernel_shape") else val[::2] if key == "pads" else val
                 for key, val in attrs.items()}
    if g > 1:
        attrs["group"] = g
    ins = [x.name, b.w(out, c // g, *k, fan=c // g * math.prod(k))] + ([b.f32(b.rng.standard_normal(out) * 0.3)] if b.coin() else [])
    return V(b.node("Conv", ins, **attrs), ())


@gen("ConvTranspose", ranks=(3,))
def _conv_t(b, x):
    c = x.shape[0]
    g = b.pick([d for d in (1, 2) if c % d == 0])
    out_g = int(b.rng.integers(1, 3))
    k = tuple(int(v) for v in b.rng.integers(1, 4, 2))
    stride, dil = [int(v) for v in b.rng.integers(1, 3, 2)], [int(v) for v in b.rng.integers(1, 3, 2)] if b.coin(0.3) else [1, 1]
    attrs: dict = {"strides": stride, "dilations": dil}
    if b.coin(0.5):
        attrs["pads"] = [int(b.rng.integers(0, kk)) if kk > 1 else 0 for kk in (*k, *k)]
    if b.coin(0.3):
        attrs["output_padding"] = [int(b.rng.integers(0, max(s, d))) for s, d in zip(stride, dil)]
    if b.coin(0.15):
        attrs.pop("pads", None)
        attrs["auto_pad"] = b.pick(["SAME_UPPER", "SAME_LOWER"])
    if g > 1:
        attrs["group"] = g
    ins = [x.name, b.w(c, out_g, *k, fan=c * math.prod(k))] + ([b.f32(b.rng.standard_normal(out_g * g) * 0.3)] if b.coin() else [])
    return V(b.node("ConvTranspose", ins, **attrs), ())


@gen("BatchNormalization", ranks=(1, 2, 3))
def _bn(b, x):
    c = x.shape[0]
    ins = [x.name, b.f32(b.rng.standard_normal(c)), b.f32(b.rng.standard_normal(c) * 0.3), b.f32(b.rng.standard_normal(c) * 0.3),
           b.f32(b.rng.uniform(0.3, 2.0, c))]
    return V(b.node("BatchNormalization", ins, **({"epsilon": float(b.pick([1e-5, 1e-3, 0.1]))} if b.coin() else {})), x.shape)


def _fits(x: V, attrs: dict) -> bool:
    """The (dilated) window fits the padded input, as the ONNX output-size formula needs (onnxruntime is laxer)."""
    if attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        return True
    k, d, p = attrs["kernel_shape"], attrs.get("dilations", [1, 1]), attrs.get("pads", [0, 0, 0, 0])
    return all((k[i] - 1) * d[i] + 1 <= x.shape[1 + i] + p[i] + p[i + 2] for i in range(2))


@gen("MaxPool", ranks=(3,))
def _maxpool(b, x):
    attrs = _spatial_attrs(b, tuple(int(v) for v in b.rng.integers(1, 4, 2)), True)
    if b.coin(0.3) and b.opset >= 10:
        attrs["ceil_mode"] = 1
    return V(b.node("MaxPool", [x.name], **attrs), ()) if _fits(x, attrs) else None


@gen("AveragePool", ranks=(3,))
def _avgpool(b, x):
    attrs = _spatial_attrs(b, tuple(int(v) for v in b.rng.integers(1, 4, 2)), True)
    if b.opset < 19:
        attrs.pop("dilations", None)
    if b.coin(0.3):
        attrs["ceil_mode"] = 1
    if b.coin(0.4):
        attrs["count_include_pad"] = 1
    return V(b.node("AveragePool", [x.name], **attrs), ()) if _fits(x, attrs) else None


@gen("GlobalAveragePool", ranks=(3,))
def _gap(b, x):
    return V(b.node("GlobalAveragePool", [x.name]), (x.shape[0], 1, 1))


def _reduce(op: str, since: int):
    def fn(b, x):
        r = len(x.shape)
        axes = sorted({int(a) for a in b.rng.integers(1, r + 1, int(b.rng.integers(1, r + 1)))})
        axes = [a - (r + 1) if b.coin() else a for a in axes]
        keep = int(b.coin())
        if b.coin(0.1):  # no axes: noop_with_empty_axes, where the opset has it
            return V(b.node(op, [x.name], **({"noop_with_empty_axes": 1} if b.opset >= since else {"keepdims": 1})), ())
        ins, attrs = b.axes_in(x.name, axes, since)
        return V(b.node(op, ins, keepdims=keep, **attrs), ())
    return fn


gen("ReduceMean")(_reduce("ReduceMean", 18))
gen("ReduceSum")(_reduce("ReduceSum", 13))
for _op in ("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"):
    gen(_op)(_reduce(_op, 18))


@gen("GlobalMaxPool", ranks=(3,))
def _gmp(b, x):
    return V(b.node("GlobalMaxPool", [x.name]), (x.shape[0], 1, 1))


def _softmax(op: str):
    def fn(b, x):
        r = len(x.shape)
        attrs = {} if b.coin(0.2) else {"axis": b.ax(r, r if b.opset < 13 and b.coin(0.8) else None)}
        return V(b.node(op, [x.name], **attrs), x.shape)
    return fn


gen("Softmax")(_softmax("Softmax"))
gen("LogSoftmax")(_softmax("LogSoftmax"))


@gen("LayerNormalization", 17)
def _layernorm(b, x):
    r = len(x.shape)
    a = int(b.rng.integers(1, r + 1))
    ins = [x.name, b.f32(b.rng.standard_normal(x.shape[a - 1:]))] + ([b.f32(b.rng.standard_normal(x.shape[a - 1:]))] if b.coin() else [])
    attrs = {"axis": a - (r + 1) if b.coin() else a} if a != r or b.coin() else {}
    if b.coin(0.3):
        attrs["epsilon"] = float(b.pick([1e-3, 0.1]))
    return V(b.node("LayerNormalization", ins, **attrs), x.shape)


@gen("PRelu")
def _prelu(b, x):
    s = x.shape
    shape = b.pick([(1,), s, (s[-1],), (s[0],) + (1,) * (len(s) - 1)])
    return V(b.node("PRelu", [x.name, b.f32(b.rng.standard_normal(shape) * 0.5)]), s)


@gen("Resize", 11, ranks=(3,))
def _resize(b, x):
    mode = b.pick(["nearest", "nearest", "linear", "linear", "cubic"])
    coord = b.pick(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"] + (["half_pixel_symmetric"] if b.opset >= 19 else []))
    attrs: dict = {"mode": mode, "coordinate_transformation_mode": coord}
    if mode == "nearest":
        attrs["nearest_mode"] = b.pick(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
    scales = [1.0, 1.0] + [float(b.pick([0.5, 1.0, 1.5, 2.0, 3.0])) for _ in range(2)]
    if b.coin(0.1):
        scales[1] = 2.0
    empty = b.f32(np.zeros(0)) if b.opset < 13 else ""
    if b.batch == 1 and b.coin(0.4):
        sizes = [1] + [max(1, int(d * s + b.rng.integers(0, 2))) for d, s in zip(x.shape, scales[1:])]
        ins = [x.name, b.f32(np.zeros(0)) if b.opset < 13 else "", b.f32(np.zeros(0)) if b.opset < 13 else "", b.i64(sizes)]
    else:
        ins = [x.name, empty, b.f32(scales)]
    return V(b.node("Resize", ins, **attrs), ())


@gen("softplus_threshold", 9)
def _softplus_where(b, x):
    """torch's Softplus(beta, threshold): Where(β·x > t, x, Softplus(β·x)/β); or a Less-form torch does not write."""
    t = b.f32(np.float32(b.rng.uniform(0.5, 20)))
    beta = float(b.pick([1.0, 1.0, 2.0, 0.5, 3.0]))
    bx = x.name if beta == 1.0 else b.node("Mul", [x.name, b.f32(beta)])
    sp = b.node("Softplus", [bx])
    sp = sp if beta == 1.0 else b.node("Div", [sp, b.f32(beta)])
    if b.coin(0.15):
        return V(b.node("Where", [b.node("Less", [bx, t]), sp, x.name]), x.shape)
    return V(b.node("Where", [b.node("Greater", [bx, t]), x.name, sp]), x.shape)
