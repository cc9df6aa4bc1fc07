"""From a VNN-LIB property's disjunctive normal form to `Clause`s: input boxes rounded outward (proofs) and
inward (confirming counterexamples), output rows made exact, disjuncts sharing a box merged."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .errors import SrpAuditError
from .spec import LinearSpec


class VnnlibError(SrpAuditError):
    """A VNN-LIB file that cannot be read; the message never echoes control characters from the file."""

    def __init__(self, message: str) -> None:
        super().__init__("".join(c if c.isprintable() else "?" for c in message))


@dataclass
class Clause:
    """One input box and the output constraints of the disjuncts that share it.

    The box's bounds are rationals in the file; `lower`/`upper` are rounded outward to float64 (the box every
    proof covers), `lower_in`/`upper_in` inward (every point inside them is in the exact box)."""

    lower: np.ndarray  # (n_inputs,) float64, rounded outward
    upper: np.ndarray
    C: np.ndarray  # (S, n_outputs): rows h = C·y + d
    d: np.ndarray  # (S,)
    groups: list[list[int]]
    strict: np.ndarray  # (S,) bool: the constraint was strict (violated only when h < 0)
    lower_in: np.ndarray | None = None  # rounded inward; None: equal to lower/upper (the bounds were floats)
    upper_in: np.ndarray | None = None
    d_check: np.ndarray | None = None  # constants for confirming counterexamples (≥ d; None: d is exact)

    def __post_init__(self) -> None:
        if self.lower_in is None:
            self.lower_in = self.lower
        if self.upper_in is None:
            self.upper_in = self.upper
        if self.d_check is None:
            self.d_check = self.d

    def spec(self, dtype: torch.dtype = torch.float64, counterexamples: bool = False) -> LinearSpec:
        """The rows for proofs (constants rounded down where not exact: proving them proves the file's rows), or,
        with `counterexamples`, for confirming a violation (rounded up: a point violating them violates the file's)."""
        C = torch.from_numpy(self.C).to(dtype).unsqueeze(0)
        d = torch.from_numpy(self.d_check if counterexamples else self.d).to(dtype).unsqueeze(0)
        return LinearSpec(C, d, self.groups, strict=torch.from_numpy(self.strict))


def _outward(q: Fraction, down: bool) -> float:
    """q as a float64 rounded down (`down`) or up: the exact bound stays inside (past float64's range: ±inf on
    the outer side, the largest float on the inner one)."""
    big = Fraction(np.finfo(np.float64).max)
    if abs(q) > big:
        return (-math.inf if down else -float(big)) if q < 0 else (float(big) if down else math.inf)
    f = float(q)
    if (down and Fraction(f) > q) or (not down and Fraction(f) < q):
        f = math.nextafter(f, -math.inf if down else math.inf)
    return f


def _exact_row(g: Any, n_out: int, path: str) -> tuple[np.ndarray, float, float]:
    """The row h = −g over the outputs as (C row, constant for proofs, constant for counterexamples), never rounded
    the unsafe way: as written when every number is a float64; else scaled by the least common denominator of its
    numbers (a positive factor changes neither h's sign nor the property), which makes them integers exact in
    float64 (0.70710678 → 35355339 − 5·10⁷·Y). When even that needs more than 53 bits, the coefficients are scaled
    to integers alone and the constant is rounded down for proofs (a proof of the smaller h holds for h) and up
    for counterexamples (h ≤ 0 then holds for the exact h too)."""
    values = {int(k[2:]): -v for k, v in g.coef.items() if v != 0}
    const = -g.const
    if any(Fraction(float(v)) != v for v in [*values.values(), const]):
        scale = math.lcm(*(v.denominator for v in [*values.values(), const]))
        if any(abs(v * scale) >= 2 ** 53 for v in [*values.values(), const]):
            scale = math.lcm(*(v.denominator for v in values.values()))
        values = {i: v * scale for i, v in values.items()}
        const *= scale
        if any(abs(v) >= 2 ** 53 or Fraction(float(v)) != v for v in values.values()):
            raise VnnlibError(f"{path}: an output constraint's coefficients need more than float64's 53 bits to be exact "
                              f"even scaled to integers; write them with fewer digits")
    row = np.zeros(n_out)
    for i, v in values.items():
        row[i] = float(v)
    return row, _outward(const, down=True), _outward(const, down=False)


def _kind(g, line: int, path: str) -> tuple:
    """("x", i, is_lower, exact bound) for a·X_i + c ≥ 0, ("y",) for an output constraint, ("c",) for a constant."""
    xs = [k for k in g.coef if k.startswith("X_") and g.coef[k] != 0]
    ys = [k for k in g.coef if k.startswith("Y_") and g.coef[k] != 0]
    if xs and ys:
        raise VnnlibError(f"{path}:{line}: a constraint mixes inputs and outputs; only input boxes and output constraints are supported")
    if len(xs) > 1:
        raise VnnlibError(f"{path}:{line}: a constraint couples several inputs ({', '.join(xs)}); only input boxes are supported")
    if xs:
        a = g.coef[xs[0]]
        return ("x", int(xs[0][2:]), a > 0, -g.const / a)
    return ("y",) if ys else ("c",)


def _tighter(new: tuple, old: tuple, is_lo: bool) -> bool:
    """Whether input bound `new` (value, line, strict) excludes more than `old`: a larger lower (smaller upper)
    value, or the same value excluded (X > v beats X ≥ v)."""
    if new[0] != old[0]:
        return new[0] > old[0] if is_lo else new[0] < old[0]
    return new[2] and not old[2]


TINY32 = float(np.finfo(np.float32).tiny)  # the smallest normal float32


def _inward(bound: tuple, rounded: float, toward: float) -> float:
    """The inner box's float for an input bound already rounded inward: one step further in when the bound is
    strict and the float is the bound itself (X > 0 holds at no point where X = 0); and never a subnormal number
    below float32's smallest normal one, which flushed denormals read as 0 (X > 0 would then admit X = 0): such
    a bound moves inward to ±TINY32 or to 0."""
    f = math.nextafter(rounded, toward) if bound[2] and Fraction(rounded) == bound[0] else rounded
    if 0 < abs(f) < TINY32:
        f = math.copysign(TINY32, toward) if (f > 0) == (toward > 0) else 0.0
    return f


_Bound = tuple[Fraction, int, bool]
"""An input bound: (exact value, line, strict)."""
_Chunk = tuple[dict[int, _Bound], dict[int, _Bound], list[tuple[Any, bool]], bool]
"""A chunk of atoms read: (lower bounds, upper bounds, output atoms (g, strict), holds no point)."""
_Placed = tuple[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray]]
"""An input box: (key: its outward-rounded bounds' bytes, the inner box)."""


class _Boxes:
    """What `clauses_of` keeps across disjuncts: chunks read once, boxes built once per combination of box-bearing
    chunks, exact bounds rounded once, and the first empty box met (for the message when all are empty)."""

    def __init__(self, n_in: int, path: str) -> None:
        self.n_in, self.path = n_in, path
        self.empty: tuple[str, int, int] | None = None  # a variable whose bounds cross, and the lines of its two bounds
        self.kinds: dict[int, tuple] = {}  # per constraint object: disjuncts share the input box's constraints
        self.chunks: dict[int, _Chunk] = {}  # per chunk
        self.made: dict[tuple[int, ...], _Placed | None] = {}  # per combination of box-bearing chunks; None: empty
        self.rounded: dict[tuple[int, bool], float] = {}

    def outward(self, v: Fraction, down: bool) -> float:
        key = (id(v), down)  # v is held by `kinds` for the whole call, so its id stays unique
        if key not in self.rounded:
            self.rounded[key] = _outward(v, down)
        return self.rounded[key]

    def read_chunk(self, chunk: list) -> _Chunk:
        lo: dict[int, _Bound] = {}  # input → (value, line, strict)
        hi: dict[int, _Bound] = {}
        outs = []
        for g, strict, line in chunk:
            kind = self.kinds.get(id(g))
            if kind is None:
                kind = self.kinds[id(g)] = _kind(g, line, self.path)
            if kind[0] == "x":  # a·X_i + c ≥ 0  →  bound on X_i, kept exact
                _, i, is_lo, v = kind
                side = lo if is_lo else hi
                if i not in side or _tighter((v, line, strict), side[i], is_lo):
                    side[i] = (v, line, strict)
            elif kind[0] == "y":
                outs.append((g, strict))
            elif g.const < 0 or (strict and g.const == 0):
                return lo, hi, outs, True  # a constant false constraint: no disjunct with this chunk holds a point
        return lo, hi, outs, False

    def box_of(self, parts: list[_Chunk]) -> _Placed | None:
        """(key, inner box) of the box the chunks' input bounds make; None when it is empty."""
        n_in = self.n_in
        lo, hi = _merged_bounds(parts)
        missing = [f"X_{i}" for i in range(n_in) if i not in lo or i not in hi]
        if missing:
            raise VnnlibError(f"{self.path}: input(s) {', '.join(missing[:5])} lack a lower or upper bound")
        crossed = next((i for i in range(n_in) if lo[i][0] > hi[i][0] or (lo[i][0] == hi[i][0] and (lo[i][2] or hi[i][2]))), None)
        if crossed is not None:
            self.empty = self.empty or (f"X_{crossed}", lo[crossed][1], hi[crossed][1])
            return None  # an empty box: this disjunct holds no point
        lo_out = np.array([self.outward(lo[i][0], True) for i in range(n_in)])
        hi_out = np.array([self.outward(hi[i][0], False) for i in range(n_in)])
        key = (lo_out.tobytes(), hi_out.tobytes())
        return key, (np.array([_inward(lo[i], self.outward(lo[i][0], False), math.inf) for i in range(n_in)]),
                     np.array([_inward(hi[i], self.outward(hi[i][0], True), -math.inf) for i in range(n_in)]))

    def place(self, conj: list[list]) -> tuple[tuple, tuple[np.ndarray, np.ndarray], list[tuple[Any, bool]]] | None:
        """A disjunct (a list of chunks) as (the key of its clause, its inner box, its output atoms); None when it
        holds no point (a false constant or an empty box)."""
        parts = []
        for chunk in conj:
            if id(chunk) not in self.chunks:
                self.chunks[id(chunk)] = self.read_chunk(chunk)
            parts.append(self.chunks[id(chunk)])
        if any(p[3] for p in parts):
            return None
        boxed = tuple(id(c) for c, p in zip(conj, parts) if p[0] or p[1])
        if boxed not in self.made:
            self.made[boxed] = self.box_of([p for p in parts if p[0] or p[1]])
        made = self.made[boxed]
        if made is None:
            return None
        outer, box_in = made
        key = outer + (box_in[0].tobytes(), box_in[1].tobytes())  # disjuncts merge only where both boxes agree
        return key, box_in, [o for p in parts for o in p[2]]


def _merged_bounds(parts: list[_Chunk]) -> tuple[dict[int, _Bound], dict[int, _Bound]]:
    """The tightest lower and upper bound of every input over the chunks."""
    lo: dict[int, _Bound] = {}  # input → (value, line, strict)
    hi: dict[int, _Bound] = {}
    for c_lo, c_hi, _, _ in parts:
        for mine, theirs, is_lo in ((lo, c_lo, True), (hi, c_hi, False)):
            if not mine:
                mine.update(theirs)
                continue
            for i, b in theirs.items():
                if i not in mine or _tighter(b, mine[i], is_lo):
                    mine[i] = b
    return lo, hi


def _clause(key: tuple, disjuncts: list[list[tuple[Any, bool]]], inner: tuple[np.ndarray, np.ndarray], n_out: int,
            path: str) -> Clause:
    """The clause of one input box (`key`: its outward bounds' bytes first; `inner`: its inner box): one group of
    exact rows per disjunct."""
    lo_b, hi_b = key[:2]
    rows, d, d_check, strict, groups = [], [], [], [], []
    for outs in disjuncts:
        group = []
        for g, s in outs:
            row, low, high = _exact_row(g, n_out, path)
            rows.append(row)
            d.append(low)
            d_check.append(high)
            strict.append(s)
            group.append(len(rows) - 1)
        groups.append(group)
    lo_in, hi_in = inner
    return Clause(np.frombuffer(lo_b).copy(), np.frombuffer(hi_b).copy(),
                  np.array(rows).reshape(len(rows), n_out), np.array(d, dtype=np.float64),
                  groups, np.array(strict, dtype=bool), lo_in, hi_in, np.array(d_check, dtype=np.float64))


def clauses_of(dnf: list[list[list]], n_in: int, n_out: int, path: str) -> list[Clause]:
    """Clauses (one per distinct input box) from disjuncts given as lists of chunks of atoms. Chunks are shared
    between disjuncts (the input box, written once, is in every one), so each chunk is read once and each
    distinct combination of box-bearing chunks is built once: linear in the file, not in disjuncts × inputs."""
    reader = _Boxes(n_in, path)
    boxes: dict[tuple, list[list]] = {}
    inner: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for conj in dnf:
        placed = reader.place(conj)
        if placed is None:
            continue
        key, box_in, outs = placed
        inner[key] = box_in
        boxes.setdefault(key, []).append(outs)
    if not boxes and reader.empty is not None:
        name, lo_line, hi_line = reader.empty
        raise VnnlibError(f"{path}:{lo_line}: the input set is empty: the lower bound of {name} (line {lo_line}) exceeds its "
                          f"upper bound (line {hi_line}), so the property would hold vacuously; fix the bounds")
    return [_clause(key, disjuncts, inner[key], n_out, path) for key, disjuncts in boxes.items()]
