"""Checks on `verify` answers for instances without known answers (../shared/benchmarks/zoo): a `sat` answer's
counterexample must lie in one clause's input box and violate that clause under a plain forward pass; an `unsat`
answer must survive a strong attack. Shared by tests/test_zoo.py and benchmarks/bench_zoo.py."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from srp_audit.attack import pgd
from srp_audit.ir.graph import Graph
from srp_audit.spec import InputBox
from srp_audit.verify import VerifyResult
from srp_audit.vnnlib import VnnlibSpec


def zoo_instances(zoo: Path) -> list[tuple[str, Path, Path, float]]:
    """(family, model, property, timeout) for every row of every family's instances.csv."""
    out = []
    for inst in sorted(zoo.glob("*/instances.csv")) if zoo.exists() else []:
        for row in csv.reader(inst.open()):
            if row:
                out.append((inst.parent.name, inst.parent / row[0].strip(), inst.parent / row[1].strip(), float(row[2])))
    return out


def counterexample_holds(g: Graph, spec: VnnlibSpec, res: VerifyResult) -> bool:
    """The counterexample lies in a clause's (inward-rounded) box and a plain float32 forward pass violates it."""
    x, _ = res.counterexample
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    with torch.no_grad():
        y = g.copy(dtype=torch.float32)(torch.from_numpy(x.astype(np.float32)).reshape((1,) + g.input_shape)).reshape(1, -1)
    for c in spec.clauses:
        inside = bool(np.all(x >= c.lower_in) and np.all(x <= c.upper_in))
        s = c.spec(torch.float32)
        if inside and bool(s.violated(s.values(y)).all()):
            return True
    return False


def strong_attack_finds(g: Graph, spec: VnnlibSpec, restarts: int = 20, steps: int = 200) -> bool:
    """Whether a PGD far stronger than verify's own finds a violating point in some clause."""
    native = g.copy(dtype=torch.float32)
    for c in spec.clauses:
        lo = torch.from_numpy(c.lower_in.astype(np.float32)).reshape((1,) + g.input_shape)
        hi = torch.from_numpy(c.upper_in.astype(np.float32)).reshape((1,) + g.input_shape)
        res = pgd(native, InputBox(lo, torch.maximum(lo, hi)), c.spec(torch.float32), steps=steps, restarts=restarts, seed=7)
        if bool(res.found.any()):
            return True
    return False
