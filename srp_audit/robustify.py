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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import cast

import torch
import torch.nn.functional as F

from .augment import check_augment, parse_augment, random_offsets, shifted
from .bounds.crown import crown_bounds
from .bounds.ibp import interval_bounds
from .bounds.singleprop import VARIANTS, singleprop, singleprop_loss
from .checkpoint import check_resumable, model_fingerprint, restore_run, run_state, save_checkpoint
from .errors import UsageError
from .finish_rule import FINISH_REGULARIZER, SAMPLES, FinishChoice, robust_counts
from .ir.graph import Graph
from .schedule import AUTO_FINISH, Schedule, Span, lr_factor, parse_finish
from .selection import BestModel, Selection
from .shards import BatchStream, Shards
from .slots import refuse_fixed_batch
from .spec import check_radius, linf_ball, margin_spec

REGULARIZERS = ("singleprop", "ibp", "crown-ibp")


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
    augment: str = "auto"  # random shifts of image batches (`augment.py`): auto, none or shift:N
    finish: str = AUTO_FINISH  # a final phase with another regulariser: REG:SPAN (ibp:50%), auto (`finish_rule.py`) or none

    def validate(self) -> None:
        check_radius(self.eps, "--eps")
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
        check_augment(self.augment)
        parse_finish(self.finish, REGULARIZERS)

    @property
    def auto_finish(self) -> bool:
        """Whether the rule of `finish_rule.py` decides, at the end of the ramp, how the run finishes."""
        return self.finish.strip().lower() == AUTO_FINISH and self.regularizer == "singleprop"

    def final_phase(self) -> tuple[str | None, Span | None]:
        """(final phase's regulariser, span): REG:SPAN's; under auto IBP, its span chosen in the run; else (None, None)."""
        finish = parse_finish(self.finish, REGULARIZERS)
        return (FINISH_REGULARIZER, None) if self.auto_finish else (None, None) if finish is None else finish


@dataclass
class TrainingProgress:
    """One progress report of a training run (what the CLI prints on one line)."""

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
    history: list[TrainingProgress] = field(default_factory=list)
    stopped_by: str = "epochs"  # which budget ended the run: 'epochs' or 'time'
    finish_choice: FinishChoice | None = None  # what `--finish auto` saw and chose, once the ramp ended
    selection: Selection | None = None  # which model a selection set chose (`selection.py`), when there was one


class Interrupted(Exception):
    """Training was interrupted (Ctrl-C); `checkpoint` is where the state was saved, if anywhere."""

    def __init__(self, checkpoint: str | None) -> None:
        super().__init__("interrupted")
        self.checkpoint = checkpoint


# ------------------------------------------------------------------------------------------------ losses


