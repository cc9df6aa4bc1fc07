"""One small ONNX model per operator and attribute combination the exactness oracle implements, for checking the
oracle's reading of the ONNX spec against onnxruntime (tests/test_exactness_oracle.py): pooling windows with
ceil mode and padding, every Resize coordinate mode, transposed convolutions with output padding and output
shape, slicing with negative steps, padding modes, and so on. A misreading would otherwise make the oracle accuse
(or excuse) srp-audit wrongly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _m(nodes: list, shape: tuple[int, ...], inits: dict | None = None, opset: int = 17, extra_inputs: list | None = None) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))] + (extra_inputs or [])
    g = helper.make_graph(nodes, "op", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 17 else 9
    return m


def _one(op: str, shape: tuple[int, ...], opset: int = 17, inits: dict | None = None, inputs: tuple[str, ...] = (), **attrs) -> onnx.ModelProto:
    return _m([helper.make_node(op, ["x", *inputs], ["y"], **attrs)], shape, inits, opset)


def _f(*a: float) -> np.ndarray:
    return np.array(a, dtype=np.float32)


def _i(*a: int) -> np.ndarray:
    return np.array(a, dtype=np.int64)


def _r(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


S4 = (1, 2, 5, 5)


def _elementwise() -> Iterator[tuple[str, onnx.ModelProto]]:
    for op in ("Relu", "Abs", "Sign", "Floor", "Ceil", "Neg", "Exp", "Sigmoid", "Tanh", "Erf", "Softplus", "Sin", "Cos", "Softsign"):
        yield op, _one(op, (2, 7))
    yield "Mish", _one("Mish", (2, 7), opset=18)
    yield "Gelu", _one("Gelu", (2, 7), opset=20)
    yield "Gelu_tanh", _one("Gelu", (2, 7), opset=20, approximate="tanh")
    yield "LeakyRelu", _one("LeakyRelu", (2, 7), alpha=0.3)
    yield "Elu", _one("Elu", (2, 7), alpha=0.7)
    yield "Selu", _one("Selu", (2, 7))
    yield "Celu", _one("Celu", (2, 7), alpha=1.3)
    yield "ThresholdedRelu", _one("ThresholdedRelu", (2, 7), alpha=0.5)
    yield "Shrink", _one("Shrink", (2, 7), lambd=0.5, bias=0.25)
    yield "HardShrink", _one("Shrink", (2, 7), lambd=0.5)
    yield "HardSigmoid", _one("HardSigmoid", (2, 7), alpha=0.3, beta=0.4)
    yield "HardSwish", _one("HardSwish", (2, 7))
    yield "PRelu", _one("PRelu", (1, 3, 2, 2), inits={"s": _f(0.25, -0.5, 1.5).reshape(3, 1, 1)}, inputs=("s",))
    for op in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
        yield op, _one(op, (2, 3, 4), inits={"c": _r(3, 1, seed=4) + 2.5}, inputs=("c",))
    yield "Clip", _one("Clip", (2, 7), inits={"lo": _f(-0.5), "hi": _f(0.75)}, inputs=("lo", "hi"))
    yield "Clip_min_only", _one("Clip", (2, 7), inits={"lo": _f(-0.5)}, inputs=("lo",))
    yield "Clip_opset6", _one("Clip", (2, 7), opset=6, min=-0.25, max=0.5)
    for p in (2.0, 3.0, -1.0):
        yield f"Pow_{p}", _one("Pow", (2, 7), inits={"p": _f(p)}, inputs=("p",))


def _positive() -> Iterator[tuple[str, onnx.ModelProto]]:
    """Ops defined on positive inputs: x² + 0.1 first."""
    for op in ("Sqrt", "Log", "Reciprocal"):
        nodes = [helper.make_node("Mul", ["x", "x"], ["s"]), helper.make_node("Add", ["s", "c"], ["p"]), helper.make_node(op, ["p"], ["y"])]
        yield op, _m(nodes, (2, 7), {"c": _f(0.1)})
    nodes = [helper.make_node("Mul", ["x", "x"], ["s"]), helper.make_node("Add", ["s", "c"], ["p"]),
             helper.make_node("Pow", ["p", "e"], ["y"])]
    yield "Pow_0.5", _m(nodes, (2, 7), {"c": _f(0.1), "e": _f(0.5)})


def _reductions() -> Iterator[tuple[str, onnx.ModelProto]]:
    for op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL2", "ReduceL1", "ReduceProd", "ReduceLogSumExp"):
        yield op, _one(op, (2, 3, 4), axes=[1, -1], keepdims=1)
        yield f"{op}_opset18", _one(op, (2, 3, 4), opset=18, inits={"a": _i(1)}, inputs=("a",), keepdims=0)
    yield "ReduceSum", _one("ReduceSum", (2, 3, 4), opset=13, inits={"a": _i(0, 2)}, inputs=("a",), keepdims=0)
    yield "ReduceSum_all", _one("ReduceSum", (2, 3, 4), opset=13)
    yield "Softmax_opset11", _one("Softmax", (2, 3, 4), opset=11, axis=1)
    yield "Softmax", _one("Softmax", (2, 3, 4), axis=1)
    yield "LogSoftmax", _one("LogSoftmax", (2, 3, 4), axis=-1)
    yield "BatchNormalization", _one("BatchNormalization", (2, 3, 2, 2), inits={"g": _f(1.5, -0.5, 1), "b": _f(0.1, 0, -0.2),
                                     "m": _f(0.3, -0.1, 0), "v": _f(0.5, 2, 1.3)}, inputs=("g", "b", "m", "v"), epsilon=1e-3)
    yield "LayerNormalization", _one("LayerNormalization", (2, 3, 4), inits={"g": _r(3, 4, seed=5), "b": _r(3, 4, seed=6)},
                                     inputs=("g", "b"), axis=1)
    yield "GroupNormalization", _one("GroupNormalization", (2, 4, 2, 2), opset=21, inits={"g": _f(1.5, -0.5, 1, 2), "b": _f(0.1, 0, -0.2, 1)},
                                     inputs=("g", "b"), num_groups=2, epsilon=1e-3)
    yield "GroupNormalization_opset18", _one("GroupNormalization", (2, 4, 2, 2), opset=18, inits={"g": _f(1.5, -0.5), "b": _f(0.1, 1)},
                                             inputs=("g", "b"), num_groups=2)
    yield "InstanceNormalization", _one("InstanceNormalization", (2, 3, 2, 2), inits={"g": _f(1.5, -0.5, 1), "b": _f(0.1, 0, -0.2)},
                                        inputs=("g", "b"))


def _linear() -> Iterator[tuple[str, onnx.ModelProto]]:
    yield "MatMul_batched", _one("MatMul", (2, 3, 4), inits={"w": _r(4, 5, seed=2)}, inputs=("w",))
    yield "MatMul_vector", _one("MatMul", (2, 4), inits={"w": _r(4, seed=2)}, inputs=("w",))
    yield "Gemm", _one("Gemm", (3, 4), inits={"w": _r(4, 5, seed=2), "c": _r(5, seed=3)}, inputs=("w", "c"), alpha=0.5, beta=1.5)
    yield "Gemm_transA", _one("Gemm", (4, 3), inits={"w": _r(5, 4, seed=2)}, inputs=("w",), transA=1, transB=1)
    w, b = {"w": _r(4, 2, 3, 3, seed=2)}, {"b": _r(4, seed=3)}
    yield "Conv", _one("Conv", S4, inits={**w, **b}, inputs=("w", "b"), pads=[1, 0, 2, 1], strides=[2, 1])
    yield "Conv_dilated", _one("Conv", S4, inits=w, inputs=("w",), dilations=[2, 1])
    yield "Conv_same_upper", _one("Conv", S4, inits=w, inputs=("w",), auto_pad="SAME_UPPER", strides=[2, 2])
    yield "Conv_same_lower", _one("Conv", S4, inits=w, inputs=("w",), auto_pad="SAME_LOWER", strides=[2, 2])
    yield "Conv_grouped", _one("Conv", (1, 4, 5, 5), inits={"w": _r(6, 2, 2, 2, seed=2)}, inputs=("w",), group=2)
    yield "Conv_depthwise", _one("Conv", (1, 3, 5, 5), inits={"w": _r(3, 1, 3, 3, seed=2)}, inputs=("w",), group=3, pads=[1, 1, 1, 1])
    yield "Conv1d", _one("Conv", (1, 2, 9), inits={"w": _r(3, 2, 3, seed=2)}, inputs=("w",), strides=[2], pads=[1, 0])
    wt = {"w": _r(2, 3, 3, 3, seed=2)}
    yield "ConvTranspose", _one("ConvTranspose", (1, 2, 4, 4), inits={**wt, "b": _r(3, seed=3)}, inputs=("w", "b"), strides=[2, 2],
                                pads=[1, 0, 0, 1], output_padding=[1, 1])
    yield "ConvTranspose_dilated", _one("ConvTranspose", (1, 2, 4, 4), inits=wt, inputs=("w",), dilations=[2, 1], strides=[1, 2])
    yield "ConvTranspose_output_shape", _one("ConvTranspose", (1, 2, 4, 4), inits=wt, inputs=("w",), strides=[2, 2], output_shape=[8, 9])
    yield "ConvTranspose_grouped", _one("ConvTranspose", (1, 4, 3, 3), inits={"w": _r(4, 1, 2, 2, seed=2)}, inputs=("w",), group=2)


def _pools() -> Iterator[tuple[str, onnx.ModelProto]]:
    yield "MaxPool", _one("MaxPool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    yield "MaxPool_ceil", _one("MaxPool", S4, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    yield "MaxPool_dilated", _one("MaxPool", S4, kernel_shape=[2, 2], dilations=[2, 2], pads=[0, 1, 1, 0])
    yield "MaxPool_same", _one("MaxPool", S4, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    yield "AveragePool", _one("AveragePool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    yield "AveragePool_include_pad", _one("AveragePool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    yield "AveragePool_ceil", _one("AveragePool", S4, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    yield "AveragePool_ceil_include_pad", _one("AveragePool", S4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                                               count_include_pad=1)
    yield "GlobalAveragePool", _one("GlobalAveragePool", S4)
    yield "GlobalMaxPool", _one("GlobalMaxPool", S4)


def _resizes() -> Iterator[tuple[str, onnx.ModelProto]]:
    roi = {"roi": np.zeros(0, dtype=np.float32)}
    for mode in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric"):
        for scale in (1.5, 0.6, 3.0):
            yield f"Resize_linear_{mode}_{scale}", _one("Resize", (1, 1, 5, 4), opset=19, inits={**roi, "s": _f(1, 1, scale, scale)},
                                                       inputs=("roi", "s"), mode="linear", coordinate_transformation_mode=mode)
    for nearest in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        for mode in ("half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn"):
            yield f"Resize_nearest_{nearest}_{mode}", _one("Resize", (1, 1, 5, 4), inits={**roi, "s": _f(1, 1, 2.5, 0.75)},
                                                           inputs=("roi", "s"), mode="nearest", nearest_mode=nearest,
                                                           coordinate_transformation_mode=mode)
    yield "Resize_sizes_linear", _one("Resize", (1, 1, 5, 4), inits={**roi, "sc": np.zeros(0, dtype=np.float32), "sz": _i(1, 1, 7, 9)},
                                      inputs=("roi", "sc", "sz"), mode="linear")
    yield "Resize_opset10_nearest", _one("Resize", (1, 1, 3, 4), opset=10, inits={"s": _f(1, 1, 2, 3)}, inputs=("s",), mode="nearest")
    yield "Resize_opset10_linear", _one("Resize", (1, 1, 3, 4), opset=10, inits={"s": _f(1, 1, 2, 1.5)}, inputs=("s",), mode="linear")
    yield "Upsample_opset9", _one("Upsample", (1, 1, 3, 4), opset=9, inits={"s": _f(1, 1, 2, 2)}, inputs=("s",), mode="nearest")


def _shapes() -> Iterator[tuple[str, onnx.ModelProto]]:
    yield "Reshape", _one("Reshape", (2, 3, 4), inits={"s": _i(0, -1, 2)}, inputs=("s",))
    yield "Flatten", _one("Flatten", (2, 3, 4), axis=2)
    yield "Flatten_negative_axis", _one("Flatten", (2, 3, 4), axis=-1)
    yield "Transpose", _one("Transpose", (2, 3, 4), perm=[2, 0, 1])
    yield "Squeeze", _one("Squeeze", (2, 1, 4), inits={"a": _i(1)}, inputs=("a",))
    yield "Unsqueeze", _one("Unsqueeze", (2, 4), inits={"a": _i(0, -1)}, inputs=("a",))
    yield "Unsqueeze_opset11", _one("Unsqueeze", (2, 4), opset=11, axes=[1])
    yield "Concat", _one("Concat", (2, 3), inits={"c": _r(2, 2, seed=3)}, inputs=("c",), axis=1)
    yield "Slice_negative_step", _one("Slice", (5, 6), inits={"s": _i(-1, 4), "e": _i(-100, 0), "a": _i(0, 1), "t": _i(-2, -1)},
                                      inputs=("s", "e", "a", "t"))
    yield "Slice", _one("Slice", (5, 6), inits={"s": _i(1), "e": _i(1000), "a": _i(-1)}, inputs=("s", "e", "a"))
    yield "Gather", _one("Gather", (5, 6), inits={"i": _i(4, -1, 0, 2)}, inputs=("i",), axis=1)
    yield "Expand", _one("Expand", (3, 1), inits={"s": _i(2, 3, 4)}, inputs=("s",))
    yield "DepthToSpace", _one("DepthToSpace", (1, 8, 2, 3), blocksize=2)
    yield "DepthToSpace_CRD", _one("DepthToSpace", (1, 8, 2, 3), blocksize=2, mode="CRD")
    yield "SpaceToDepth", _one("SpaceToDepth", (1, 2, 4, 6), blocksize=2)
    yield "GatherND", _one("GatherND", (2, 3, 4), inits={"i": _i(0, -1, 1, 1, 1, 0).reshape(2, 1, 3)}, inputs=("i",), batch_dims=0)
    yield "GatherND_batch_dims", _one("GatherND", (2, 3, 4), inits={"i": _i(2, -1, 0, 1).reshape(2, 1, 2)}, inputs=("i",), batch_dims=1)
    yield "GatherElements_smaller_index", _one("GatherElements", (2, 3, 4), inits={"i": _i(2, 0, -1).reshape(1, 3, 1)}, inputs=("i",),
                                               axis=2)
    yield "CumSum", _one("CumSum", (2, 3, 4), inits={"a": _i(1)}, inputs=("a",))
    yield "CumSum_exclusive_reverse", _one("CumSum", (2, 3, 4), inits={"a": _i(-1)}, inputs=("a",), exclusive=1, reverse=1)
    yield "Einsum", _m([helper.make_node("Einsum", ["x", "w"], ["y"], equation="bij,kj->bik")], (2, 3, 4), {"w": _r(5, 4, seed=8)})
    yield "Einsum_ellipsis", _m([helper.make_node("Einsum", ["x", "x"], ["y"], equation="...ij,...kj")], (2, 3, 4), opset=17)
    yield "Tile", _one("Tile", (2, 3), inits={"r": _i(2, 2)}, inputs=("r",))
    for mode in ("constant", "reflect", "edge"):
        yield f"Pad_{mode}", _one("Pad", (1, 2, 4, 4), inits={"p": _i(0, 0, 2, -1, 0, 0, 1, 2), "v": _f(0.5)}, inputs=("p", "v"), mode=mode)
    yield "Pad_wrap", _one("Pad", (1, 2, 4, 4), opset=19, inits={"p": _i(0, 0, 2, 1, 0, 0, 1, 2)}, inputs=("p",), mode="wrap")
    yield "Identity_Dropout", _m([helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Dropout", ["i"], ["y"])], (2, 3))
    split = [helper.make_node("Split", ["x", "sp"], ["a", "b"], axis=1), helper.make_node("Sub", ["b", "a"], ["y"])]
    yield "Split", _m(split, (2, 6), {"sp": _i(3, 3)})
    split18 = [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3), helper.make_node("Concat", ["c", "a"], ["y"], axis=1)]
    yield "Split_num_outputs", _m(split18, (2, 7), opset=18)
    where = [helper.make_node("Greater", ["x", "t"], ["g"]), helper.make_node("Less", ["x", "u"], ["l"]),
             helper.make_node("Equal", ["x", "x"], ["e"]), helper.make_node("And", ["g", "e"], ["ge"]),
             helper.make_node("Or", ["ge", "l"], ["c"]), helper.make_node("Where", ["c", "x", "z"], ["y"])]
    yield "Where_compare", _m(where, (2, 7), {"t": _f(0.3), "u": _f(-1.0), "z": _f(-5.0)})
    shape = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ConstantOfShape", ["s"], ["o"],
                                                                      value=numpy_helper.from_array(_f(1.5))),
             helper.make_node("Range", ["r0", "r1", "r2"], ["r"]), helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "o"], ["m"]), helper.make_node("Add", ["m", "rf"], ["y"])]
    yield "Shape_ConstantOfShape_Range_Cast", _m(shape, (2, 4), {"r0": np.int64(1), "r1": np.int64(9), "r2": np.int64(2)})


def _chain(ops: list[tuple], shape: tuple[int, ...], inits: dict | None = None, opset: int = 17) -> onnx.ModelProto:
    """x → op → op → … → y, each (op_type, extra inputs, attributes); the result is Cast to float when asked."""
    nodes, prev = [], "x"
    for i, (op, extra, attrs) in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        nodes.append(helper.make_node(op, [prev, *extra], [out], **attrs))
        prev = out
    return _m(nodes, shape, inits, opset)


TO_FLOAT = ("Cast", (), {"to": TensorProto.FLOAT})
HALVES = [("Mul", ("four",), {}), ("Floor", (), {}), ("Mul", ("half",), {})]  # k/2: many exact ties and .5 values
HALF_INITS = {"four": _f(4.0), "half": _f(0.5)}


def _discrete() -> Iterator[tuple[str, onnx.ModelProto]]:
    """ArgMax/ArgMin, OneHot, Round, Mod, NonZero, casts to integer types and logic on the data."""
    yield "ArgMax", _chain([("ArgMax", (), {"axis": 1}), TO_FLOAT], (2, 3, 4))
    yield "ArgMax_last_no_keepdims", _chain([("ArgMax", (), {"axis": -1, "keepdims": 0, "select_last_index": 1}), TO_FLOAT], (2, 3, 4))
    yield "ArgMin_axis0", _chain([("ArgMin", (), {"axis": 0, "keepdims": 0}), TO_FLOAT], (2, 3, 4))
    for last in (0, 1):
        for op in ("ArgMax", "ArgMin"):
            yield f"{op}_ties_last{last}", _chain(HALVES + [(op, (), {"axis": 1, "select_last_index": last}), TO_FLOAT], (3, 6),
                                                  HALF_INITS)
    yield "Round_halves", _chain(HALVES + [("Round", (), {})], (3, 6), HALF_INITS)
    yield "Round", _one("Round", (2, 7))
    for c in (1.5, -0.7):
        yield f"Mod_fmod_{c}", _one("Mod", (2, 7), inits={"c": _f(c)}, inputs=("c",), fmod=1)
    yield "Mod_fmod_broadcast", _one("Mod", (2, 3), inits={"c": _f(0.5, -1.25, 3.0)}, inputs=("c",), fmod=1)
    for fmod in (0, 1):
        for c in (3, -3):
            yield f"Mod_int_fmod{fmod}_{c}", _chain([("Mul", ("k",), {}), ("Cast", (), {"to": TensorProto.INT64}),
                                                     ("Mod", ("c",), {"fmod": fmod}), TO_FLOAT], (3, 6), {"k": _f(4.0), "c": _i(c)})
    for name, to in (("int8", TensorProto.INT8), ("int16", TensorProto.INT16), ("int32", TensorProto.INT32),
                     ("int64", TensorProto.INT64)):
        yield f"Cast_{name}", _chain([("Mul", ("k",), {}), ("Cast", (), {"to": to}), TO_FLOAT], (3, 6), {"k": _f(20.0)})
    for name, to in (("uint8", TensorProto.UINT8), ("uint16", TensorProto.UINT16), ("uint32", TensorProto.UINT32),
                     ("uint64", TensorProto.UINT64)):
        yield f"Cast_{name}", _chain([("Abs", (), {}), ("Mul", ("k",), {}), ("Cast", (), {"to": to}), TO_FLOAT], (3, 6), {"k": _f(20.0)})
    yield "Cast_float16", _chain([("Mul", ("k",), {}), ("Cast", (), {"to": TensorProto.FLOAT16}), TO_FLOAT], (3, 6), {"k": _f(1000.0)})
    yield "Cast_bool", _chain([("Round", (), {}), ("Cast", (), {"to": TensorProto.BOOL}), TO_FLOAT], (3, 6))
    yield "NonZero", _chain([("Round", (), {}), ("NonZero", (), {}), TO_FLOAT], (3, 4))
    for axis in (-1, 0, 1):
        yield f"OneHot_axis{axis}", _chain([("Mul", ("k",), {}), ("Cast", (), {"to": TensorProto.INT64}),
                                            ("OneHot", ("d", "v"), {"axis": axis})], (2, 5), {"k": _f(2.0), "d": _i(4), "v": _f(-1.0, 2.5)})
    yield "OneHot_float_indices", _chain([("Mul", ("k",), {}), ("OneHot", ("d", "v"), {})], (2, 5),
                                         {"k": _f(2.0), "d": _f(5.0), "v": _f(0.0, 1.0)})
    logic = [helper.make_node("GreaterOrEqual", ["x", "a"], ["g"]), helper.make_node("LessOrEqual", ["x", "b"], ["l"]),
             helper.make_node("Xor", ["g", "l"], ["xo"]), helper.make_node("Not", ["xo"], ["n"]),
             helper.make_node("Mul", ["x", "four"], ["x4"]), helper.make_node("Floor", ["x4"], ["fl"]),
             helper.make_node("Mul", ["fl", "half"], ["h"]), helper.make_node("Equal", ["h", "c"], ["e"]),
             helper.make_node("Or", ["n", "e"], ["o"]), helper.make_node("Cast", ["o"], ["y"], to=TensorProto.FLOAT)]
    yield "Logic_GreaterOrEqual_LessOrEqual_Xor_Not_Or_Equal", _m(logic, (3, 6), {"a": _f(-0.5), "b": _f(0.75), "c": _f(0.5), **HALF_INITS})


def _folded() -> Iterator[tuple[str, onnx.ModelProto]]:
    """Constants computed in the model (each once folded differently from ONNX): a cast of a derived constant,
    Pow of integers, Slice with a negative step clamped at the start, CastLike of a constant to data's type."""
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [helper.make_node("Div", ["ten", "three"], ["q"]), helper.make_node("Cast", ["q"], ["qi"], to=i64),
             helper.make_node("Cast", ["qi"], ["qf"], to=f), helper.make_node("Mul", ["x", "qf"], ["y"])]
    yield "Fold_cast_of_derived", _m(nodes, (2, 3), {"ten": np.float32(10.0), "three": np.float32(3.0)})
    nodes = [helper.make_node("Pow", ["three", "two"], ["p"]), helper.make_node("Div", ["p", "two"], ["d"]),
             helper.make_node("Cast", ["d"], ["df"], to=f), helper.make_node("Mul", ["x", "df"], ["y"])]
    yield "Fold_integer_pow", _m(nodes, (2, 3), {"three": np.int64(3), "two": np.int64(2)})
    nodes = [helper.make_node("Slice", ["ax", "s", "e", "a", "t"], ["axs"]),
             helper.make_node("ReduceSum", ["x", "axs"], ["y"], keepdims=1)]
    yield "Fold_slice_negative_step", _m(nodes, (2, 3), {"ax": _i(1, 0), "s": _i(-100), "e": _i(-1000), "a": _i(0), "t": _i(-1)})
    nodes = [helper.make_node("Cast", ["x"], ["xi"], to=i64), helper.make_node("CastLike", ["c", "xi"], ["ci"]),
             helper.make_node("Cast", ["ci"], ["cf"], to=f), helper.make_node("Mul", ["x", "cf"], ["y"])]
    yield "Fold_castlike_to_data", _m(nodes, (2, 3), {"c": _f(2.7)})


def op_cases() -> dict[str, onnx.ModelProto]:
    """name → single-op (or few-op) model with one float32 input 'x'."""
    out: dict[str, onnx.ModelProto] = {}
    for gen in (_elementwise, _positive, _reductions, _linear, _pools, _resizes, _shapes, _discrete, _folded):
        out.update(gen())
    return out
