"""Robustify: fine-tune an existing model with a certified-training regulariser, starting from its weights.

Loss per batch: K·CE(clean logits, y) + (1 − K)·CE(worst-case logits, y), where the worst-case logits come from
- `singleprop` (default): the radius pass of `bounds/singleprop.py` beside the clean forward pass (one extra
  forward pass; an unsound estimate, used only as a training signal);
- `ibp`: interval bounds of the margins (clean pass + centre pass + radius pass);
- `crown-ibp`: CROWN-IBP bounds of the margins (IBP plus a backward pass).
eps ramps linearly from 0 to its target while K falls from 1 to `k_final` (or K adapts, `ada`), after an
optional warm-up; the learning rate drops ×10 at 80 % and 90 % of the budget. The budget is `epochs` and/or
`max_time` (the schedule scales to whichever ends first). Everything certified afterwards uses the sound methods.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .atomic import atomic_path
from .bounds.crown import crown_bounds
from .bounds.interval import interval_bounds
from .bounds.singleprop import VARIANTS, singleprop, singleprop_loss
from .errors import UsageError
from .ir.graph import Graph
from .spec import linf_ball, margin_spec

REGULARIZERS = ("singleprop", "ibp", "crown-ibp")


# ------------------------------------------------------------------------------------------------ schedule


@dataclass(frozen=True)
class Span:
    """A length of training: `n` steps, `n` epochs, or a fraction of the whole budget."""

    value: float
    unit: str  # 'steps', 'epochs' or 'fraction'

    @staticmethod
    def parse(text: str | float | int) -> "Span":
        t = str(text).strip().lower()
        m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%|ep|epochs?|steps?)?", t)
        if not m:
            raise UsageError(f"cannot read the span {text!r}: use steps (500), epochs (3ep) or a share of the budget (40%)")
        v, unit = float(m.group(1)), m.group(2) or "steps"
        if unit == "%":
            if v > 100:
                raise UsageError(f"span {text!r} is more than the whole budget")
            return Span(v / 100, "fraction")
        return Span(v, "epochs" if unit.startswith("ep") else "steps")

    def fraction(self, steps_per_epoch: int, total_steps: float) -> float:
        if self.unit == "fraction":
            return self.value
        steps = self.value * steps_per_epoch if self.unit == "epochs" else self.value
        return steps / max(total_steps, 1.0)


@dataclass
class Schedule:
    eps: float
    warmup: Span
    ramp: Span
    k_final: float

    def at(self, progress: float, steps_per_epoch: int, total_steps: float) -> tuple[float, float]:
        """(eps, K) at a progress fraction of the budget."""
        w = self.warmup.fraction(steps_per_epoch, total_steps)
        r = max(self.ramp.fraction(steps_per_epoch, total_steps), 1e-12)
        t = min(1.0, max(0.0, (progress - w) / r))
        if progress < w:
            return 0.0, 1.0
        return self.eps * t, 1.0 - (1.0 - self.k_final) * t


def lr_factor(progress: float) -> float:
    """The learning rate is divided by 10 twice late in training (at 80 % and 90 % of the budget)."""
    return 1.0 if progress < 0.8 else 0.1 if progress < 0.9 else 0.01


# ------------------------------------------------------------------------------------------------ options / results


@dataclass
class RobustifyOptions:
    eps: float
    epochs: float | None = None  # default 10 when no max_time
    max_time: float | None = None
    batch_size: int = 100
    lr: float = 1e-3
    regularizer: str = "singleprop"
    variant: str = "fastlin"
    warmup: str = "0"
    ramp: str = "50%"
    k_final: float = 0.5
    ada: bool = False
    gamma: float = 10.0
    val_split: float = 0.1
    seed: int = 0
    domain: tuple[float, float] = (0.0, 1.0)
    device: str = "cpu"
    checkpoint_every: int = 0
    checkpoint_path: str | None = None
    resume: bool = False

    def validate(self) -> None:
        if self.regularizer not in REGULARIZERS:
            raise UsageError(f"--regularizer must be one of {', '.join(REGULARIZERS)}, got {self.regularizer!r}")
        if self.variant not in VARIANTS:
            raise UsageError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not 0 <= self.k_final <= 1:
            raise UsageError(f"--k-final must be in [0, 1], got {self.k_final}")
        if not 0 <= self.val_split < 1:
            raise UsageError(f"--val-split must be in [0, 1), got {self.val_split}")
        if self.epochs is not None and self.epochs <= 0:
            raise UsageError("--epochs must be positive")
        if self.max_time is not None and self.max_time <= 0:
            raise UsageError("--max-time must be positive")
        Span.parse(self.warmup), Span.parse(self.ramp)


@dataclass
class Progress:
    step: int
    epoch: float
    progress: float
    eps: float
    k: float
    loss: float
    clean_acc: float
    robust_acc: float  # the regulariser's own estimate (SingleProp's is not a certificate)
    elapsed: float


@dataclass
class RobustifyResult:
    graph: Graph
    steps: int
    epochs: float
    elapsed: float
    final_eps: float
    final_k: float
    history: list[Progress] = field(default_factory=list)
    stopped_by: str = "budget"


class Interrupted(Exception):
    """Training was interrupted (Ctrl-C); `checkpoint` is where the state was saved, if anywhere."""

    def __init__(self, checkpoint: str | None) -> None:
        super().__init__("interrupted")
        self.checkpoint = checkpoint


# ------------------------------------------------------------------------------------------------ losses


def _robust_from_margins(lb: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Logits whose CE is the usual certified-training loss: 0 for the label, −(margin lower bound) elsewhere."""
    spec = margin_spec(y, k, lb.dtype)
    others = spec.shared.C[y].argmin(dim=-1)  # (N, K−1): the class j of each row e_y − e_j
    z = torch.zeros(y.shape[0], k, dtype=lb.dtype, device=lb.device)
    return z.scatter(1, others, -lb)


