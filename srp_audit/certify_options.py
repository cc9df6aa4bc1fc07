"""What `certify` is asked to do: the options of one audit, shared by certify and its radius searches."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CertifyOptions:
    eps: float
    method: str = "auto"  # a name in bounds.METHODS, or "auto" (escalate through bounds.CASCADE)
    alpha_iters: int = 20
    domain: tuple[float, float] = (0.0, 1.0)
    radius: bool = True  # search the certified and attack radii
    radius_tol: float = 1e-3
    radius_max: float | None = None  # default: the domain's width
    attack_steps: int = 30
    attack_restarts: int = 2
    bab_domains: int = 128  # `auto` only: ReLU branch and bound on samples left undecided (`certify_bab`); 0: off
    bab_time: float = 2.0  # seconds of branch and bound per such sample, at most
    attack_early_stop: bool = True  # drop a sample from the attack once its margin stops falling fast enough to reach 0
    batch_size: int | None = 256  # None: auto (grow on a GPU until memory runs out, then back off)
    memory_budget: int | None = None  # bytes a batch may take (`memory.batch_within`); None: half of what is free
    seed: int = 0
    device: str = "auto"
    sweep: tuple[float, ...] = ()  # more radii to report verdicts at, from the same radius search
    norm: str = "inf"  # the perturbation ball: "inf", "2" or "1" (spec.NORMS)
