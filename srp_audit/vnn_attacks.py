"""`verify`'s attacks on a VNN-LIB property: PGD on the whole property and on each disjunct, and PGD from the
corners where CROWN's linear bound is weakest. Every point they return has passed `confirmed` (the exact
membership and violation check), so a hit is a counterexample."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch

from .attack import AttackResult, pgd
from .ir.graph import Graph
from .spec import InputBox, LinearSpec


def property_attack(native: Graph, box: InputBox, spec: LinearSpec, steps: int, restarts: int, seed: int,
                    confirmed: Callable[[torch.Tensor], bool], deadline: float | None = None) -> torch.Tensor | None:
    """PGD on the whole property, then on each disjunct alone, stopping at `deadline` (perf_counter time); the
    restarts run as copies in one batch where memory allows (on oval21's CIFAR nets the restarts one after
    another took 4.1–4.5 s, a step costing about the same for 1 or 90 copies)."""
    centre = (box.lower + box.upper) / 2
    hit = next(_confirmed_points(_pgd_restarts(native, box, spec, centre, steps, restarts, seed, deadline), confirmed), None)
    g = len(spec.groups)
    if hit is not None or g < 2:
        return hit
    return next(_confirmed_points(_per_disjunct(native, box, spec, centre, steps, restarts, seed, deadline), confirmed), None)


def _per_disjunct(native: Graph, box: InputBox, spec: LinearSpec, centre: torch.Tensor, steps: int, restarts: int,
                  seed: int, deadline: float | None) -> Iterator[AttackResult]:
    """PGD on one copy of the box per disjunct, each on its own rows (the others' rows made unviolable), as many
    copies at once as `ATTACK_ELEMENTS` allows: an ImageNet property over 999 classes would otherwise hold 999
    copies of every activation at once."""
    per_copy = sum(math.prod(shape) for shape in native.shapes.values())
    at_once = max(1, ATTACK_ELEMENTS // max(1, per_copy))
    for first in range(0, len(spec.groups), at_once):
        if first and deadline is not None and time.perf_counter() > deadline:
            return
        groups = spec.groups[first : first + at_once]
        g = len(groups)
        C = torch.zeros((g,) + spec.C.shape[1:], dtype=spec.C.dtype, device=spec.C.device)
        d = torch.full((g, spec.C.shape[1]), 1e30, dtype=spec.d.dtype, device=spec.d.device)  # unused rows never violate
        for k, grp in enumerate(groups):
            C[k, grp] = spec.C[0, grp]
            d[k, grp] = spec.d[0, grp]
        per = LinearSpec(C, d, spec.groups, None, spec.strict)
        boxes = InputBox(box.lower.expand((g,) + box.lower.shape[1:]), box.upper.expand((g,) + box.upper.shape[1:]))
        yield from _pgd_restarts(native, boxes, per, centre.expand_as(boxes.lower), 2 * steps, restarts, seed + 1 + first,
                                 deadline)


ATTACK_ELEMENTS = 2**26  # activation values one batch of attack copies may hold (~256 MB in float32)


def _pgd_restarts(native: Graph, box: InputBox, spec: LinearSpec, start: torch.Tensor, steps: int, restarts: int,
                  seed: int, deadline: float | None = None) -> Iterator[AttackResult]:
    """PGD with `restarts` starts per sample, as many at once as `ATTACK_ELEMENTS` allows (never fewer than one
    restart of every sample): the first from `start`, the others uniformly random in the box. Yields each batch's
    result (restart-major copies of box and spec), so a caller can stop at the first hit."""
    n, restarts = box.lower.shape[0], max(1, restarts)
    per_copy = sum(math.prod(shape) for shape in native.shapes.values())
    chunk = max(1, min(restarts, ATTACK_ELEMENTS // max(1, per_copy * n)))
    gen = torch.Generator(device=start.device).manual_seed(seed)
    for first in range(0, restarts, chunk):
        if first and deadline is not None and time.perf_counter() > deadline:
            return
        r = min(chunk, restarts - first)
        rep = (r,) + (1,) * (box.lower.dim() - 1)
        lo, hi = box.lower.repeat(rep), box.upper.repeat(rep)
        starts = lo + (hi - lo) * torch.rand(lo.shape, generator=gen, device=lo.device, dtype=lo.dtype)
        if first == 0:
            starts[:n] = start
        specs = LinearSpec(spec.C.repeat(r, 1, 1), spec.d.repeat(r, 1), spec.groups, None, spec.strict)
        yield pgd(native, InputBox(lo, hi), specs, steps=steps, restarts=1, seed=seed + first,
                  start=starts.to(native.dtype), deadline=deadline)


def _confirmed_points(attacks: Iterator[AttackResult], confirmed) -> Iterator[torch.Tensor]:
    """The attacks' violating points (one at a time) that `confirmed` accepts."""
    for att in attacks:
        for k in att.found.nonzero().flatten().tolist():
            x = att.points[k : k + 1]
            if confirmed(x):
                yield x


def corner_attack(native: Graph, wide: Graph, box: InputBox, attack_box: InputBox, spec: LinearSpec, steps: int, seed: int,
                  confirmed: Callable[[torch.Tensor], bool]) -> torch.Tensor | None:
    """PGD started from the corners that minimise CROWN's final linear lower bound (over the proof box) of each
    row — where the relaxation finds the property weakest — taken, like every attack point, in the attack box
    (inside the exact set and representable in the model's precision, so a hit passes the membership check)."""
    from .bounds.crown import crown_bounds, spec_form

    with torch.no_grad():
        A = spec_form(crown_bounds(wide, box, spec, "crown").ctx, spec).A
    if A is None or not isinstance(A, torch.Tensor):  # no input dependence, or windowed coefficients
        return None
    lo32, hi32 = attack_box.lower, attack_box.upper
    corners = torch.where(A[0] >= 0, lo32, hi32)  # (S, *shape)
    for x in corners:
        if confirmed(x.unsqueeze(0).to(native.dtype)):
            return x.unsqueeze(0).to(native.dtype)
    s = corners.shape[0]
    boxes = InputBox(lo32.expand((s,) + lo32.shape[1:]), hi32.expand((s,) + hi32.shape[1:]))
    specs = spec.repeated(s)
    att = pgd(native, boxes, specs, steps=steps, restarts=1, seed=seed + 2, start=corners.to(native.dtype))
    return next(_confirmed_points(iter([att]), confirmed), None)