def regularized_loss(graph: Graph, x: torch.Tensor, y: torch.Tensor, eps: float, k_weight: float,
                     opt: RobustifyOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, clean logits, robust-estimate mask, robust CE per batch) for one batch."""
    if opt.regularizer == "singleprop":
        centre, radius = singleprop(graph, x, eps, opt.variant)
        loss, z_adv = singleprop_loss(centre, radius, y, k_weight)
        return loss, centre, z_adv.argmax(1) == y, F.cross_entropy(z_adv, y)
    clean = graph.logits(x)
    if eps == 0:
        return F.cross_entropy(clean, y), clean, clean.argmax(1) == y, F.cross_entropy(clean, y)
    k = clean.shape[1]
    box = linf_ball(x, eps, opt.domain)
    spec = margin_spec(y, k, x.dtype)
    if opt.regularizer == "ibp":
        lb = interval_bounds(graph, box, spec).lower
    else:
        lb = crown_bounds(graph, box, spec, "ibp").lower
    z_rob = _robust_from_margins(lb, y, k)
    robust_ce = F.cross_entropy(z_rob, y)
    loss = k_weight * F.cross_entropy(clean, y) + (1 - k_weight) * robust_ce
    return loss, clean, (lb > 0).all(dim=1), robust_ce


# ------------------------------------------------------------------------------------------------ training


class _Objective(torch.nn.Module):
    """The training loss as a module, so DistributedDataParallel wraps it (its forward sets up the gradient sync)."""

    def __init__(self, graph: Graph, opt: RobustifyOptions) -> None:
        super().__init__()
        self.graph = graph
        self.opt = opt

    def forward(self, x: torch.Tensor, y: torch.Tensor, eps: float, k_weight: float, scale: float):
        loss, clean, robust, _ = regularized_loss(self.graph, x, y, eps, k_weight, self.opt)
        return loss * scale, clean.detach(), robust.detach()


def model_fingerprint(graph: Graph) -> str:
    h = hashlib.sha256()
    for name, t in sorted(graph.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _save_atomic(obj: dict, path: str) -> None:
    with atomic_path(path, ".ckpt.tmp") as tmp:
        torch.save(obj, tmp)


def _held_out_losses(graph: Graph, x: torch.Tensor, y: torch.Tensor, eps: float, opt: RobustifyOptions) -> tuple[float, float]:
    """(Σ L_spec, Σ L_fit) on held-out data at the current eps, for the adaptive K."""
    spec_sum = fit_sum = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], opt.batch_size):
            xb, yb = x[i : i + opt.batch_size], y[i : i + opt.batch_size]
            _, clean, _, robust_ce = regularized_loss(graph, xb, yb, eps, 0.0, opt)
            fit_sum += float(F.cross_entropy(clean, yb, reduction="sum"))
            spec_sum += float(robust_ce) * xb.shape[0]
    return spec_sum, fit_sum


def robustify(graph: Graph, x: torch.Tensor, y: torch.Tensor, opt: RobustifyOptions,
              x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
              progress: Callable[[Progress], None] | None = None) -> RobustifyResult:
    """Fine-tune a copy of `graph` on (x, y); returns the trained copy (the input graph is untouched)."""
    opt.validate()
    dev = torch.device(opt.device)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = torch.distributed.get_world_size() if distributed else 1
    rank = torch.distributed.get_rank() if distributed else 0
    if opt.batch_size < world:
        raise UsageError(f"--batch-size {opt.batch_size} is smaller than the {world} ranks sharing each batch")
    model = graph.copy(dtype=torch.float32, device=dev).train()
    model.requires_grad_(True)
    for buf in model.buffers():
        buf.requires_grad_(False)
    x, y = x.to(dev, torch.float32), y.to(dev)
    if x_val is not None:
        x_val, y_val = x_val.to(dev, torch.float32), y_val.to(dev)
    n = x.shape[0]
    steps_per_epoch = max(1, math.ceil(n / opt.batch_size))
    epochs = opt.epochs if opt.epochs is not None else (None if opt.max_time else 10.0)
    total_steps = epochs * steps_per_epoch if epochs else None
    sched = Schedule(opt.eps, Span.parse(opt.warmup), Span.parse(opt.ramp), opt.k_final)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=opt.lr)
    objective: torch.nn.Module = _Objective(model, opt)
    if distributed:  # every rank takes a slice of each global batch; DDP averages the gradients
        from torch.nn.parallel import DistributedDataParallel

        objective = DistributedDataParallel(objective, device_ids=[dev.index] if dev.type == "cuda" else None)
    gen = torch.Generator(device="cpu").manual_seed(opt.seed)
    torch.manual_seed(opt.seed)
    step, elapsed_before, k_ada = 0, 0.0, 1.0
    resumed_order, resumed_pos = None, 0
    ckpt = opt.checkpoint_path
    fingerprint = model_fingerprint(graph)
    if opt.resume:
        if not ckpt or not os.path.exists(ckpt):
            raise UsageError(f"--resume: no checkpoint at {ckpt!r}; run with --checkpoint-every N first")
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if state.get("fingerprint") != fingerprint:
            raise UsageError(f"checkpoint {ckpt!r} was made from a different model; remove it or pass the original model")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before, k_ada = int(state["step"]), float(state["elapsed"]), float(state["k_ada"])
        gen.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        resumed_order, resumed_pos = state["order"], int(state["pos"])

    def save_checkpoint() -> None:
        if rank != 0:
            return
        _save_atomic({"version": 1, "fingerprint": fingerprint, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "step": step, "elapsed": elapsed_before + (time.perf_counter() - start),
                      "k_ada": k_ada, "data_rng": gen.get_state(), "torch_rng": torch.get_rng_state(), "order": order, "pos": pos,
                      "options": {k: v for k, v in asdict(opt).items() if not isinstance(v, tuple)}}, ckpt)

    def progress_at(step_: int, now: float) -> tuple[float, float]:
        """(progress fraction, estimated total steps) from the step and time budgets."""
        fractions = []
        if total_steps:
            fractions.append(step_ / total_steps)
        if opt.max_time:
            fractions.append(now / opt.max_time)
        frac = max(fractions)
        est_total = total_steps or (step_ / max(frac, 1e-9) if step_ else 1e9)
        return frac, est_total

    history: list[Progress] = []
    start = time.perf_counter()
    order = resumed_order if resumed_order is not None else torch.randperm(n, generator=gen)
    pos = resumed_pos if resumed_order is not None else 0
    run_loss = run_clean = run_rob = 0.0
    run_n = 0
    last_report = -1.0
    eps_t, k_t = 0.0, 1.0
    stopped = "budget"
    try:
        while True:
            now = elapsed_before + (time.perf_counter() - start)
            frac, est_total = progress_at(step, now)
            if distributed and opt.max_time:  # ranks follow the slowest clock, so they stop together
                t = torch.tensor([frac, est_total], dtype=torch.float64, device=dev)
                torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
                frac, est_total = float(t[0]), float(t[1])
            if frac >= 1.0:
                break
            eps_t, k_sched = sched.at(frac, steps_per_epoch, est_total)
            k_t = k_ada if opt.ada and step >= steps_per_epoch else k_sched if not opt.ada else 1.0
            for group in optimizer.param_groups:
                group["lr"] = opt.lr * lr_factor(frac)
            if pos >= n:
                order, pos = torch.randperm(n, generator=gen), 0
            batch = order[pos : pos + opt.batch_size]
            pos += opt.batch_size
            idx = torch.tensor_split(batch, world)[rank].to(dev)
            # the rank's mean loss, scaled so that DDP's average over ranks is the mean over the global batch
            loss, clean, robust = objective(x[idx], y[idx], eps_t, k_t, idx.numel() * world / batch.numel())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            b = idx.numel()
            run_loss += float(loss.detach()) * b
            run_clean += float((clean.argmax(1) == y[idx]).sum())
            run_rob += float(robust.sum())
            run_n += b
            epoch_end = step % steps_per_epoch == 0
            if opt.ada and epoch_end and x_val is not None and x_val.shape[0]:  # the same on every rank
                model.eval()
                spec_sum, fit_sum = _held_out_losses(model, x_val, y_val, max(eps_t, 1e-12), opt)
                model.train()
                k_ada = spec_sum / max(spec_sum + opt.gamma * fit_sum, 1e-12)
            if opt.checkpoint_every and ckpt and step % opt.checkpoint_every == 0:
                save_checkpoint()
            if epoch_end or now - last_report >= 1.0:
                p = Progress(step, step / steps_per_epoch, frac, eps_t, k_t, run_loss / run_n, run_clean / run_n,
                             run_rob / run_n, now)
                history.append(p)
                last_report = now
                if progress:
                    progress(p)
                if epoch_end:
                    run_loss = run_clean = run_rob = 0.0
                    run_n = 0
    except KeyboardInterrupt:
        saved = None
        if ckpt and opt.checkpoint_every:
            save_checkpoint()
            saved = ckpt
        raise Interrupted(saved) from None
    model.eval()
    elapsed = elapsed_before + (time.perf_counter() - start)
    return RobustifyResult(model, step, step / steps_per_epoch, elapsed, eps_t, k_t, history, stopped)
