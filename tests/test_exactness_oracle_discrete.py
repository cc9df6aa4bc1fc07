"""The exactness oracle's discrete ops (tests/exact_onnx_discrete.py, Cast to integers) are rigorous where a ball
meets a jump: exact ties and breakpoints are decided exactly, a real-valued step of a straddling ball is the union of
both sides, and an integer result the balls cannot decide is re-evaluated at more bits or refused (Undecided)."""

from __future__ import annotations

import numpy as np
import pytest
from exact_onnx import ExactOnnx
from exact_onnx_core import Ctx, Undecided, Unsupported, step
from exact_onnx_discrete import _remainder, _round_half_even
from extreme_cases import denormals
from flint import arb, fmpq
from onnx import TensorProto, helper, numpy_helper


def _model(nodes: list, shape: tuple[int, ...], inits: dict | None = None) -> ExactOnnx:
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], tensors)
    return ExactOnnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def test_round_and_mod_on_their_breakpoints() -> None:
    assert [step(arb(v), _round_half_even) for v in (0.5, 1.5, 2.5, -0.5, -2.5)] == [0, 2, 2, 0, -2]
    assert step(fmpq(5, 2), _round_half_even) == 2
    r = step(arb(0.5, 1e-30), _round_half_even)  # straddles 0.5: both 0 and 1
    assert r.contains(0) and r.contains(1)
    assert _remainder(arb(3), arb(1.5), int) == 0 and _remainder(fmpq(-9, 2), fmpq(3, 2), int) == 0
    m = _remainder(arb(3, 1e-30), arb(1.5), int)  # fmod near 3 = 2·1.5: values near 0 and near 1.5
    assert m.contains(0) and m.contains(arb(1.5) - arb(1e-31)) and m.lower() > -1e-8 and m.upper() < 1.5 + 1e-8


def test_argmax_ties_and_a_tie_decided_only_at_more_bits() -> None:
    with denormals(False):  # the CLI flushes denormals for speed; an earlier test in this process may have run it
        _argmax_ties()


def _argmax_ties() -> None:
    nodes = [helper.make_node("ArgMax", ["x"], ["a"], axis=1, keepdims=0), helper.make_node("Cast", ["a"], ["y"], to=TensorProto.FLOAT)]
    ex = _model(nodes, (2, 3))
    assert ex.run([np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])])[0].tolist() == [1, 0]
    # (x + 2^127) / 3 at x = 0 and x = 2^-149: the two differ by 2^-276 relative, below 256 bits, above 1024 bits
    nodes = [helper.make_node("Add", ["x", "c"], ["s"]), helper.make_node("Div", ["s", "three"], ["d"])] + nodes
    nodes[2].input[0] = "d"
    ex = _model(nodes, (1, 2), {"c": np.float32(2.0 ** 127), "three": np.float32(3.0)})
    tiny = float(np.nextafter(np.float32(0), np.float32(1)))
    assert ex.run([np.array([[0.0, tiny]])])[0].tolist() == [1]
    assert ex.run([np.array([[tiny, tiny]])], exact=True)[0].tolist() == [0]  # an exact tie: the first index
    with pytest.raises(Undecided, match="ArgMax"):  # equal inexact balls: no precision decides them
        ex.run([np.array([[tiny, tiny]])])


def test_cast_to_integers_decides_or_refuses() -> None:
    from exact_onnx_shape import _cast

    ctx = Ctx(17)
    assert _cast(ctx, np.array([2.9999998, -2.5, -0.5, 127.9]), TensorProto.INT8).tolist() == [2, -2, 0, 127]
    with pytest.raises(Undecided):
        _cast(ctx, np.array([arb(3, 1e-30)], dtype=object), TensorProto.INT32)
    with pytest.raises(Unsupported, match="out of its range"):
        _cast(ctx, np.array([128.5]), TensorProto.INT8)
    with pytest.raises(Unsupported, match="out of its range"):
        _cast(ctx, np.array([-1.5]), TensorProto.UINT16)
