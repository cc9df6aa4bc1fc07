"""A minimal VNN-LIB reader, exact: numbers are `Fraction`s parsed from their decimal text.

Supported: `(declare-const X_i Real)` / `(declare-const Y_j Real)`, `(assert F)` with F built from `and`, `or`
and atoms `(<= a b)`, `(>= a b)`, `(< a b)`, `(> a b)` over linear terms (numbers, variables, `+`, `-`, `*` by a
number). The file describes the *unsafe* region: the conjunction of its assertions, brought to disjunctive normal
form (bounds of single X variables at the top level are shared by every conjunct, not multiplied out). In each
conjunct the atoms over one X variable bound the input (a box: every X_i needs both bounds) and the others must
be over Y only; the property holds when, for every conjunct, some Y atom is violated on its box: an atom e ≤ 0
(or e < 0) is violated when e > 0, so each conjunct becomes a group of rows e > 0 (strictness: a proof of e > 0
proves both) of the *case* of its box. Anything else raises `CertificateError` naming the construct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

from .errors import CertificateError

Linear = dict[str, Fraction]  # variable → coefficient; "" → constant
MAX_DISJUNCTS = 100_000


@dataclass
class Case:
    """One input box [lower, upper] of the X_i and the groups of rows (coefficients over Y, constant) that must
    hold on it: in every group some row c·y + d is > 0."""

    lower: list[Fraction]
    upper: list[Fraction]
    groups: list[list[tuple[list[Fraction], Fraction]]]


@dataclass
class VnnSpec:
    """The property: every case holds (one case per distinct input box of the file's disjunction)."""

    n_x: int
    n_y: int
    cases: list[Case]


def _parse(text: str) -> list:
    tokens = re.findall(r"\(|\)|[^\s()]+", re.sub(r";[^\n]*", "", text))
    stack: list[list] = [[]]
    for t in tokens:
        if t == "(":
            stack.append([])
        elif t == ")":
            if len(stack) < 2:
                raise CertificateError("spec: unbalanced ')'")
            done = stack.pop()
            stack[-1].append(done)
        else:
            stack[-1].append(t)
    if len(stack) != 1:
        raise CertificateError("spec: unbalanced '('")
    return stack[0]


def _term(t, names: set[str]) -> Linear:
    if isinstance(t, str):
        if t in names:
            return {t: Fraction(1)}
        try:
            return {"": Fraction(t)}
        except (ValueError, ZeroDivisionError):
            raise CertificateError(f"spec: unknown symbol {t!r}") from None
    if not t or t[0] not in ("+", "-", "*"):
        raise CertificateError(f"spec: unsupported term {t!r}")
    parts = [_term(a, names) for a in t[1:]]
    if not parts:
        raise CertificateError(f"spec: empty term {t!r}")
    if t[0] == "*":
        factor, base = Fraction(1), None
        for p in parts:
            if set(p) <= {""}:
                factor *= p.get("", Fraction(0))
            elif base is None:
                base = p
            else:
                raise CertificateError("spec: a product of two variables is not linear")
        return {v: c * factor for v, c in (base or {"": Fraction(1)}).items()}
    if t[0] == "-" and len(parts) == 1:
        parts = [{}, parts[0]]
    out = dict(parts[0])
    for p in parts[1:]:
        for v, c in p.items():
            out[v] = out.get(v, Fraction(0)) + (-c if t[0] == "-" else c)
    return out


def _atom(f: list, names: set[str]) -> Linear:
    """e with the atom meaning e ≤ 0 (unsafe side)."""
    a, b = _term(f[1], names), _term(f[2], names)
    lhs, rhs = (a, b) if f[0] in ("<=", "<") else (b, a)
    e = dict(lhs)
    for v, c in rhs.items():
        e[v] = e.get(v, Fraction(0)) - c
    return {v: c for v, c in e.items() if c != 0 or v == ""}


def _dnf(f, names: set[str]) -> list[list[Linear]]:
    if not isinstance(f, list) or not f:
        raise CertificateError(f"spec: unsupported formula {f!r}")
    if f[0] in ("<=", ">=", "<", ">") and len(f) == 3:
        return [[_atom(f, names)]]
    if f[0] == "or":
        return [c for g in f[1:] for c in _dnf(g, names)]
    if f[0] == "and":
        out: list[list[Linear]] = [[]]
        for g in f[1:]:
            out = [a + b for a in out for b in _dnf(g, names)]
            if len(out) > MAX_DISJUNCTS:
                raise CertificateError("spec: the output formula is too large in disjunctive normal form")
        return out
    raise CertificateError(f"spec: unsupported formula head {f[0]!r}")


def read_vnnlib(path: str) -> VnnSpec:
    """Parse a VNN-LIB file into a box and output groups (`CertificateError` if unreadable or unsupported)."""
    try:
        with open(path, encoding="utf-8") as fh:
            forms = _parse(fh.read())
    except (OSError, UnicodeDecodeError) as e:
        raise CertificateError(f"cannot read the spec file {path}: {e}") from None
    xs: list[int] = []
    ys: list[int] = []
    asserts: list[Any] = []
    for f in forms:
        if isinstance(f, list) and len(f) == 3 and f[0] == "declare-const" and isinstance(f[1], str):
            m = re.fullmatch(r"([XY])_(\d+)", f[1])
            if not m:
                raise CertificateError(f"spec: variable {f[1]!r} is neither X_i nor Y_j")
            (xs if m[1] == "X" else ys).append(int(m[2]))
        elif isinstance(f, list) and len(f) == 2 and f[0] == "assert":
            asserts.append(f[1])
        else:
            raise CertificateError(f"spec: unsupported command {str(f)[:60]}")
    if sorted(xs) != list(range(len(xs))) or sorted(ys) != list(range(len(ys))) or not xs or not ys:
        raise CertificateError("spec: X_0.. and Y_0.. must be declared without gaps")
    names = {f"X_{i}" for i in xs} | {f"Y_{j}" for j in ys}
    shared: list[list[Fraction | None]] = [[None] * len(xs), [None] * len(xs)]  # top-level bounds of every box
    conj, out_parts = list(asserts), []
    while conj:
        f = conj.pop()
        if isinstance(f, list) and f and f[0] == "and":
            conj.extend(f[1:])
        elif not _bound(_dnf(f, names), shared):
            out_parts.append(f)
    cases: dict[tuple, Case] = {}
    for c in _dnf(["and", *out_parts], names) if out_parts else [[]]:
        box = [list(shared[0]), list(shared[1])]
        ys_atoms = [a for a in c if not _bound([[a]], box)]
        if any(v.startswith("X") for a in ys_atoms for v in a):
            raise CertificateError("spec: input constraints must be bounds of single X variables, without Y")
        if any(b is None for b in box[0] + box[1]):
            raise CertificateError("spec: every X_i needs a lower and an upper bound in every input box")
        rows = [([a.get(f"Y_{j}", Fraction(0)) for j in range(len(ys))], a.get("", Fraction(0))) for a in ys_atoms]
        key = (tuple(box[0]), tuple(box[1]))
        lower, upper = cast("list[Fraction]", box[0]), cast("list[Fraction]", box[1])  # no None: refused above
        cases.setdefault(key, Case(lower, upper, [])).groups.append(rows)
    return VnnSpec(len(xs), len(ys), list(cases.values()))


def _bound(dnf: list[list[Linear]], box: list[list[Fraction | None]]) -> bool:
    """If `dnf` is one atom bounding one X variable, tighten box ([lower, upper]) with it and return True."""
    if len(dnf) != 1 or len(dnf[0]) != 1:
        return False
    (e,) = dnf[0]
    xs = [v for v in e if v.startswith("X")]
    if len(xs) != 1 or any(v.startswith("Y") for v in e):
        return False
    (v,) = xs
    i, k, bound = int(v[2:]), e[v], -e.get("", Fraction(0)) / e[v]
    if k > 0:
        old = box[1][i]
        box[1][i] = bound if old is None else min(old, bound)
    else:
        old = box[0][i]
        box[0][i] = bound if old is None else max(old, bound)
    return True
