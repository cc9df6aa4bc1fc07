"""Click parameter types that validate numbers once, with messages that say how to fix them."""

from __future__ import annotations

import math

import click

from srp_audit.errors import UsageError
from srp_audit.memory import parse_size
from srp_audit.spec import radius_problem
from srp_audit.verify import MAX_TIMEOUT


def _number(kind: click.ParamType, value, param, ctx) -> float:
    """`value` as a float (click passes defaults already converted), or click's usage error naming it."""
    if isinstance(value, float):
        return value
    try:
        return float(str(value).strip())
    except ValueError:
        kind.fail(f"{value!r} is not a number", param, ctx)
        raise  # unreachable: fail raises

class NonNegativeFloat(click.ParamType):
    """A finite float ≥ 0 (radii, tolerances)."""

    name = "float"

    def __init__(self, positive: bool = False) -> None:
        self.positive = positive

    def convert(self, value, param, ctx):
        v = _number(self, value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if v < 0 or (self.positive and v == 0):
            self.fail(f"must be {'>' if self.positive else '≥'} 0, got {v:g}", param, ctx)
        return v


class Radius(click.ParamType):
    """A ball's radius: a finite positive normal float (`spec.check_radius`). 0, −0 and numbers that round to 0
    (1e-400) are refused: the ball would hold only the sample and the verdicts would test nothing."""

    name = "float"

    def convert(self, value, param, ctx):
        v = _number(self, value, param, ctx)
        problem = radius_problem(v)
        if problem:
            text = str(value).strip()
            if v == 0 and any(ch in "123456789" for ch in text.lower().split("e")[0]):
                problem = f"{text!r} rounds to 0 in double precision, which would test nothing"
            self.fail(f"must be a finite positive radius, {problem}; give one such as 0.01", param, ctx)
        return v


class Fraction(click.ParamType):
    """A number in [0, 1] (accuracy thresholds)."""

    name = "fraction"

    def convert(self, value, param, ctx):
        v = NonNegativeFloat().convert(value, param, ctx)
        if v > 1:
            self.fail(f"must be a fraction between 0 and 1 (e.g. 0.8 for 80 %), got {v:g}", param, ctx)
        return v


class Domain(click.ParamType):
    """'LO,HI' with LO < HI: the valid input range, per element."""

    name = "lo,hi"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).replace(":", ",").split(",")
        try:
            lo, hi = (float(p) for p in parts)
        except ValueError:
            self.fail(f"expected two numbers 'LO,HI' such as 0,1, got {value!r}", param, ctx)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            self.fail(f"need finite LO < HI, got {value!r}", param, ctx)
        return (lo, hi)


class EpsList(click.ParamType):
    """One radius or a comma-separated list of radii (a sweep), each a finite positive float (`Radius`)."""

    name = "eps[,eps…]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        if not str(value).strip():
            self.fail("give at least one radius", param, ctx)
        if any(not p.strip() for p in parts):
            self.fail(f"an empty item in the list {value!r}; write radii like 0.01,0.02", param, ctx)
        values = tuple(Radius().convert(p, param, ctx) for p in parts)
        if len(set(values)) != len(values):
            self.fail(f"repeated radius in {value!r}", param, ctx)
        return values


class BatchSize(click.ParamType):
    """A positive integer, or 'auto' (returned as None)."""

    name = "n|auto"

    def convert(self, value, param, ctx):
        if value is None or str(value).strip().lower() == "auto":
            return None
        try:
            v = int(str(value))
        except ValueError:
            self.fail(f"expected a positive integer or auto, got {value!r}", param, ctx)
        if v < 1:
            self.fail(f"must be ≥ 1, got {v}", param, ctx)
        return v


class MemorySize(click.ParamType):
    """A size such as 8G or 512M, or 'auto' (returned as None: half of the memory free when the run starts)."""

    name = "size|auto"

    def convert(self, value, param, ctx):
        if value is None or str(value).strip().lower() == "auto":
            return None
        try:
            return parse_size(str(value))
        except UsageError as e:
            self.fail(str(e), param, ctx)


BATCH = BatchSize()
MEMORY = MemorySize()
EPS = NonNegativeFloat()
EPS_LIST = EpsList()
RADIUS = Radius()
POSITIVE = NonNegativeFloat(positive=True)
SECONDS = click.FloatRange(0, MAX_TIMEOUT, min_open=True)
LEARNING_RATE = click.FloatRange(0, 1e6, min_open=True)
FRACTION = Fraction()
DOMAIN = Domain()


def check_eps_in_domain(eps: tuple[float, ...], domain: tuple[float, float]) -> None:
    """A radius wider than the input domain covers every valid input: almost always a unit mistake (pixels in
    0–255 against a [0, 1] domain), so it is refused with the fix."""
    width = domain[1] - domain[0]
    too_wide = [e for e in eps if e > width]
    if too_wide:
        raise UsageError(f"--eps {too_wide[0]:g} is wider than the input domain [{domain[0]:g}, {domain[1]:g}]: the ball "
                         "would cover every valid input. Give eps in the model's input units (e.g. 8/255 ≈ 0.031 for 8 "
                         "pixel levels), or pass --domain LO,HI")
