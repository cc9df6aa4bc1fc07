"""Edge models of the discrete ops srp-audit reads on the model's data (appended to tests/exact_edge_models.py's
BUILDERS): ArgMax/ArgMin with exact ties, OneHot, Round and Ceil on their breakpoints, comparisons where a − c is
exactly 0 for a stored float32 constant c, Where, casts to every integer type and to bool, Mod, an embedding
(Gather of a constant table at data indices), Abs/Max/Min/ReduceMax, Shape → ConstantOfShape → Sin, and a batch
axis moved by a Transpose. Each input point is a float32 number chosen to sit on a jump (a tie, a .5, an integer, a
multiple of the divisor, a comparison's constant) or just beside it; the exactness oracle decides the jump exactly
and srp-audit's bounds on the box [x, x] must contain the result. Casts stay within the target type's range (ONNX
leaves an out-of-range cast undefined).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
N = helper.make_node


def _edge(*args: Any, **kw: Any) -> Any:
    """An EdgeModel (imported here, not at the top: exact_edge_models imports this module)."""
    from exact_edge_models import EdgeModel

    return EdgeModel(*args, **kw)


def _g(nodes: list, inits: dict, shape: tuple[int, ...], out_shape: tuple[int, ...], out_elem: int = F32, opset: int = 17) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(np.asarray(a), name) for name, a in inits.items()]
    g = helper.make_graph(nodes, "edge", [helper.make_tensor_value_info("x", F32, list(shape))],
                          [helper.make_tensor_value_info("y", out_elem, list(out_shape))], tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def _f(*a: float) -> np.ndarray:
    return np.array(a, dtype=np.float32)


def _i(*a: int) -> np.ndarray:
    return np.array(a, dtype=np.int64)


def _p(*rows: list[float], shape: tuple[int, ...] | None = None) -> list[np.ndarray]:
    """Points (float32 numbers as float64), each reshaped to `shape` (default: (1, len))."""
    return [np.array(r, dtype=np.float32).astype(np.float64).reshape(shape or (1, len(r))) for r in rows]


def _rand(rng: np.random.Generator, shape: tuple[int, ...], lo: float, hi: float, n: int = 1) -> list[np.ndarray]:
    return [(lo + (hi - lo) * rng.random(shape)).astype(np.float32).astype(np.float64) for _ in range(n)]


def _up(v: float) -> float:
    return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def _down(v: float) -> float:
    return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


# ---------------------------------------------------------------------------------------------- ArgMax, OneHot


def _argmax_count(rng: np.random.Generator) -> Any:
    """Segmentation-style accuracy: per class, the pixels where one_hot(argmax over classes) agrees with the label."""
    c, h, w = 3, 2, 3
    label = np.zeros((1, c, h, w), dtype=np.float32)
    for k, cls in enumerate([0, 1, 2, 0, 2, 1]):
        label[0, cls, k // w, k % w] = 1.0
    nodes = [N("Add", ["x", "bias"], ["z"]), N("ArgMax", ["z"], ["a"], axis=1, keepdims=0),
             N("OneHot", ["a", "depth", "vals"], ["o"], axis=1), N("Equal", ["o", "label"], ["e"]),
             N("Cast", ["e"], ["ef"], to=F32), N("ReduceSum", ["ef", "axes"], ["y"], keepdims=0)]
    inits = {"bias": _f(0.25, 0.0, -0.5).reshape(1, c, 1, 1), "depth": _i(c), "vals": _f(0.0, 1.0), "label": label, "axes": _i(2, 3)}
    # logits + bias, per pixel: ties between the top two, a three-way tie, a tie below the maximum, a clear winner
    z = np.array([[[1.0, 1.0, 0.5], [2.0, 2.0, 2.0], [0.0, 3.0, 3.0], [-1.0, -2.0, -2.0], [0.5, 0.5, 0.25], [7.0, 7.0, 7.5]],
                  [[0.0, 0.0, 0.0], [-1.0, -1.0, -1.0], [4.0, 4.0, 4.0], [1.5, 1.5, -3.0], [0.125, 0.0, 0.125], [2.0, 3.0, 3.0]]])
    pts = [(zz.T.reshape(1, c, h, w) - inits["bias"]).astype(np.float64) for zz in z]
    m = _g(nodes, inits, (1, c, h, w), (1, c))
    return _edge("argmax_onehot_equal_count", m, pts + _rand(rng, (1, c, h, w), -1, 1),
                 "ArgMax over classes at exact ties (the first index wins) → OneHot → Equal(label) → Cast → ReduceSum")


def _argmin_last(rng: np.random.Generator) -> Any:
    """ArgMax / ArgMin with select_last_index after a small integer Gemm: ties of exact sums."""
    w = _f(1, 0, 2, -1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 2, 0, -1, 1, 0, 1, 1).reshape(4, 5)
    nodes = [N("MatMul", ["x", "w"], ["h"]), N("ArgMax", ["h"], ["a"], axis=1, keepdims=1, select_last_index=1),
             N("ArgMin", ["h"], ["b"], axis=-1, keepdims=1, select_last_index=1),
             N("ArgMin", ["h"], ["c"], axis=1, keepdims=1), N("Concat", ["a", "b", "c"], ["ab"], axis=1),
             N("Cast", ["ab"], ["y"], to=F32)]
    pts = _p([1, 1, 1, 1], [0, 0, 0, 0], [1, -1, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25], [2, 0, 0, 1])
    return _edge("argmax_argmin_select_last_index", _g(nodes, {"w": w}, (1, 4), (1, 3)), pts + _rand(rng, (1, 4), -1, 1),
                 "ArgMax/ArgMin (first and last index) of x @ W with exact ties")


def _onehot(rng: np.random.Generator) -> Any:
    nodes = [N("Cast", ["x"], ["i"], to=I64), N("OneHot", ["i", "depth", "vals"], ["y"], axis=1)]
    inits = {"depth": _i(4), "vals": _f(-1.0, 2.5)}
    pts = _p([-4, -1, 0, 3, 4, 7], [-5, -3.5, 2.9999998, -0.9999999, 0.5, 1], [-2, -2, 1, 1, 3, 0])
    return _edge("onehot_negative_and_out_of_range", _g(nodes, inits, (1, 6), (1, 4, 6)), pts,
                 "OneHot of int64(x): negative indices count from the end, out-of-range ones are all off")


def _transpose_batch(rng: np.random.Generator) -> Any:
    """The batch axis moved by a Transpose (its size fixed to 1): ArgMax and ReduceMax over the last axis."""
    nodes = [N("Transpose", ["x"], ["t"], perm=[1, 0, 2]), N("ArgMax", ["t"], ["a"], axis=2, keepdims=0),
             N("Cast", ["a"], ["af"], to=F32), N("ReduceMax", ["t"], ["r"], axes=[2], keepdims=0), N("Concat", ["af", "r"], ["y"], axis=1)]
    pts = _p([[1, 1, 0, 1], [-2, -3, -2, -2], [0, 0, 0, 0]], [[0.5, 2, 2, 0.5], [-1, 1, -1, 1], [3, 2, 1, 3]], shape=(1, 3, 4))
    return _edge("transpose_batch_argmax_reducemax", _g(nodes, {}, (1, 3, 4), (3, 2)), pts + _rand(rng, (1, 3, 4), -1, 1),
                 "Transpose moves the batch axis: ArgMax and ReduceMax over the last axis with ties")


# ------------------------------------------------------------------------------------------- steps and modulo


def _round_ceil(rng: np.random.Generator) -> Any:
    nodes = [N("Round", ["x"], ["r"]), N("Ceil", ["x"], ["c"]), N("Div", ["x", "three"], ["d"]), N("Round", ["d"], ["rd"]),
             N("Ceil", ["d"], ["cd"]), N("Concat", ["r", "c", "rd", "cd"], ["y"], axis=1)]
    pts = _p([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.0, -3.0], [1.5, 4.5, 7.5, -1.5, -4.5, 6.0, -6.0, 0.0],
             [_down(0.5), _up(0.5), _down(2.5), _up(-0.5), 1.0, -1.0, -0.0, 1e6 + 0.5])
    return _edge("round_ceil_on_breakpoints", _g(nodes, {"three": _f(3.0)}, (1, 8), (1, 32)), pts + _rand(rng, (1, 8), -4, 4),
                 "Round (half to even) and Ceil at .5 and integers, of x and of x/3 (1.5/3 = 0.5 exactly)")


def _mod(rng: np.random.Generator) -> Any:
    nodes = [N("Mod", ["x", "c"], ["m"], fmod=1), N("Div", ["x", "three"], ["d"]), N("Mod", ["d", "c"], ["md"], fmod=1),
             N("Cast", ["x"], ["i"], to=I64), N("Mod", ["i", "k"], ["mi"], fmod=0), N("Cast", ["mi"], ["mf"], to=F32),
             N("Concat", ["m", "md", "mf"], ["y"], axis=1)]
    inits = {"c": _f(1.5), "three": _f(3.0), "k": _i(3, -3, 3, -3, 4, -4, 5, -5)}  # Mod's sign: the divisor's
    pts = _p([3.0, -3.0, 1.5, -1.5, 0.0, 4.5, 0.75, -0.75], [_down(1.5), _up(1.5), -4.5, 100.5, -100.5, _down(3.0), -7.0, 13.5],
             [9.0, -9.0, 13.5, -13.5, 1e-7, 1000.0, -7.5, 2.25])
    return _edge("mod_by_1_5_fmod_and_integer_mod", _g(nodes, inits, (1, 8), (1, 24)), pts + _rand(rng, (1, 8), -10, 10),
                 "fmod(x, 1.5) and fmod(x/3, 1.5) on multiples of 1.5; int64(x) mod ±3, ±4, ±5 (the divisor's sign)")


# ----------------------------------------------------------------------------------------------- casts, logic


INT_TYPES = (("int8", TensorProto.INT8), ("int16", TensorProto.INT16), ("int32", TensorProto.INT32), ("int64", TensorProto.INT64),
             ("uint8", TensorProto.UINT8), ("uint16", TensorProto.UINT16), ("uint32", TensorProto.UINT32), ("uint64", TensorProto.UINT64))


def _casts(rng: np.random.Generator) -> Any:
    """x and 2^20·x cast to every integer type (unsigned ones of |x|) and to bool, then back to float."""
    nodes, outs = [N("Abs", ["x"], ["ax"]), N("Mul", ["x", "big"], ["bx"]), N("Mul", ["ax", "big"], ["bax"])], []
    for name, to in INT_TYPES:
        unsigned = name.startswith("u")
        srcs = [("ax" if unsigned else "x", "")] + ([("bax" if unsigned else "bx", "_big")] if name[-2:] in ("32", "64") else [])
        for src, tag in srcs:
            nodes += [N("Cast", [src], [f"{name}{tag}"], to=to), N("Cast", [f"{name}{tag}"], [f"{name}{tag}_f"], to=F32)]
            outs.append(f"{name}{tag}_f")
    nodes += [N("Cast", ["x"], ["b"], to=TensorProto.BOOL), N("Cast", ["b"], ["bf"], to=F32), N("Concat", [*outs, "bf"], ["y"], axis=1)]
    pts = _p([2.9999998, -2.5, 127.9, -128.9, 0.0, -0.0], [0.5, -0.5, 1e-30, -1e-30, 1.0, -1.0],
             [_down(128.0), 127.0, -128.0, _up(-129.0), 100.25, -0.99999994])
    return _edge("cast_to_integer_types_and_bool", _g(nodes, {"big": _f(2.0 ** 20)}, (1, 6), (1, 6 * (len(outs) + 1))),
                 pts + _rand(rng, (1, 6), -120, 120), "Cast truncates towards zero (every integer type, in range) and x ≠ 0 to bool")


C6 = (0.1, -0.3, 0.7, 1 / 3, 2.5, -1e-3)


def _compare(rng: np.random.Generator) -> Any:
    """x against stored float32 constants c (points: x = c, so x − c = 0 exactly, and the float32 numbers beside c),
    x/3 against d (points: x = 3d) and |x| = x (ties at every x ≥ 0); then Not/And/Or/Xor of the results."""
    rels = ("Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal")
    nodes = [N(r, ["x", "c"], [r]) for r in rels] + [N("Div", ["x", "three"], ["d3"]), N("Greater", ["d3", "d"], ["g3"]),
                                                     N("Equal", ["d3", "d"], ["e3"]), N("Abs", ["x"], ["ax"]), N("Equal", ["ax", "x"], ["ea"])]
    nodes += [N("Xor", ["Greater", "Less"], ["xor"]), N("And", ["GreaterOrEqual", "LessOrEqual"], ["and"]),
              N("Or", ["Greater", "Equal"], ["or"]), N("Not", ["Less"], ["not"])]
    bools = [*rels, "g3", "e3", "ea", "xor", "and", "or", "not"]
    nodes += [N("Cast", [b], [f"{b}_f"], to=F32) for b in bools] + [N("Concat", [f"{b}_f" for b in bools], ["y"], axis=1)]
    c, d = _f(*C6), _f(0.5, -1.0, 0.25, 1.5, -0.125, 3.0)
    pts = _p(list(c), [_up(v) for v in c], [_down(v) for v in c], list(3 * d), [0.0, -0.0, 1e-30, -1e-30, 2.0, -2.0])
    return _edge("compare_on_float32_constants", _g(nodes, {"c": c, "d": d, "three": _f(3.0)}, (1, 6), (1, 6 * len(bools))),
                 pts + _rand(rng, (1, 6), -1, 1), "comparisons where x − c = 0 exactly (c a float32 constant), and logic")


def _where(rng: np.random.Generator) -> Any:
    nodes = [N("Greater", ["x", "c"], ["g"]), N("Mul", ["x", "half"], ["h"]), N("Where", ["g", "x", "h"], ["y"])]
    c = float(np.float32(0.3))
    pts = _p([c] * 6, [c, _up(c), _down(c), 0.0, -1.0, 2.0])
    return _edge("where_x_gt_c_x_else_half_x", _g(nodes, {"c": _f(c), "half": _f(0.5)}, (1, 6), (1, 6)), pts + _rand(rng, (1, 6), -1, 1),
                 "Where(x > float32(0.3), x, 0.5·x): a jump at the threshold, hit exactly")


def _embedding(rng: np.random.Generator) -> Any:
    table = (rng.standard_normal((10, 4)) * 0.5).astype(np.float32)
    nodes = [N("Cast", ["x"], ["i"], to=I64), N("Gather", ["table", "i"], ["y"], axis=0)]
    pts = _p([0, 3, 9, -1, -10], [2.0, 2.5, 2.9999998, -0.5, 8.0], [5, 5, 5, 1, 0])
    return _edge("embedding_gather_of_int64_input", _g(nodes, {"table": table}, (1, 5), (1, 5, 4)), pts,
                 "an embedding: a constant table gathered at int64(x) (negative indices from the end)")


# ------------------------------------------------------------------------------------- extremes and constants


def _extremes(rng: np.random.Generator) -> Any:
    nodes = [N("Abs", ["x"], ["a"]), N("Mul", ["x", "mhalf"], ["n"]), N("Max", ["x", "c", "n"], ["mx"]), N("Min", ["x", "c2", "a"], ["mn"]),
             N("ReduceMax", ["x"], ["rmax"], axes=[2], keepdims=0), N("ReduceMin", ["a"], ["rmin"], axes=[1], keepdims=1),
             N("ReduceMax", ["mn"], ["rall"], keepdims=1)]
    names = ["a", "mx", "mn", "rmax", "rmin", "rall"]
    nodes += [N("Reshape", [k, "flat"], [f"{k}_r"]) for k in names] + [N("Concat", [f"{k}_r" for k in names], ["y"], axis=1)]
    inits = {"mhalf": _f(-0.5), "c": _f(0.25, 0.0, -0.5, 1.0), "c2": _f(-0.25), "flat": _i(1, -1)}
    pts = _p([[0.25, 0.0, -0.5, 1.0], [0.0, 0.0, -0.0, 0.0]], [[-0.25, 0.25, 1.0, 1.0], [0.25, -0.25, -1.0, -1.0]],
             [[-2.0, 1.0, -2.0, 1.0], [-0.5, -0.5, 0.5, 0.5]], shape=(1, 2, 4))
    return _edge("abs_max_min_reducemax", _g(nodes, inits, (1, 2, 4), (1, 8 + 8 + 8 + 2 + 4 + 1)), pts + _rand(rng, (1, 2, 4), -1, 1),
                 "Abs, variadic Max/Min of data and constants, ReduceMax/ReduceMin with ties and signed zeros")


def _sin_of_constants(rng: np.random.Generator) -> Any:
    """Transcendental ops on constants only: Sin(ConstantOfShape(Shape(x), 0.5)), Exp(0.3), Cos of a vector."""
    nodes = [N("Shape", ["x"], ["s"]), N("ConstantOfShape", ["s"], ["k"], value=numpy_helper.from_array(_f(0.5))), N("Sin", ["k"], ["sk"]),
             N("Exp", ["e0"], ["e"]), N("Cos", ["c0"], ["co"]), N("Mul", ["x", "e"], ["xe"]), N("Add", ["xe", "sk"], ["t"]),
             N("Add", ["t", "co"], ["y"])]
    # the constants carry a leading axis of size 1: the loader lifts a constant into the IR only with a batch axis
    inits = {"e0": _f(0.3).reshape(1, 1), "c0": _f(1.0, 2.0, 3.0, 4.0).reshape(1, 4)}
    return _edge("shape_constantofshape_sin_add", _g(nodes, inits, (1, 4), (1, 4)), _p([0, 0, 0, 0], [1, -1, 0.5, 2]) + _rand(rng, (1, 4), -2, 2),
                 "x·exp(0.3) + sin(ConstantOfShape(shape(x), 0.5)) + cos(c): constants the loader must evaluate exactly")


def _norms(rng: np.random.Generator) -> Any:
    """Sum/Mean of several inputs, x − mean(x) broadcast between data, ReduceL1/L2/SumSquare/LogSumExp and
    GlobalMaxPool: exact decompositions whose constants (1/n) are enclosed."""
    nodes = [N("ReduceMean", ["x"], ["m"], axes=[3], keepdims=1), N("Sub", ["x", "m"], ["c"]), N("Sum", ["x", "c", "k"], ["s"]),
             N("Mean", ["s", "c", "x"], ["a"]), N("GlobalMaxPool", ["a"], ["g"]), N("ReduceL2", ["c"], ["l2"], axes=[2, 3], keepdims=1),
             N("ReduceLogSumExp", ["x"], ["lse"], axes=[2, 3], keepdims=1), N("ReduceL1", ["c"], ["l1"], axes=[2, 3], keepdims=1),
             N("ReduceSumSquare", ["x"], ["sq"], axes=[2, 3], keepdims=1), N("Concat", ["g", "l2", "lse", "l1", "sq"], ["y"], axis=1)]
    pts = [np.arange(6, dtype=np.float64).reshape(1, 1, 2, 3) / 3, np.zeros((1, 1, 2, 3))]
    return _edge("sum_mean_reduce_norms_global_max", _g(nodes, {"k": _f(0.1)}, (1, 1, 2, 3), (1, 5, 1, 1)),
                 pts + _rand(rng, (1, 1, 2, 3), -2, 2), "Sum, Mean, a broadcast Sub of data, the norm reductions, GlobalMaxPool")


def _grid_activations(rng: np.random.Generator) -> Any:
    """SELU, ELU with α > 1 and Atan on the grid rule: kinks at 0, float32 α and γ."""
    nodes = [N("Selu", ["x"], ["s"]), N("Elu", ["x"], ["e"], alpha=1.5), N("Atan", ["x"], ["a"]), N("Concat", ["s", "e", "a"], ["y"], axis=1)]
    return _edge("selu_elu_atan", _g(nodes, {}, (1, 4), (1, 12)), _p([0, -1e-30, 1e-30, -3], [1, -1, 50, -50]) + _rand(rng, (1, 4), -4, 4),
                 "SELU and ELU past α = 1 (not convex) and Atan, bounded by the grid rule")


def _to_float16(rng: np.random.Generator) -> Any:
    """A Cast to float16 and back between two layers: x/3 lands between float16 values, 2049 on a tie (to even:
    2048), 1e-8 in float16's subnormals, 60000 near its largest value."""
    nodes = [N("Div", ["x", "three"], ["d"]), N("Cast", ["d"], ["h"], to=TensorProto.FLOAT16), N("Cast", ["h"], ["f"], to=F32),
             N("Cast", ["x"], ["h2"], to=TensorProto.FLOAT16), N("Cast", ["h2"], ["f2"], to=F32), N("Add", ["f", "f2"], ["y"])]
    pts = _p([1.0, 2049.0, 1e-8, 60000.0], [-1.0, 0.1, 2.0 ** -24, 3.0 * 2049.0])
    return _edge("cast_to_float16_and_back", _g(nodes, {"three": _f(3.0)}, (1, 4), (1, 4)), pts + _rand(rng, (1, 4), -100, 100),
                 "a float16 cast rounds (ties to even, subnormals): the loader keeps it as a rounding step")


