"""Input points at which a first-layer ReLU input is exactly zero in exact arithmetic (a tie at the kink).

Between the model input and its first ReLU most networks compute an affine map with rational coefficients
(normalisation by stored constants, dense and convolutional layers). The oracle evaluates that prefix with exact
rationals; along two input coordinates k, l the pre-activation z_j is z_j(base) + α_k t_k + α_l t_l, and
z_j = 0 is a linear Diophantine equation once t_k, t_l are dyadic (T/2^S). A solution whose coordinates are
float32 (or else float64) numbers is an input the bound methods can be handed exactly: srp-audit must then bound
a ReLU whose input is exactly 0, where a rule that rounds the wrong way or drops a tiny interval would show.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from exact_onnx import ExactOnnx
from exact_onnx_core import Unsupported, exact_value


def _fits(v: Fraction, dtype: type) -> bool:
    """v is exactly a finite number of `dtype` (float32 or float64)."""
    f = dtype(float(v)) if abs(v) < 1e300 else dtype(np.inf)
    return bool(np.isfinite(f)) and Fraction(float(f)) == v


def _egcd(a: int, b: int) -> tuple[int, int, int]:
    x0, x1, y0, y1 = 1, 0, 0, 1
    while b:
        q, a, b = a // b, b, a % b
        x0, x1 = x1, x0 - q * x1
        y0, y1 = y1, y0 - q * y1
    return a, x0, y0


def solve_dyadic(ak: Fraction, al: Fraction, c: Fraction, base_k: Fraction, base_l: Fraction, dtype: type,
                 target: Fraction, span: float) -> tuple[Fraction, Fraction] | None:
    """(x_k, x_l) = (base_k + t_k, base_l + t_l), both exactly `dtype` numbers within `span` of `target`, with
    ak·t_k + al·t_l = c exactly; None when no such pair is found."""
    if ak == 0 or al == 0:
        return None
    d = math.lcm(ak.denominator, al.denominator, c.denominator)
    a, b, cc = int(ak * d), int(al * d), int(c * d)
    g, u, _ = _egcd(abs(a), abs(b))
    u = u if a > 0 else -u
    for s in range(0, 64):
        rhs = cc << s
        if rhs % g:
            continue
        step = Fraction(abs(b) // g, 1 << s)  # spacing of t_k over the solutions
        tk0 = Fraction(u * (rhs // g), 1 << s)  # a particular solution: a·(u·rhs/g) ≡ rhs (mod b)
        m0 = round((target - base_k - tk0) / step) if step else 0
        for m in (m0, m0 - 1, m0 + 1, m0 - 2, m0 + 2):
            tk = tk0 + m * step
            tl = (c - ak * tk) / al
            xk, xl = base_k + tk, base_l + tl
            if abs(float(xk - target)) <= span and abs(float(xl - target)) <= span and _fits(xk, dtype) and _fits(xl, dtype):
                return xk, xl
    return None


def relu_tie(ex: ExactOnnx, base: np.ndarray, pairs: list[tuple[int, int]], dtype: type = np.float32,
             target: float = 0.5, span: float = 4.0) -> tuple[np.ndarray, str, int] | None:
    """A point (float64 array in base's shape) where the first Relu's input has an exact zero entry, with that
    value's name and flat index; None when the prefix is not rational or no representable tie is found."""
    relus = ex.node_inputs("Relu")
    if not relus:
        return None
    name = relus[0]
    flat = base.reshape(-1).astype(np.float64)
    try:
        z0 = ex.run([flat.reshape(base.shape)], exact=True, outputs=[name])[0].reshape(-1)
    except Unsupported:
        return None
    for k, l in pairs:
        if k == l:  # one coordinate: x_k = base_k − z_j / α_j, when that is a float number
            found = _single(ex, name, flat, base.shape, z0, k, dtype)
            if found is not None:
                return found
            continue
        moved = []
        for i in (k, l):
            e = flat.copy()
            e[i] += 1.0
            moved.append(ex.run([e.reshape(base.shape)], exact=True, outputs=[name])[0].reshape(-1))
        alpha_k, alpha_l = moved[0] - z0, moved[1] - z0
        both = [j for j in range(z0.size) if alpha_k[j] != 0 and alpha_l[j] != 0]  # neurons that see both coordinates
        for j in sorted(both, key=lambda j: abs(float(z0[j])))[:64]:  # closest to zero first: the smallest moves
            ak, al, c = exact_value(alpha_k[j]), exact_value(alpha_l[j]), -exact_value(z0[j])
            sol = solve_dyadic(ak, al, c, Fraction(flat[k]), Fraction(flat[l]), dtype, Fraction(target), span)
            if sol is None:
                continue
            x = flat.copy()
            x[k], x[l] = float(sol[0]), float(sol[1])
            z = ex.run([x.reshape(base.shape)], exact=True, outputs=[name])[0].reshape(-1)
            if z[j] == 0:
                return x.reshape(base.shape), name, int(j)
    return None


def _single(ex: ExactOnnx, name: str, flat: np.ndarray, shape: tuple[int, ...], z0: np.ndarray, k: int,
            dtype: type) -> tuple[np.ndarray, str, int] | None:
    e = flat.copy()
    e[k] += 1.0
    alpha = ex.run([e.reshape(shape)], exact=True, outputs=[name])[0].reshape(-1) - z0
    for j in range(z0.size):
        if alpha[j] != 0:
            xk = Fraction(flat[k]) - exact_value(z0[j]) / exact_value(alpha[j])
            if _fits(xk, dtype):
                x = flat.copy()
                x[k] = float(xk)
                return x.reshape(shape), name, j
    return None