def _robust_from_margins(lb: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Logits whose CE is the usual certified-training loss: 0 for the label, −(margin lower bound) elsewhere."""
    shared = margin_spec(y, k, lb.dtype).shared
    assert shared is not None  # a margin spec comes with its table
    others = shared.C[y].argmin(dim=-1)  # (N, K−1): the class j of each row e_y − e_j
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
        final = opt.final_phase()[0]
        self.final_opt = opt if final is None else replace(opt, regularizer=final)  # the --finish phase's

    def forward(self, x: torch.Tensor, y: torch.Tensor, eps: float, k_weight: float, scale: float, final: bool = False):
        loss, clean, robust, _ = regularized_loss(self.graph, x, y, eps, k_weight, self.final_opt if final else self.opt)
        return loss * scale, clean.detach(), robust.detach()


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


class _Run:
    """One training run's state: the model, optimiser, data order and clocks; each method does one job."""

    def __init__(self, graph: Graph, n: int, opt: RobustifyOptions) -> None:
        self.opt = opt
        self.dev = torch.device(opt.device)
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.world = torch.distributed.get_world_size() if self.distributed else 1
        self.rank = torch.distributed.get_rank() if self.distributed else 0
        if opt.batch_size < self.world:
            raise UsageError(f"--batch-size {opt.batch_size} is smaller than the {self.world} ranks sharing each batch")
        self.model = graph.copy(dtype=torch.float32, device=self.dev).train()
        self.model.requires_grad_(True)
        for buf in self.model.buffers():
            buf.requires_grad_(False)
        self.fingerprint = model_fingerprint(graph)
        self.shift = parse_augment(opt.augment, graph.input_shape)
        self.n = n
        self.steps_per_epoch = max(1, math.ceil(self.n / opt.batch_size))
        epochs = opt.epochs if opt.epochs is not None else (None if opt.max_time else 10.0)
        self.total_steps = epochs * self.steps_per_epoch if epochs else None
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=opt.lr)
        self.objective: torch.nn.Module = _Objective(self.model, opt)
        if self.distributed:  # every rank takes a slice of each global batch; DDP averages the gradients
            from torch.nn.parallel import DistributedDataParallel

            self.objective = DistributedDataParallel(self.objective, device_ids=[self.dev.index] if self.dev.type == "cuda" else None)
        self.gen = torch.Generator(device="cpu").manual_seed(opt.seed)
        torch.manual_seed(opt.seed)
        self.step, self.elapsed_before, self.k_ada = 0, 0.0, 1.0
        self.stream: BatchStream | None = None  # set by `feed`
        self.finish_choice: FinishChoice | None = None  # set at the end of the ramp under --finish auto
        self.best: BestModel | None = None  # the selection set's scores, under --select-split
        self.start = time.perf_counter()

    def release(self) -> None:
        """Drop the DistributedDataParallel wrapper now, so its reducer does not hold the process group until a
        later garbage collection (at interpreter shutdown, after the group is destroyed, gloo aborts)."""
        if self.distributed:
            self.objective = cast(torch.nn.Module, self.objective.module)

    def feed(self, x: torch.Tensor | Shards, y: torch.Tensor | None) -> None:
        """The training data (in memory with its labels, or shards), read in `BatchStream`'s order."""
        data = x if isinstance(x, Shards) else (x.to(self.dev, torch.float32), cast(torch.Tensor, y).to(self.dev))
        self.stream = BatchStream(data, self.opt.batch_size, self.gen, self.dev)

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.start)

    def resume(self) -> None:
        """Restore the state saved by `save` (checked by `check_resumable`: ours, this model, these settings)."""
        assert self.stream is not None  # fed before resuming
        restore_run(self, check_resumable(self.opt, self.fingerprint, self.dev, self.n))
        self.start = time.perf_counter()

    def save(self) -> None:
        """Checkpoint everything `resume` needs (rank 0 only), atomically."""
        if self.rank != 0 or not self.opt.checkpoint_path:
            return
        save_checkpoint(run_state(self), self.opt.checkpoint_path)

    def budget_used(self) -> tuple[float, float, str]:
        """(fraction of the budget used, estimated total steps, which budget leads), agreed by all ranks."""
        now = self.elapsed()
        fractions: dict[str, float] = {}
        if self.total_steps:
            fractions["epochs"] = self.step / self.total_steps
        if self.opt.max_time:
            fractions["time"] = now / self.opt.max_time
        leader = max(fractions, key=fractions.__getitem__)
        frac = fractions[leader]
        est_total = self.total_steps or (self.step / max(frac, 1e-9) if self.step else 1e9)
        if self.distributed and self.opt.max_time:  # ranks follow the slowest clock, so they stop together
            t = torch.tensor([frac, est_total], dtype=torch.float64, device=self.dev)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            frac, est_total = float(t[0]), float(t[1])
        return frac, est_total, leader

    def train_step(self, eps: float, k: float, frac: float, final: bool = False) -> tuple[float, float, float, int]:
        """One optimiser step on the next batch: (Σ loss, Σ clean correct, Σ robust estimate, batch size); `final`:
        with the regulariser of `--finish`."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.opt.lr * lr_factor(frac)
        assert self.stream is not None  # fed before training
        xb, yb, global_n = self.stream.next(self.world, self.rank)
        if self.shift:  # drawn per step for the global batch, each rank taking its slice: resumable, and ranks = one process
            gen = torch.Generator().manual_seed(self.opt.seed * 1_000_003 + self.step)
            xb = shifted(xb, self.shift, torch.tensor_split(random_offsets(global_n, self.shift, gen), self.world)[self.rank])
        # the rank's mean loss, scaled so that DDP's average over ranks is the mean over the global batch
        loss, clean, robust = self.objective(xb, yb, eps, k, yb.numel() * self.world / global_n, final)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        b = yb.numel()
        return float(loss.detach()) * b, float((clean.argmax(1) == yb).sum()), float(robust.sum()), b

    def in_final_phase(self, sched: Schedule, frac: float, est_total: float, eps: float) -> bool:
        """Whether the next step trains with the final phase's regulariser: `--finish REG:SPAN`'s span, or under
        `--finish auto` what the rule chose at the first step past the ramp with eps at its target (not at step 0,
        whose total is not yet estimated)."""
        if not self.opt.auto_finish:
            return sched.finishing(frac, self.steps_per_epoch, est_total)
        if (self.finish_choice is None and self.step > 0 and eps >= self.opt.eps
                and frac + 1e-9 >= sched.ramp_end(self.steps_per_epoch, est_total)):
            self.choose_finish(eps)
        return self.finish_choice is not None and self.finish_choice.finish

    def choose_finish(self, eps: float) -> None:
        """`--finish auto`'s choice on about `SAMPLES` training samples (whole batches, at most one pass) read ahead
        in the stream, which is then rewound, so they are trained on as usual; never held-out samples, which the
        audit draws from. Counted over every rank."""
        assert self.stream is not None  # fed before training
        x, y = self.stream.peek(min(math.ceil(SAMPLES / self.opt.batch_size), self.steps_per_epoch), self.world, self.rank)
        counts = torch.tensor([*robust_counts(self.model, x, y, eps, self.opt.variant, self.opt.domain, self.opt.batch_size),
                               x.shape[0]], dtype=torch.float64, device=self.dev)
        if self.distributed:
            torch.distributed.all_reduce(counts)
        self.finish_choice = FinishChoice(float(counts[0]), float(counts[1]), float(counts[2]), self.step)

    def at_epoch_end(self, eps: float, held_out: tuple[torch.Tensor, torch.Tensor] | None, best: BestModel | None) -> None:
        """`--ada`'s K from the held-out losses; the selection set's score of the model once eps is at its target."""
        if self.opt.ada and held_out is not None and held_out[0].shape[0]:
            self.adapt_k(*held_out, eps)
        if best is not None and eps >= self.opt.eps:
            best.score(self.model, self.step)

    def adapt_k(self, x_val: torch.Tensor, y_val: torch.Tensor, eps: float) -> None:
        """The adaptive K from held-out losses at the current eps (the same on every rank)."""
        self.model.eval()
        spec_sum, fit_sum = _held_out_losses(self.model, x_val, y_val, max(eps, 1e-12), self.opt)
        self.model.train()
        self.k_ada = spec_sum / max(spec_sum + self.opt.gamma * fit_sum, 1e-12)


def robustify(graph: Graph, x: torch.Tensor | Shards, y: torch.Tensor | None, opt: RobustifyOptions,
              x_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
              progress: Callable[[TrainingProgress], None] | None = None,
              select: tuple[torch.Tensor, torch.Tensor] | None = None) -> RobustifyResult:
    """Fine-tune a copy of `graph` on (x, y) — or on `Shards` (y None), one shard in memory at a time; returns the
    trained copy (the input graph is untouched): the last model, or the one the selection set `select` chose."""
    opt.validate()
    refuse_fixed_batch(graph)
    run = _Run(graph, len(x) if isinstance(x, Shards) else x.shape[0], opt)
    run.feed(x, y)
    # the validation set on the run's device (y_val comes with x_val)
    held_out = (x_val.to(run.dev, torch.float32), cast(torch.Tensor, y_val).to(run.dev)) if x_val is not None else None
    best = run.best = BestModel(select[0].to(run.dev, torch.float32), select[1].to(run.dev), opt.eps, opt.domain, opt.batch_size) if select else None
    if opt.resume:
        run.resume()
    sched = Schedule(opt.eps, Span.parse(opt.warmup), Span.parse(opt.ramp), opt.k_final, opt.final_phase()[1])
    spe = run.steps_per_epoch
    history: list[TrainingProgress] = []
    totals = [0.0, 0.0, 0.0, 0]  # loss, clean, robust, samples since the last epoch end
    last_report, eps_t, k_t, leader = -1.0, 0.0, 1.0, "epochs"
    try:
        while True:
            frac, est_total, leader = run.budget_used()
            if frac >= 1.0:
                break
            eps_t, k_sched = sched.at(frac, spe, est_total)
            k_t = run.k_ada if opt.ada and run.step >= spe else k_sched if not opt.ada else 1.0
            final = run.in_final_phase(sched, frac, est_total, eps_t)
            totals = [a + b for a, b in zip(totals, run.train_step(eps_t, k_t, frac, final))]
            epoch_end = run.step % spe == 0
            if epoch_end:
                run.at_epoch_end(eps_t, held_out, best)
            if opt.checkpoint_every and run.step % opt.checkpoint_every == 0:
                run.save()
            now = run.elapsed()
            if epoch_end or now - last_report >= 1.0:
                loss, clean, robust, n = totals
                p = TrainingProgress(run.step, run.step / spe, frac, eps_t, k_t, loss / n, clean / n, robust / n, now)
                history.append(p)
                last_report = now
                if progress:
                    progress(p)
                if epoch_end:
                    totals = [0.0, 0.0, 0.0, 0]
        chosen = best.finish(run.model, run.step) if best is not None else None
    except KeyboardInterrupt:
        saved = None
        if opt.checkpoint_path and opt.checkpoint_every:
            run.save()
            saved = opt.checkpoint_path
        raise Interrupted(saved) from None
    finally:
        run.release()
    run.model.eval()
    return RobustifyResult(run.model, run.step, run.step / spe, run.elapsed(), eps_t, k_t, history, leader, run.finish_choice, chosen)