def _picks_and_sums(rng: np.random.Generator) -> Any:
    """DepthToSpace, SpaceToDepth and GatherElements as Selects, CumSum as a 0/1 Dense layer, an Einsum with a weight
    and one of data × data, on exact points (zeros, halves) and random ones."""
    nodes = [N("DepthToSpace", ["x"], ["d"], blocksize=2, mode="CRD"), N("SpaceToDepth", ["d"], ["s"], blocksize=2),
             N("CumSum", ["s", "ax"], ["c"], exclusive=1), N("Einsum", ["c", "w"], ["e"], equation="bchw,kw->bchk"),
             N("Einsum", ["e", "e"], ["q"], equation="bchk,bcgk->bchg"), N("GatherElements", ["q", "gi"], ["y"], axis=3)]
    inits = {"ax": _i(2), "w": _f(0.5, -1.0, 0.25, 1.5).reshape(2, 2), "gi": _i(1, 0, -1, 0, 1, 1, 0, 0).reshape(1, 4, 1, 2)}
    pts = [np.zeros((1, 4, 2, 2)), np.arange(16, dtype=np.float64).reshape(1, 4, 2, 2) / 2]
    return _edge("depth_space_cumsum_einsum_gather_elements", _g(nodes, inits, (1, 4, 2, 2), (1, 4, 1, 2)),
                 pts + _rand(rng, (1, 4, 2, 2), -2, 2), "entry picks, a running sum and two einsums")


