"""`robustify` as the command runs it: split the data, audit before, fine-tune (DistributedDataParallel when
launched by torchrun), write the model (round-trip checked), audit after. The audits use the sound methods;
SingleProp's own estimate never enters them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from .certify import CertifyOptions, CertifyResult, certify
from .checkpoint import check_resumable, model_fingerprint
from .data import Samples
from .errors import UsageError
from .formats import load_model, save_model
from .ir.graph import Graph
from .parallel import init_from_env, leaving
from .robustify import RobustifyOptions, RobustifyResult, TrainingProgress, robustify
from .shards import Shards


@dataclass
class DataSplit:
    fit: Samples | Shards
    val: Samples
    audit: Samples
    audit_name: str  # what the audit set is, for the report
    select: Samples | None = None  # set aside to choose the model kept (`selection.py`); None: the last model


def split_data(train: Samples, val_split: float, seed: int, source: str, audit: Samples | None = None,
               audit_source: str = "", audit_samples: int | None = None, select_split: float = 0.0) -> DataSplit:
    """Hold out `val_split` of `train` (seeded) and set aside `select_split` more for choosing the model kept;
    audit on `audit` if given, else on the held-out part (or, with nothing held out, on the training samples), at
    most `audit_samples` of them. The three parts are disjoint."""
    order = np.random.default_rng(seed).permutation(len(train))
    n_val, n_sel = _counts(len(train), val_split, select_split)
    val, fit = train.subset(order[:n_val]), train.subset(order[n_val + n_sel :])
    return _with_audit(fit, val, fit, source, audit, audit_source, audit_samples, _selection(train, order[n_val : n_val + n_sel]))


def _counts(n: int, val_split: float, select_split: float) -> tuple[int, int]:
    """Samples held out and set aside for selection, of n (a selection share above 0 sets aside at least one)."""
    if val_split + select_split >= 1:
        raise UsageError(f"--val-split {val_split} and --select-split {select_split} leave no training samples: "
                         "their sum must be below 1")
    n_val, n_sel = int(round(val_split * n)), (max(1, int(round(select_split * n))) if select_split > 0 else 0)
    if n_sel and n_val + n_sel >= n:
        raise UsageError(f"--val-split {val_split} and --select-split {select_split} leave none of the {n} samples for "
                         "training: lower one of them")
    return n_val, n_sel


def _selection(samples: Samples, idx: np.ndarray) -> Samples | None:
    return samples.subset(idx) if len(idx) else None


def split_shards(train: Shards, val_split: float, seed: int, audit: Samples | None = None, audit_source: str = "",
                 audit_samples: int | None = None, select_split: float = 0.0) -> DataSplit:
    """As `split_data` for data in shards: `val_split` of the first shard is held out and `select_split` of it set
    aside (seeded), the rest of it and every other shard are trained on, one shard in memory at a time."""
    first = train.load(0)
    order = np.random.default_rng(seed).permutation(len(first))
    n_val, n_sel = _counts(len(first), val_split, select_split)
    fit = Shards(train.paths, train.lengths, train.input_shape, train.num_classes, train.domain, {0: np.sort(order[n_val + n_sel :])})
    source = f"{train.paths[0]} (the first of {len(train.paths)} shards)"
    return _with_audit(fit, first.subset(order[:n_val]), first.subset(np.sort(order[n_val + n_sel :])), source, audit,
                       audit_source, audit_samples, _selection(first, order[n_val : n_val + n_sel]))


def _with_audit(fit: Samples | Shards, val: Samples, trained: Samples, source: str, audit: Samples | None, audit_source: str,
                audit_samples: int | None, select: Samples | None = None) -> DataSplit:
    """The split with its audit set: `audit` if given, else the held-out part, else (nothing held out) the `trained`
    samples, at most `audit_samples` of them; its name states how many are audited."""
    if len(fit) == 0:
        raise UsageError("--val-split leaves no training samples")
    if audit is not None:
        return DataSplit(fit, val, audit, f"{len(audit)} samples of {audit_source}", select)
    if len(val):
        chosen = val.subset(slice(0, audit_samples))
        return DataSplit(fit, val, chosen, f"{len(chosen)} of {len(val)} held-out samples of {source}", select)
    chosen = trained.subset(slice(0, audit_samples))
    return DataSplit(fit, val, chosen, f"{len(chosen)} training samples of {source} (nothing held out)", select)


AUDIT_SHARE = 0.15
"""Of `--max-time`, what the before and after audits may take together: the command ends within the budget plus
this share."""
PILOT = 16  # samples audited first to learn an audit's cost per sample


@dataclass
class AuditedRun:
    result: RobustifyResult
    before: CertifyResult
    after: CertifyResult
    warning: str | None = None  # the fine-tuned model audits far worse than the original (a learning rate too high?)
    offered: int = 0  # audit samples there were; `before.n` of them were audited (fewer when the budget set the count)


def joined(first: CertifyResult, rest: CertifyResult) -> CertifyResult:
    """One audit from two consecutive parts of the same sample list (`rest`'s indices continue `first`'s)."""
    offset = first.n
    samples = first.samples + [replace(s, index=s.index + offset) for s in rest.samples]
    return CertifyResult(samples, first.options, first.device, first.wall_time + rest.wall_time,
                         first.notes + [n for n in rest.notes if n not in first.notes])


def budgeted_audit(graph: Graph, audit: Samples, opts: CertifyOptions, seconds: float | None) -> CertifyResult:
    """certify on the first samples of `audit`, as many as fit `seconds` (all of them when None): the first PILOT
    give the cost per sample (their cold start included, so the count errs low), the count follows from it, and
    the rest are audited after them. The count is never below PILOT (nor above the samples there are)."""
    if seconds is None or len(audit) <= PILOT:
        return certify(graph, audit.x, audit.y, opts)
    start = time.perf_counter()
    first = certify(graph, audit.x[:PILOT], audit.y[:PILOT], opts)
    per_sample = (time.perf_counter() - start) / PILOT
    n = min(len(audit), max(PILOT, int(seconds / max(per_sample, 1e-9))))
    if n == PILOT:
        return first
    return joined(first, certify(graph, audit.x[PILOT:n], audit.y[PILOT:n], opts))


def _damage(before: CertifyResult, after: CertifyResult) -> str | None:
    """A warning when fine-tuning wrecked the model: clean accuracy fell by more than 20 points, or certified
    accuracy fell by more than 20 points (it should rise)."""
    clean = before.clean_accuracy - after.clean_accuracy
    cert = before.certified_accuracy - after.certified_accuracy
    if clean > 0.2 or cert > 0.2:
        return (f"the fine-tuned model is much worse than the original (clean accuracy {100 * before.clean_accuracy:.1f} % → "
                f"{100 * after.clean_accuracy:.1f} %, certified {100 * before.certified_accuracy:.1f} % → "
                f"{100 * after.certified_accuracy:.1f} %): try a smaller --lr or --eps, or a longer --ramp")
    return None


def robustify_audited(graph: Graph, data: DataSplit, opts: RobustifyOptions, audit_opts: CertifyOptions, output: str,
                      progress: Callable[[TrainingProgress], None] | None = None,
                      on_audit: Callable[[str], None] | None = None) -> AuditedRun | None:
    """Audit, fine-tune, write `output`, audit again. With `opts.max_time` the audits share AUDIT_SHARE of it: the
    audit before runs on as many samples as fit half of that share, the audit after on the same samples. Under
    torchrun every rank trains its slice of each batch and rank 0 audits and writes (other ranks return None).
    Raises `robustify.Interrupted` on Ctrl-C (after saving a checkpoint when checkpoints are on); nothing is written then."""
    if opts.resume:  # a checkpoint that cannot be resumed is refused before the first audit
        check_resumable(opts, model_fingerprint(graph), samples=len(data.fit))
    d = init_from_env(opts.device)
    if d is not None:
        opts.device = str(d.device)
        audit_opts = CertifyOptions(**{**audit_opts.__dict__, "device": str(d.device)})
    main_rank = d is None or d.is_main
    if main_rank and on_audit:
        on_audit("before")
    seconds = AUDIT_SHARE * opts.max_time / 2 if opts.max_time else None
    # a budget may audit only some samples: a seeded random subset (a file may be sorted by class), so the report's
    # binomial interval describes the audit set
    audit = data.audit.subset(np.random.default_rng(opts.seed).permutation(len(data.audit))) if seconds else data.audit
    before = budgeted_audit(graph, audit, audit_opts, seconds) if main_rank else None
    val = data.val if len(data.val) else None
    with leaving(d):
        x, y = (data.fit, None) if isinstance(data.fit, Shards) else (data.fit.x, data.fit.y)
        select = (data.select.x, data.select.y) if data.select is not None else None
        result = robustify(graph, x, y, opts, val.x if val else None, val.y if val else None, progress, select)
    if not main_rank:
        return None
    assert before is not None  # audited above on the main rank
    if any(not bool(torch.isfinite(t).all()) for t in (*result.graph.parameters(), *result.graph.buffers())):
        raise UsageError(f"training diverged: the fine-tuned model has NaN or inf weights, so '{output}' was not written; "
                         "lower --lr (or resume from an earlier checkpoint)")
    save_model(result.graph, output)
    if opts.checkpoint_path and os.path.exists(opts.checkpoint_path):
        os.remove(opts.checkpoint_path)  # the run finished and its model is written: a later --resume must not reuse it
    if on_audit:
        on_audit("after")
    # an ONNX output is audited as written (its float32 constants), the file a user will certify again
    written = load_model(output) if output.lower().endswith(".onnx") else result.graph
    n = before.n  # the same samples as before
    after = certify(written, audit.x[:n], audit.y[:n], audit_opts)
    return AuditedRun(result, before, after, _damage(before, after), len(data.audit))
