"""VNN-LIB 1.0 reader (plain or .gz): the VNN-COMP property format.

A file declares inputs X_i and outputs Y_j and asserts constraints; a *counterexample* is an assignment that
satisfies every assert. We read the asserts into disjunctive normal form: a list of disjuncts, each a box on
X (bounds per input) and a conjunction of linear constraints over Y. Disjuncts sharing a box become one
`Clause` whose output part is a `LinearSpec` (one group per disjunct; a constraint g(Y) ≥ 0 becomes the row
h = −g, so a point violates the property when some group has all its rows ≤ 0, and the property is proved when
every group has a row that is > 0 over the whole box). Malformed files give one error naming the line.
"""

from __future__ import annotations

import gzip
import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from .errors import SrpAuditError
from .spec import LinearSpec

MAX_DISJUNCTS = 100_000


MAX_SPEC_BYTES = 1 << 30  # a larger (decompressed) spec is refused before parsing: its parse would not fit in memory


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


@dataclass
class VnnlibSpec:
    path: str
    n_inputs: int
    n_outputs: int
    clauses: list[Clause] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ tokens


_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def _tokens(text: str, path: str) -> list[tuple[str, int]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split(";", 1)[0]
        out.extend([(t, lineno) for t in _TOKEN.findall(line)])
    return out


def _parse(tokens: list[tuple[str, int]], path: str) -> list[tuple[object, int]]:
    """S-expressions as nested lists of (token, line); returns the top-level forms with their line."""
    forms, stack = [], []
    for tok, line in tokens:
        if tok == "(":
            stack.append(([], line))
        elif tok == ")":
            if not stack:
                raise VnnlibError(f"{path}:{line}: unbalanced ')'")
            items, start = stack.pop()
            if stack:
                stack[-1][0].append((items, start))
            else:
                forms.append((items, start))
        else:
            if not stack:
                raise VnnlibError(f"{path}:{line}: '{tok}' outside any expression")
            stack[-1][0].append((tok, line))
    if stack:
        raise VnnlibError(f"{path}:{stack[-1][1]}: expression opened here is never closed")
    return forms


# ------------------------------------------------------------------------------------------------ linear terms


@dataclass
class _Lin:
    """Σ coef·var + const, with exact rational coefficients while parsing."""

    coef: dict[str, Fraction]
    const: Fraction

    def __add__(self, o: "_Lin") -> "_Lin":
        c = dict(self.coef)
        for k, v in o.coef.items():
            c[k] = c.get(k, Fraction(0)) + v
        return _Lin(c, self.const + o.const)

    def scale(self, s: Fraction) -> "_Lin":
        return _Lin({k: v * s for k, v in self.coef.items()}, self.const * s)


_ONE, _ZERO = Fraction(1), Fraction(0)


_PLAIN = re.compile(r"([+-]?)(\d*)\.?(\d*)")


def _number(tok: str) -> Fraction | None:
    """The exact value of a numeric token; plain decimals (most of a spec) skip Fraction's general parser."""
    m = _PLAIN.fullmatch(tok)
    if m is not None and (m.group(2) or m.group(3)):
        sign, whole, frac = m.groups()
        value = Fraction(int(whole + frac or "0"), 10 ** len(frac))
        return -value if sign == "-" else value
    try:
        return Fraction(tok)
    except (ValueError, ZeroDivisionError):
        return None


def _diff(a: _Lin, b: _Lin) -> _Lin:
    """a − b."""
    c = dict(a.coef)
    for k, v in b.coef.items():
        c[k] = c.get(k, _ZERO) - v
    return _Lin(c, a.const - b.const)


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.inputs: set[str] = set()
        self.outputs: set[str] = set()

    def fail(self, line: int, msg: str) -> VnnlibError:
        return VnnlibError(f"{self.path}:{line}: {msg}")

    def term(self, expr, line: int) -> _Lin:
        if isinstance(expr, str):
            if expr in self.inputs or expr in self.outputs:
                return _Lin({expr: _ONE}, _ZERO)
            n = _number(expr)
            if n is not None:
                return _Lin({}, n)
            raise self.fail(line, f"'{expr}' is neither a number nor a declared variable")
        if not expr:
            raise self.fail(line, "empty expression")
        op, op_line = expr[0]
        args = [self.term(e, ln) for e, ln in expr[1:]]
        if op == "+":
            return sum(args[1:], args[0]) if args else _Lin({}, Fraction(0))
        if op == "-":
            if len(args) == 1:
                return args[0].scale(Fraction(-1))
            return sum((a.scale(Fraction(-1)) for a in args[1:]), args[0])
        if op == "*":
            consts = [a for a in args if not a.coef]
            vars_ = [a for a in args if a.coef]
            if len(vars_) > 1:
                raise self.fail(op_line, "products of variables are not linear")
            factor = Fraction(1)
            for c in consts:
                factor *= c.const
            return vars_[0].scale(factor) if vars_ else _Lin({}, factor)
        raise self.fail(op_line, f"'{op}' is not a linear term operator (+, -, *)")

    def formula(self, expr, line: int) -> list[list[tuple[_Lin, bool]]]:
        """DNF: a list of conjunctions of atoms (g, strict) meaning g ≥ 0 (g > 0 when strict)."""
        if isinstance(expr, str) or not expr:
            raise self.fail(line, f"expected a constraint, got {expr!r}")
        op, op_line = expr[0]
        if op in ("and", "or"):
            parts = [self.formula(e, ln) for e, ln in expr[1:]]
            if op == "or":
                return [conj for p in parts for conj in p]
            out: list[list] = [[]]
            for p in parts:
                out = [a + b for a in out for b in p]
                if len(out) > MAX_DISJUNCTS:
                    raise self.fail(op_line, f"more than {MAX_DISJUNCTS} disjuncts after expansion")
            return out
        if op in ("<=", ">=", "<", ">"):
            if len(expr) != 3:
                raise self.fail(op_line, f"'{op}' takes two arguments")
            a, b = self.term(*expr[1]), self.term(*expr[2])
            g = _diff(a, b) if op in (">=", ">") else _diff(b, a)
            return [[(g, op in ("<", ">"), op_line)]]
        raise self.fail(op_line, f"unsupported operator '{op}' (expected and, or, <=, >=, <, >)")


def read_vnnlib(path: str | os.PathLike) -> VnnlibSpec:
    """Parse a .vnnlib or .vnnlib.gz file into clauses; raises `VnnlibError` with the line of the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VnnlibError(f"spec file '{path}' does not exist")
    if os.path.isdir(path):
        raise VnnlibError(f"spec '{path}' is a folder, not a VNN-LIB file")
    too_big = VnnlibError(f"'{path}' is larger than {MAX_SPEC_BYTES >> 20} MiB, more than a VNN-LIB property this reader "
                          "parses in memory; split the property into several files")
    if not path.endswith(".gz") and os.path.getsize(path) > MAX_SPEC_BYTES:
        raise too_big  # refused without reading it
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except (OSError, EOFError) as e:
        raise VnnlibError(f"'{path}' cannot be read ({e})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise too_big
    if b"\x00" in data[:1 << 16]:
        raise VnnlibError(f"'{path}' is a binary file, not a VNN-LIB text file")
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VnnlibError(f"'{path}' is not UTF-8 text (byte {e.start}); is it really a VNN-LIB file?") from None
    del data
    r = _Reader(path)
    asserts = []
    for form, line in _parse(_tokens(raw, path), path):
        if not form or not isinstance(form[0][0], str):
            raise r.fail(line, "expected (declare-const ...) or (assert ...)")
        head = form[0][0]
        if head == "declare-const":
            if len(form) != 3 or not isinstance(form[1][0], str):
                raise r.fail(line, "expected (declare-const NAME Real)")
            name, kind = form[1][0], form[2][0]
            if kind != "Real":
                raise r.fail(line, f"variable {name} has type {kind}; only Real is supported")
            if re.fullmatch(r"X_\d+", name):
                r.inputs.add(name)
            elif re.fullmatch(r"Y_\d+", name):
                r.outputs.add(name)
            else:
                raise r.fail(line, f"variable {name} is neither X_i (input) nor Y_j (output)")
        elif head == "assert":
            if len(form) != 2:
                raise r.fail(line, "assert takes one formula")
            asserts.append((form[1], line))
        else:
            raise r.fail(line, f"unsupported command '{head}' (expected declare-const or assert)")
    n_in, n_out = _count(r.inputs, "X", path), _count(r.outputs, "Y", path)
    dnf: list[list] = [[]]
    for (expr, ln), line in asserts:
        part = r.formula(expr, ln)
        dnf = [a + b for a in dnf for b in part]
        if len(dnf) > MAX_DISJUNCTS:
            raise r.fail(line, f"more than {MAX_DISJUNCTS} disjuncts after expansion")
    return VnnlibSpec(path, n_in, n_out, _clauses(dnf, n_in, n_out, path))


def _count(names: set[str], prefix: str, path: str) -> int:
    idx = sorted(int(n[2:]) for n in names)
    if not idx:
        raise VnnlibError(f"{path}: no {prefix}_i variables are declared")
    if idx != list(range(len(idx))):
        raise VnnlibError(f"{path}: {prefix} variables must be numbered 0…{len(idx) - 1} without gaps")
    return len(idx)


def _outward(q: Fraction, down: bool) -> float:
    """q as a float64 rounded down (`down`) or up: the exact bound stays inside."""
    f = float(q)
    if (down and Fraction(f) > q) or (not down and Fraction(f) < q):
        f = math.nextafter(f, -math.inf if down else math.inf)
    return f


def _exact_row(g: _Lin, n_out: int, path: str) -> tuple[np.ndarray, float, float]:
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


def _clauses(dnf: list[list], n_in: int, n_out: int, path: str) -> list[Clause]:
    boxes: dict[tuple, list[list]] = {}
    inner: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    empty: tuple[str, int, int] | None = None  # a variable whose bounds cross, and the lines of its two bounds
    kinds: dict[int, tuple] = {}  # per constraint object: disjuncts share the input box's constraints
    rounded: dict[tuple[int, bool], float] = {}

    def outward(v: Fraction, down: bool) -> float:
        key = (id(v), down)  # v is held by `kinds` for the whole call, so its id stays unique
        if key not in rounded:
            rounded[key] = _outward(v, down)
        return rounded[key]

    for conj in dnf:
        lo: list[tuple[Fraction, int] | None] = [None] * n_in
        hi: list[tuple[Fraction, int] | None] = [None] * n_in
        outs = []
        for g, strict, line in conj:
            kind = kinds.get(id(g))
            if kind is None:
                kind = kinds[id(g)] = _kind(g, line, path)
            if kind[0] == "x":  # a·X_i + c ≥ 0  →  bound on X_i, kept exact
                _, i, is_lo, v = kind
                if is_lo:
                    lo[i] = (v, line) if lo[i] is None or v > lo[i][0] else lo[i]
                else:
                    hi[i] = (v, line) if hi[i] is None or v < hi[i][0] else hi[i]
            elif kind[0] == "y":
                outs.append((g, strict))
            elif g.const < 0 or (strict and g.const == 0):
                outs = None  # a constant false constraint: this disjunct is empty
                break
        if outs is None:
            continue
        missing = [f"X_{i}" for i in range(n_in) if lo[i] is None or hi[i] is None]
        if missing:
            raise VnnlibError(f"{path}: input(s) {', '.join(missing[:5])} lack a lower or upper bound")
        crossed = next((i for i in range(n_in) if lo[i][0] > hi[i][0]), None)
        if crossed is not None:
            empty = empty or (f"X_{crossed}", lo[crossed][1], hi[crossed][1])
            continue  # an empty box: this disjunct holds no point
        lo_out = np.array([outward(b[0], True) for b in lo])
        hi_out = np.array([outward(b[0], False) for b in hi])
        key = (lo_out.tobytes(), hi_out.tobytes())
        inner[key] = (np.array([outward(b[0], False) for b in lo]), np.array([outward(b[0], True) for b in hi]))
        boxes.setdefault(key, []).append(outs)
    if not boxes and empty is not None:
        name, lo_line, hi_line = empty
        raise VnnlibError(f"{path}:{lo_line}: the input set is empty: the lower bound of {name} (line {lo_line}) exceeds its "
                          f"upper bound (line {hi_line}), so the property would hold vacuously; fix the bounds")
    clauses = []
    for (lo_b, hi_b), disjuncts in boxes.items():
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
        lo_in, hi_in = inner[(lo_b, hi_b)]
        clauses.append(Clause(np.frombuffer(lo_b).copy(), np.frombuffer(hi_b).copy(),
                              np.array(rows).reshape(len(rows), n_out), np.array(d, dtype=np.float64),
                              groups, np.array(strict, dtype=bool), lo_in, hi_in, np.array(d_check, dtype=np.float64)))
    return clauses
