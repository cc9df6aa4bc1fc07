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
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeAlias

from .perf import denormals_kept
from .vnnlib_clauses import Clause, VnnlibError, clauses_of

__all__ = ["Clause", "VnnlibError", "VnnlibSpec", "read_vnnlib"]

MAX_DISJUNCTS = 100_000


MAX_SPEC_BYTES = 1 << 30  # a larger (decompressed) spec is refused before parsing: its parse would not fit in memory


@dataclass
class VnnlibSpec:
    path: str
    n_inputs: int
    n_outputs: int
    clauses: list[Clause] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ tokens


_TOKEN = re.compile(r"\(|\)|[^\s()]+")

_Expr: TypeAlias = "str | list[tuple[_Expr, int]]"
"""A parsed S-expression: a token, or a parenthesised list of (expression, line)."""
_Form: TypeAlias = "list[tuple[_Expr, int]]"
"""A top-level form: a parenthesised list."""
_Atom: TypeAlias = "tuple[_Lin, bool, int]"
"""(g, strict, line): the constraint g ≥ 0 (g > 0 when strict) written at `line`."""


def _tokens(text: str, path: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split(";", 1)[0]
        out.extend([(t, lineno) for t in _TOKEN.findall(line)])
    return out


def _parse(tokens: list[tuple[str, int]], path: str) -> list[tuple[_Form, int]]:
    """S-expressions as nested lists of (token, line); returns the top-level forms with their line."""
    forms: list[tuple[_Form, int]] = []
    stack: list[tuple[_Form, int]] = []
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
    exp = re.search(r"[eE]([+-]?\d+)$", tok)
    if exp is not None and abs(int(exp.group(1))) > MAX_EXPONENT:
        return None  # 1e99999999 would take minutes to expand exactly, and no float comes near it
    try:
        return Fraction(tok)
    except (ValueError, ZeroDivisionError):
        return None


MAX_EXPONENT = 10_000  # decimal exponents beyond this are refused: float64's range ends near 1e308 (and 1e-324)


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

    def term(self, expr: _Expr, line: int) -> _Lin:
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

    def formula(self, expr: _Expr, line: int) -> list[list[_Atom]]:
        """DNF: a list of conjunctions of atoms (g, strict, line) meaning g ≥ 0 (g > 0 when strict)."""
        if isinstance(expr, str) or not expr:
            raise self.fail(line, f"expected a constraint, got {expr!r}")
        op, op_line = expr[0]
        if op in ("and", "or"):
            parts = [self.formula(e, ln) for e, ln in expr[1:]]
            if op == "or":
                return [conj for p in parts for conj in p]
            out: list[list[_Atom]] = [[]]
            for p in parts:
                if len(p) == 1:  # one conjunction: extend ours in place (lists here are all our own copies)
                    for a in out:
                        a.extend(p[0])
                    continue
                out = [a + b for a in out for b in p]
                if len(out) > MAX_DISJUNCTS:
                    raise self.fail(op_line, f"more than {MAX_DISJUNCTS} disjuncts after expansion")
            return out
        if op in ("<=", ">=", "<", ">"):
            if len(expr) != 3:
                raise self.fail(op_line, f"'{op}' takes two arguments")
            lhs, rhs = self.term(*expr[1]), self.term(*expr[2])
            g = _diff(lhs, rhs) if op in (">=", ">") else _diff(rhs, lhs)
            return [[(g, op in ("<", ">"), op_line)]]
        raise self.fail(op_line, f"unsupported operator '{op}' (expected and, or, <=, >=, <, >)")


def read_vnnlib(path: str | os.PathLike) -> VnnlibSpec:
    """Parse a .vnnlib or .vnnlib.gz file into clauses; raises `VnnlibError` with the line of the problem."""
    with denormals_kept():  # bounds are rounded and compared exactly, subnormal ones included
        try:
            return _read(path)
        except RecursionError:
            raise VnnlibError(f"{os.fspath(path)}: expressions nested too deeply to read") from None
        except (OverflowError, ValueError) as e:  # a constant past float's range, or an integer of thousands of digits
            raise VnnlibError(f"{os.fspath(path)}: a constant cannot be read ({str(e)[:80]}); keep constants within "
                              "float64's range and under 4 300 digits") from None


def _read(path: str | os.PathLike) -> VnnlibSpec:
    path = os.fspath(path)
    r = _Reader(path)
    asserts = _commands(r, _parse(_tokens(_text(path), path), path))
    n_in, n_out = _count(r.inputs, "X", path), _count(r.outputs, "Y", path)
    return VnnlibSpec(path, n_in, n_out, clauses_of(_disjuncts(r, asserts), n_in, n_out, path))


def _text(path: str) -> str:
    """The file's text (gunzipped for .gz), refused when missing, a folder, too large, binary or not UTF-8."""
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
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VnnlibError(f"'{path}' is not UTF-8 text (byte {e.start}); is it really a VNN-LIB file?") from None


def _commands(r: _Reader, forms: list[tuple[_Form, int]]) -> list[tuple[tuple[_Expr, int], int]]:
    """Read the top-level forms: declarations into `r`'s inputs and outputs; the asserts' formulas, with their line,
    returned in order."""
    asserts = []
    for form, line in forms:
        if not form or not isinstance(form[0][0], str):
            raise r.fail(line, "expected (declare-const ...) or (assert ...)")
        head = form[0][0]
        if head == "declare-const":
            _declare(r, form, line)
        elif head == "assert":
            if len(form) != 2:
                raise r.fail(line, "assert takes one formula")
            asserts.append((form[1], line))
        else:
            raise r.fail(line, f"unsupported command '{head}' (expected declare-const or assert)")
    return asserts


def _declare(r: _Reader, form: _Form, line: int) -> None:
    """(declare-const NAME Real): NAME joins `r`'s inputs (X_i) or outputs (Y_j)."""
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


def _disjuncts(r: _Reader, asserts: list[tuple[tuple[_Expr, int], int]]) -> list[list[list[_Atom]]]:
    """The conjunction of the asserts in disjunctive normal form, each disjunct as a list of shared chunks of atoms:
    every assert with one disjunct (the input box, usually) joins one chunk all disjuncts share, so the form stays
    linear in the file's size."""
    common: list[_Atom] = []
    dnf: list[list[list[_Atom]]] = [[common]]
    for (expr, ln), line in asserts:
        part = r.formula(expr, ln)
        if len(part) == 1:
            common.extend(part[0])
            continue
        dnf = [a + [b] for a in dnf for b in part]
        if len(dnf) > MAX_DISJUNCTS:
            raise r.fail(line, f"more than {MAX_DISJUNCTS} disjuncts after expansion")
    return dnf


def _count(names: set[str], prefix: str, path: str) -> int:
    idx = sorted(int(n[2:]) for n in names)
    if not idx:
        raise VnnlibError(f"{path}: no {prefix}_i variables are declared")
    if idx != list(range(len(idx))):
        raise VnnlibError(f"{path}: {prefix} variables must be numbered 0…{len(idx) - 1} without gaps")
    return len(idx)