def _group_norms_1d_pools(rng: np.random.Generator) -> Any:
    """InstanceNormalization and GroupNormalization (1/√(var + ε) enclosed), then 1-D max and average pooling and a
    LeakyRelu of negative slope (a PRelu)."""
    nodes = [N("InstanceNormalization", ["x", "g", "b"], ["i"], epsilon=1e-3), N("GroupNormalization", ["i", "g", "b"], ["n"], num_groups=2),
             N("Reshape", ["n", "flat"], ["r"]), N("MaxPool", ["r"], ["m"], kernel_shape=[3], pads=[1, 1]),
             N("AveragePool", ["r"], ["a"], kernel_shape=[2], strides=[2]), N("LeakyRelu", ["m"], ["l"], alpha=-0.5),
             N("Concat", ["l", "a"], ["y"], axis=2)]
    inits = {"g": _f(1.5, -0.5, 1.0, 2.0), "b": _f(0.1, 0.0, -0.2, 1.0), "flat": _i(1, 4, 4)}
    pts = [np.arange(16, dtype=np.float64).reshape(1, 4, 2, 2) / 4, np.array([[1.0, 1.0, 1.0, 2.0] * 4]).reshape(1, 4, 2, 2)]
    return _edge("instance_group_norm_1d_pools", _g(nodes, inits, (1, 4, 2, 2), (1, 4, 6), opset=21),
                 pts + _rand(rng, (1, 4, 2, 2), -3, 3), "normalisations per channel and group, 1-D pools, a negative leaky slope")


