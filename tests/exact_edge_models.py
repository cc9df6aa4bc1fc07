"""Small hand-built ONNX models (onnx.helper) on which a loader that derives constants in float32 — a Div by c
turned into a multiply by float32(1/c), BatchNorm's γ/√(var+ε) rounded, Resize weights or float64 initializers
cast to float32 — computes a different function than the stored model, by about 1e-8 relative. Each comes with
input points (float64 arrays in the input's declared shape) chosen to show the difference: the exactness oracle
(tests/exact_onnx.py) checks srp-audit's bounds against the stored model's exact value there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import exact_edge_discrete
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, F64 = TensorProto.FLOAT, TensorProto.DOUBLE


@dataclass
class EdgeModel:
    name: str
    model: onnx.ModelProto
    points: list[np.ndarray]  # each in the declared input shape; float32-representable unless the model is float64
    why: str = ""
    tags: set[str] = field(default_factory=set)  # "relu-affine": small enough and piecewise linear for CROWN


def _model(nodes: list, inits: list[np.ndarray | tuple], shape: tuple[int, ...], out_shape: tuple[int, ...] | None,
           elem: int = F32, opset: int = 17) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(a, name) for name, a in inits]
    g = helper.make_graph(nodes, "edge", [helper.make_tensor_value_info("x", elem, list(shape))],
                          [helper.make_tensor_value_info("y", elem, list(out_shape) if out_shape else None)], tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _f32(*a: float) -> np.ndarray:
    return np.array(a, dtype=np.float32)


def _pts(rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float, n: int, dtype: type = np.float32) -> list[np.ndarray]:
    return [(lo + (hi - lo) * rng.random(shape)).astype(dtype).astype(np.float64) for _ in range(n)]


def _w(rng: np.random.Generator, *shape: int, dtype: type = np.float32) -> np.ndarray:
    return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(dtype)


def _div3(rng: np.random.Generator) -> EdgeModel:
    m = _model([helper.make_node("Div", ["x", "c"], ["y"])], [("c", _f32(3.0))], (1, 4), (1, 4))
    return EdgeModel("div_by_3", m, _pts(rng, (1, 4), -2, 2, 3) + [np.array([[1.0, 3.0, 0.5, -7.0]])],
                     "Y = X / 3: exact division, not a multiply by float32(1/3)", {"relu-affine"})


def _gemm_bn(rng: np.random.Generator) -> EdgeModel:
    inits = [("w", _w(rng, 3, 4)), ("b", _f32(0.1, -0.2, 0.3)), ("g", _f32(1.5, -0.7, 1.0)), ("beta", _f32(0.25, 0.0, -0.5)),
             ("mu", _f32(0.3, -0.1, 0.0)), ("var", _f32(2.0, 2.0, 2.0))]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
             helper.make_node("BatchNormalization", ["h", "g", "beta", "mu", "var"], ["y"], epsilon=0.0)]
    return EdgeModel("gemm_batchnorm_var2_eps0", _model(nodes, inits, (1, 4), (1, 3)), _pts(rng, (1, 4), -1, 1, 3),
                     "BatchNorm γ/√2 (irrational) after Gemm: its fold must not round γ/√(var+ε) to float32", {"relu-affine"})


def _mnist_norm(rng: np.random.Generator) -> EdgeModel:
    inits = [("mean", _f32(0.1307)), ("std", _f32(0.3081))]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]), helper.make_node("Div", ["c", "std"], ["y"])]
    return EdgeModel("mnist_normalisation", _model(nodes, inits, (1, 1, 2, 3), (1, 1, 2, 3)),
                     _pts(rng, (1, 1, 2, 3), 0, 1, 3) + [np.ones((1, 1, 2, 3)), np.zeros((1, 1, 2, 3))],
                     "(x − 0.1307) / 0.3081 with MNIST's float32 constants", {"relu-affine"})


def _mnist_norm_dense(rng: np.random.Generator) -> EdgeModel:
    inits = [("mean", _f32(0.1307)), ("std", _f32(0.3081)), ("shape", np.array([1, 16], dtype=np.int64)),
             ("w", _w(rng, 5, 16)), ("b", _w(rng, 5)), ("w2", _w(rng, 3, 5)), ("b2", _w(rng, 3))]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]), helper.make_node("Div", ["c", "std"], ["n"]),
             helper.make_node("Reshape", ["n", "shape"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    return EdgeModel("mnist_normalisation_dense_relu", _model(nodes, inits, (1, 1, 4, 4), (1, 3)),
                     _pts(rng, (1, 1, 4, 4), 0, 1, 3) + [np.zeros((1, 1, 4, 4)), np.ones((1, 1, 4, 4))],
                     "the normalisation folded into the first dense layer", {"relu-affine"})


def _channel_norm_conv(rng: np.random.Generator) -> EdgeModel:
    inits = [("mean", _f32(0.4914, 0.4822, 0.4465).reshape(1, 3, 1, 1)), ("std", _f32(0.2470, 0.2435, 0.2616).reshape(1, 3, 1, 1)),
             ("w", (rng.standard_normal((2, 3, 3, 3)) * 0.3).astype(np.float32)), ("b", _f32(0.05, -0.1))]
    nodes = [helper.make_node("Sub", ["x", "mean"], ["c"]), helper.make_node("Div", ["c", "std"], ["n"]),
             helper.make_node("Conv", ["n", "w", "b"], ["y"], pads=[1, 1, 1, 1])]
    return EdgeModel("channel_sub_div_conv", _model(nodes, inits, (1, 3, 4, 4), (1, 2, 4, 4)),
                     _pts(rng, (1, 3, 4, 4), 0, 1, 2) + [np.zeros((1, 3, 4, 4))],
                     "per-channel Sub/Div normalisation (CIFAR constants) before a padded Conv", {"relu-affine"})


def _resize(rng: np.random.Generator, scale: float, mode: str) -> EdgeModel:
    inits = [("roi", np.zeros(0, dtype=np.float32)), ("scales", _f32(1, 1, scale, scale))]
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="linear", coordinate_transformation_mode=mode)
    out = int(np.floor(4 * np.float32(scale)))
    name = f"resize_linear_x{str(scale).replace('.', '_')}_{mode}"
    return EdgeModel(name, _model([node], inits, (1, 1, 4, 4), (1, 1, out, out)), _pts(rng, (1, 1, 4, 4), -1, 1, 3),
                     f"bilinear Resize by {scale} ({mode}): weights in thirds, exact rationals of the scale", {"relu-affine"})


def _div7_relu(rng: np.random.Generator) -> EdgeModel:
    nodes = [helper.make_node("Div", ["x", "c"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    pts = _pts(rng, (1, 6), -3, 3, 3) + [np.array([[0.0, 7.0, -7.0, 1.0, 1e-30, -1e-30]])]
    return EdgeModel("div_by_7_relu", _model(nodes, [("c", _f32(7.0))], (1, 6), (1, 6)), pts, "Y = relu(X / 7)", {"relu-affine"})


def _clip64(rng: np.random.Generator) -> EdgeModel:
    inits = [("lo", np.array(0.1, dtype=np.float64)), ("hi", np.array(0.7, dtype=np.float64))]
    m = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], inits, (1, 5), (1, 5), elem=F64)
    pts = [np.array([[-1.0, 0.1, 0.3, 0.7, 2.0]]), np.array([[0.05, 0.099999, 0.5, 0.70001, 0.9]])]
    return EdgeModel("clip_float64_bounds", m, pts, "Clip to [0.1, 0.7] given as float64 (not float32) numbers", {"relu-affine"})


def _float64_mlp(rng: np.random.Generator) -> EdgeModel:
    inits = [("w", _w(rng, 6, 4, dtype=np.float64)), ("b", _w(rng, 6, dtype=np.float64)),
             ("w2", _w(rng, 3, 6, dtype=np.float64)), ("b2", np.array([0.1, 1 / 3, -0.7], dtype=np.float64))]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    m = _model(nodes, inits, (1, 4), (1, 3), elem=F64)
    pts = [rng.standard_normal((1, 4)) for _ in range(3)]  # float64 points (not float32-representable)
    return EdgeModel("float64_mlp", m, pts, "double initializers and input: no weight may be cast to float32", {"relu-affine"})


def _softmax_spread(rng: np.random.Generator) -> EdgeModel:
    inits = [("w", (np.eye(5) * 4).astype(np.float32)), ("b", _f32(700, 712.5, 725, 737.5, 746))]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1), helper.make_node("Softmax", ["h"], ["y"], axis=-1)]
    return EdgeModel("softmax_logits_700_750", _model(nodes, inits, (1, 5), (1, 5)), _pts(rng, (1, 5), 0, 1, 3),
                     "Softmax of logits spread over 700–750 (e^700 overflows nothing in exact arithmetic)")


def _layernorm(rng: np.random.Generator) -> EdgeModel:
    inits = [("g", (1 + 0.2 * rng.standard_normal(8)).astype(np.float32)), ("b", (0.1 * rng.standard_normal(8)).astype(np.float32))]
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)
    return EdgeModel("layernorm", _model([node], inits, (1, 3, 8), (1, 3, 8)), _pts(rng, (1, 3, 8), -2, 2, 3),
                     "LayerNormalization over 8 features, ε = float32(1e-5)")


def _pow(rng: np.random.Generator, p: float) -> EdgeModel:
    m = _model([helper.make_node("Pow", ["x", "p"], ["y"])], [("p", _f32(p))], (1, 6), (1, 6))
    pts = _pts(rng, (1, 6), -3, 3, 3) + [np.array([[0.0, -1.0, 1.0, 1e-3, -1e-3, 100.0]])]
    return EdgeModel(f"pow_{int(p)}", m, pts, f"x^{int(p)} (integer exponent: negative bases allowed)")


def _unary(rng: np.random.Generator, op_type: str, pts: list[list[float]]) -> EdgeModel:
    m = _model([helper.make_node(op_type, ["x"], ["y"])], [], (1, len(pts[0])), (1, len(pts[0])))
    return EdgeModel(f"{op_type.lower()}_large", m, [np.array([p]) for p in pts], f"{op_type} at large magnitudes")


def _avgpool9(rng: np.random.Generator) -> EdgeModel:
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)
    return EdgeModel("avgpool_3x3_divide_by_9", _model([node], [], (1, 1, 4, 4), (1, 1, 4, 4)), _pts(rng, (1, 1, 4, 4), -1, 1, 3),
                     "3×3 average pooling: divisors 4, 6 and 9 (1/9 and 1/6 are not float numbers)", {"relu-affine"})


def _mean3(rng: np.random.Generator) -> EdgeModel:
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1], keepdims=0)
    return EdgeModel("reducemean_over_3", _model([node], [], (1, 4, 3), (1, 4), opset=17), _pts(rng, (1, 4, 3), -1, 1, 3),
                     "a mean over 3 entries (÷3)", {"relu-affine"})


def _leaky(rng: np.random.Generator) -> EdgeModel:
    nodes = [helper.make_node("LeakyRelu", ["x"], ["h"], alpha=0.1), helper.make_node("HardSigmoid", ["h"], ["y"])]
    return EdgeModel("leakyrelu_0_1_hardsigmoid", _model(nodes, [], (1, 6), (1, 6)), _pts(rng, (1, 6), -4, 4, 3),
                     "float attributes are float32 numbers: LeakyRelu α = float32(0.1), HardSigmoid α = float32(0.2)")


BUILDERS: list[Callable[[np.random.Generator], EdgeModel]] = [
    _div3, _gemm_bn, _mnist_norm, _mnist_norm_dense, _channel_norm_conv,
    lambda r: _resize(r, 3.0, "asymmetric"), lambda r: _resize(r, 1.5, "asymmetric"),
    lambda r: _resize(r, 3.0, "half_pixel"), lambda r: _resize(r, 1.5, "half_pixel"),
    _div7_relu, _clip64, _float64_mlp, _softmax_spread, _layernorm, lambda r: _pow(r, 2.0), lambda r: _pow(r, 3.0),
    lambda r: _unary(r, "Sigmoid", [[-40.0, -20.0, -5.5, 5.5, 20.0, 40.0], [-700.0, -100.0, 0.0, 1e-8, 100.0, 700.0]]),
    lambda r: _unary(r, "Tanh", [[-40.0, -20.0, -5.5, 5.5, 20.0, 40.0], [-700.0, -1e-8, 0.0, 1e-8, 0.75, 700.0]]),
    lambda r: _unary(r, "Exp", [[-100.0, -20.0, -0.5, 20.0, 80.0, 300.0], [-700.0, -1e-8, 0.0, 1e-8, 0.75, 700.0]]),
    _avgpool9, _mean3, _leaky,
    *exact_edge_discrete.BUILDERS,  # the discrete ops on the model's data
]


def edge_models(seed: int = 0) -> dict[str, EdgeModel]:
    """name → EdgeModel, built deterministically from `seed`."""
    rng = np.random.default_rng(seed)
    models = [b(rng) for b in BUILDERS]
    return {m.name: m for m in models}
