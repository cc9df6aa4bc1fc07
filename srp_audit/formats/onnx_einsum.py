"""ONNX Einsum on the model's data, read as ops that already have rules: transposes and reshapes around one
matrix product — a Dense layer when the other operand is a stored weight, the bilinear data × data product
(attention's "bhqd,bhkd->bhqk") otherwise — and sums (Reduce) over indices only one operand has. The batch
index must lead every data operand and the output; repeated indices (diagonals) and more than two operands are
refused by name."""

from __future__ import annotations

import math
import string
from typing import Any

import numpy as np

from ..ops.affine import Dense
from ..ops.reduce import Reduce
from ..ops.shape import Reshape, Transpose
from .context import Tensor, Value, stored_tensor
from .onnx_context import OnnxContext
from .onnx_ops import handles


def parse_equation(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """(one index string per operand, the output's) with '...' spelt out as upper-case letters (right-aligned
    across operands, as numpy broadcasts) and the implicit output (no '->') made explicit."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation '{equation}' has {len(terms)} operands, the node {len(ranks)}")
    spare = [c for c in string.ascii_uppercase if c not in eq]
    widths = [r - len(t.replace("...", "")) if "..." in t else 0 for t, r in zip(terms, ranks)]
    n_ell = max(widths, default=0)
    ell = "".join(spare[:n_ell])
    terms = [t.replace("...", ell[n_ell - w:]) for t, w in zip(terms, widths)]
    for t, r in zip(terms, ranks):
        if len(t) != r or not t.isalpha():
            raise ValueError(f"term '{t}' does not index a rank-{r} operand")
    if arrow:
        out = rhs.replace("...", ell)
    else:
        once = sorted(c for c in set("".join(terms)) if "".join(terms).count(c) == 1 and c not in ell)
        out = ell + "".join(once)
    return terms, out


@handles("Einsum")
def _einsum(ctx: OnnxContext, node: Any, attrs: dict) -> list[Value]:
    ins = [ctx.get(i) for i in node.input]
    if not any(isinstance(v, Tensor) for v in ins):
        raise ctx.unsupported("an Einsum of constants only (its float sums would round)")
    if len(ins) > 2:
        raise ctx.unsupported(f"an Einsum of {len(ins)} operands (one or two are supported)")
    equation = attrs["equation"].decode() if isinstance(attrs["equation"], bytes) else str(attrs["equation"])
    values: list[Tensor | np.ndarray] = [v if isinstance(v, Tensor) else ctx.const(n, "operand") for v, n in zip(ins, node.input)]
    ranks = [len(ctx.full_shape(v)) if isinstance(v, Tensor) else v.ndim for v in values]
    try:
        terms, out = parse_equation(equation, ranks)
    except ValueError as e:
        raise ctx.unsupported(str(e)) from None
    if any(len(set(t)) != len(t) for t in terms) or len(set(out)) != len(out):
        raise ctx.unsupported(f"'{equation}' repeats an index (a diagonal)")
    if ctx.batched:
        terms, out, values = _without_batch(ctx, terms, out, values, equation)
    sizes: dict[str, int] = {}
    for t, v in zip(terms, values):
        for c, n in zip(t, v.shape):
            if sizes.setdefault(c, n) != n:
                raise ctx.unsupported(f"index '{c}' of '{equation}' has sizes {sizes[c]} and {n} (broadcasting is not read)")
    if any(c not in sizes for c in out):
        raise ctx.unsupported(f"output index of '{equation}' on no operand")
    # indices only one operand has, and the output not: summed on that operand first
    for k, (t, v) in enumerate(zip(terms, values)):
        others = "".join(terms[:k] + terms[k + 1:]) + out
        alone = [i for i, c in enumerate(t) if c not in others]
        if alone:
            if not isinstance(v, Tensor):
                raise ctx.unsupported(f"'{equation}' sums a constant operand over an index (its float sum would round)")
            values[k] = ctx.emit(Reduce(alone, keepdims=False), [v], "reduce")
            terms[k] = "".join(c for c in t if c in others)
    if len(values) == 1:
        return [_arrange(ctx, values[0], terms[0], out)]  # type: ignore[arg-type]  # the only operand: the data (checked above)
    if not isinstance(values[0], Tensor):  # the data operand first
        values, terms = values[::-1], terms[::-1]
    return [_product(ctx, terms, out, values, sizes)]


def _without_batch(ctx: OnnxContext, terms: list[str], out: str, values: list, equation: str) -> tuple[list[str], str, list]:
    """Terms and output at the sample level: the batch index (leading every data operand) dropped, and dropped
    from constants where it has size 1 (a constant broadcast over the batch)."""
    lead = {t[0] for t, v in zip(terms, values) if isinstance(v, Tensor) and v.batch_at == 0 and t}
    if len(lead) != 1 or any(isinstance(v, Tensor) and v.batch_at != 0 for v in values) or not out or out[0] not in lead:
        raise ctx.unsupported(f"'{equation}' moves or sums over the batch axis")
    b = lead.pop()
    new_terms, new_values = [], []
    for t, v in zip(terms, values):
        if isinstance(v, Tensor):
            new_terms.append(t[1:])
            new_values.append(v)
        elif b in t:
            k = t.index(b)
            if v.shape[k] != 1:
                raise ctx.unsupported(f"a constant operand of '{equation}' spans the batch axis")
            new_terms.append(t.replace(b, ""))
            new_values.append(np.squeeze(v, axis=k))
        else:
            new_terms.append(t)
            new_values.append(v)
    return new_terms, out[1:], new_values


def _arrange(ctx: OnnxContext, t: Tensor, have: str, want: str) -> Tensor:
    """`t` (indexed by `have`) transposed to the order `want` (the same letters)."""
    if have == want:
        return t
    return ctx.emit(Transpose(tuple(have.index(c) for c in want)), [t])


def _reshaped(ctx: OnnxContext, t: Tensor, shape: tuple[int, ...]) -> Tensor:
    return t if tuple(t.shape) == shape else ctx.emit(Reshape(shape), [t])


def _product(ctx: OnnxContext, terms: list[str], out: str, values: list, sizes: dict[str, int]) -> Tensor:
    """Two operands, the first data: a matrix product over the shared indices the output drops."""
    ta, tb = terms
    a, b = values
    shared = [c for c in out if c in ta and c in tb]
    left = [c for c in out if c in ta and c not in tb]
    right = [c for c in out if c in tb and c not in ta]
    contr = [c for c in ta if c in tb and c not in out]

    def size(cs: list[str]) -> int:
        return math.prod(sizes[c] for c in cs)

    if isinstance(b, Tensor):  # data × data: (shared, L, K) @ (shared, K, R)
        lead = tuple(sizes[c] for c in shared)
        a2 = _reshaped(ctx, _arrange(ctx, a, ta, "".join(shared + left + contr)), lead + (size(left), size(contr)))
        b2 = _reshaped(ctx, _arrange(ctx, b, tb, "".join(shared + contr + right)), lead + (size(contr), size(right)))
        y = ctx.matmul(a2, b2)
        have = shared + left + right
    else:  # data × a stored weight: a Dense layer over the contracted indices
        if shared:
            raise ctx.unsupported("an Einsum whose constant operand shares an output index with the data (not a weight)")
        if not np.all(np.isfinite(b)):
            raise ctx.unsupported("the constant operand has non-finite entries")
        w = stored_tensor(np.asarray(b, dtype=np.float64) if b.dtype.kind in "iub" else b)
        w = w.permute(*[tb.index(c) for c in contr + right]).reshape(size(contr), size(right))
        a2 = _reshaped(ctx, _arrange(ctx, a, ta, "".join(left + contr)), tuple(sizes[c] for c in left) + (size(contr),))
        y = ctx.emit(Dense(w.T.contiguous()), [a2], "dense")
        have = left + right
    y = _reshaped(ctx, y, tuple(sizes[c] for c in have))
    return _arrange(ctx, y, "".join(have), out)