def _composed_activations(rng: np.random.Generator) -> Any:
    """Celu (1/α enclosed), Softsign, ThresholdedRelu and Shrink, with points on their jumps (α, ±λ) and beside them."""
    nodes = [N("Celu", ["x"], ["a"], alpha=1.3), N("Softsign", ["x"], ["b"]), N("ThresholdedRelu", ["x"], ["c"], alpha=0.5),
             N("Shrink", ["x"], ["d"], lambd=0.5, bias=0.25), N("Concat", ["a", "b", "c", "d"], ["y"], axis=1)]
    pts = _p([0.5, -0.5, 0.0, -1e-30], [_up(0.5), _down(-0.5), _down(0.5), _up(-0.5)], [3.0, -40.0, 1e30, -1e30])
    return _edge("celu_softsign_thresholded_shrink", _g(nodes, {}, (1, 4), (1, 16)), pts + _rand(rng, (1, 4), -3, 3),
                 "activations read as compositions, on their jumps")


BUILDERS: list[Callable[[np.random.Generator], Any]] = [
    _picks_and_sums, _group_norms_1d_pools, _composed_activations,
    _argmax_count, _argmin_last, _onehot, _transpose_batch, _round_ceil, _mod, _casts, _compare, _where, _embedding, _extremes,
    _sin_of_constants, _to_float16, _norms, _grid_activations,
]
