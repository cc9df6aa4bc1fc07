"""Verify a VNN-LIB property of a model: sat (counterexample), unsat (proved), unknown or timeout.

Per clause (an input box with its output constraints): PGD with restarts on the spec objective first, then
the sound bound cascade IBP → CROWN-IBP → CROWN → alpha-CROWN, then a complete method within the timeout:
input splitting for inputs of up to 16 dimensions, ReLU splitting otherwise. The box is used exactly as the
spec gives it, in the model's own input space (no domain clipping). Counterexamples are re-checked with plain
forward passes in the model's precision and in float64, and must lie inside the exact box.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .atomic import write_text_atomic
from .attack import confirm_counterexamples
from .bab import BabResult, input_bab, relu_bab
from .bounds import CASCADE_METHODS, BoundMethod
from .bounds.crown import check_supported
from .device import resolve_device, use_exact_float32
from .errors import SrpAuditError, UsageError
from .formats import load_model
from .ir.graph import Graph
from .parallel import init_from_env, leaving, run_and_gather, shard
from .spec import InputBox, LinearSpec, round_inward, without_subnormal_ends
from .vnn_attacks import corner_attack, property_attack
from .vnnlib import Clause, VnnlibSpec, read_vnnlib

STATUSES = ("sat", "unsat", "unknown", "timeout")
INPUT_SPLIT_MAX_DIMS = 16


@dataclass
class VerifyOptions:
    timeout: float = 60.0
    attack_steps: int = 100
    attack_restarts: int = 10
    alpha_iters: int = 20
    complete: bool = True
    seed: int = 0
    device: str = "auto"


@dataclass
class VerifyResult:
    status: str
    method: str | None  # what decided it: 'pgd', a bound method, 'bab-input', 'bab-relu'
    seconds: float
    counterexample: tuple[np.ndarray, np.ndarray] | None = None  # (x flat, y flat) for sat
    detail: str = ""


MAX_TIMEOUT = 1e7  # seconds (about 115 days): past it a deadline overflows the platform's time

def _boxes(clause: Clause, graph: Graph, dtype: torch.dtype, device) -> tuple[InputBox, InputBox, InputBox]:
    """(float64 box containing the exact one, for proofs; float64 box inside it, for membership checks;
    the inner box rounded inward to the model's precision, for attacks)."""
    shape = (1,) + graph.input_shape

    def as_t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(device).reshape(shape)
    lo64, hi64 = as_t(clause.lower), as_t(clause.upper)
    lo_in, hi_in = as_t(clause.lower_in), as_t(clause.upper_in)  # type: ignore[arg-type]  # not None: Clause.__post_init__ fills them
    lo, hi = round_inward(lo_in, hi_in, dtype)
    lo64, hi64 = without_subnormal_ends(lo64, hi64)  # the proof box stays sound with denormals flushed
    return InputBox(lo64, hi64, bool((lo64 >= 0).all())), InputBox(lo_in, hi_in), InputBox(lo, torch.maximum(hi, lo))


def _inside(points: torch.Tensor, box: InputBox) -> torch.Tensor:
    p = points.double()
    ok = (p >= box.lower) & (p <= box.upper)
    return ok.reshape(ok.shape[0], -1).all(dim=1)


class _PastDeadline(BaseException):
    """Raised by the deadline alarm wherever the run is (a BaseException, so no `except Exception` swallows it)."""


ATTACK_SHARE = 0.5  # of the timeout the first attacks may take: on a large model (VGG-16 at 224×224, 2 CPU threads, a
# PGD step about 1 s) the default 100 steps × 10 restarts would take the whole timeout from the bound cascade
DEADLINE_GRACE = 0.3  # seconds past the deadline before the alarm interrupts whatever phase is running


@contextlib.contextmanager
def _alarm_at(deadline: float) -> Iterator[None]:
    """Interrupt the block with `_PastDeadline` at `deadline` + DEADLINE_GRACE (perf_counter time). Phases check
    the deadline themselves; the alarm bounds the overshoot of any phase that does not (attacks, bound passes,
    LPs). Only the main thread can take signals: elsewhere this is a no-op."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def ring(signum, frame):
        raise _PastDeadline()

    # torch imports its compiler stack lazily (the first fused Adam of alpha-CROWN): an alarm inside that import
    # leaves torch half-imported for the rest of the process, so it is imported before any alarm is armed
    import torch._dynamo  # noqa: F401

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(deadline + DEADLINE_GRACE - time.perf_counter(), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def verify(graph: Graph, spec: VnnlibSpec, opt: VerifyOptions) -> VerifyResult:
    """Decide the property within opt.timeout seconds (overshooting by at most about DEADLINE_GRACE plus one
    torch operation, whatever phase is running)."""
    start = time.perf_counter()
    phase = ["setup"]  # what is running, for the timeout's detail
    try:
        with _alarm_at(start + opt.timeout):
            return _verify(graph, spec, opt, start, phase)
    except _PastDeadline:
        return VerifyResult("timeout", None, time.perf_counter() - start, detail=f"stopped at the deadline during {phase[0]}")


def _verify(graph: Graph, spec: VnnlibSpec, opt: VerifyOptions, start: float, phase: list[str]) -> VerifyResult:
    deadline = start + opt.timeout
    native, wide, dev = _bound_copies(graph, spec, opt.device)
    pending: list[tuple[InputBox, InputBox, LinearSpec, Callable]] = []
    for clause in spec.clauses:  # 1. attack: PGD on the whole property, then on each disjunct alone (per class)
        proof_box, attack_box, s, confirmed = _clause_parts(clause, native, wide, dev)
        phase[0] = "the attack"
        hit = property_attack(native, attack_box, s, opt.attack_steps, opt.attack_restarts, opt.seed, confirmed,
                              deadline=start + ATTACK_SHARE * opt.timeout)
        if hit is not None:
            return _sat(native, hit, "pgd", start)
        if time.perf_counter() > deadline:
            return _timeout(start, phase)
        pending.append((proof_box, attack_box, s, confirmed))
    used: list[tuple[int, str]] = []  # (strength, name) of what proved each clause
    undecided = []
    for box, attack_box, s, confirmed in pending:  # 2. the bound cascade, clause by clause (all must be proved)
        method = _cascade(wide, box, s, opt, deadline, phase)
        if method is not None:
            used.append((method.rank, method.name))
            continue
        if time.perf_counter() > deadline:
            return _timeout(start, phase)
        phase[0] = "the attack from CROWN's corners"
        hit = corner_attack(native, wide, box, attack_box, s, opt.attack_steps, opt.seed, confirmed)
        if hit is not None:
            return _sat(native, hit, "pgd-crown-corners", start)
        undecided.append((box, s, confirmed))
    for box, s, confirmed in undecided:  # 3. complete methods
        if not opt.complete:
            return VerifyResult("unknown", None, time.perf_counter() - start, detail="bounds inconclusive")
        phase[0] = "branch and bound"
        name, res = _branch_and_bound(wide, box, s, deadline, confirmed)
        if res.status == "sat":
            return _sat(native, res.counterexample.to(native.dtype), name, start)  # type: ignore[union-attr]  # 'sat' carries one
        if res.status != "unsat":
            status = "timeout" if res.status == "timeout" else "unknown"
            return VerifyResult(status, None, time.perf_counter() - start, detail=f"{name}: {res.domains} domains")
        used.append((len(CASCADE_METHODS) + COMPLETE_METHODS.index(name), name))
    return VerifyResult("unsat", max(used, default=(0, None))[1], time.perf_counter() - start)


# long-module: the verify driver and its benchmark runner (instances and known-answer files); the runner's split is due
COMPLETE_METHODS = ("bab-input", "bab-relu")
"""The complete methods, in the order of strength that picks an unsat answer's method (after the cascade's)."""


def _bound_copies(graph: Graph, spec: VnnlibSpec, device: str) -> tuple[Graph, Graph, torch.device]:
    """(the model in its own precision, in float64, the device they are on), after checking that the model fits the
    property and the bound methods."""
    n_in, n_out = math.prod(graph.input_shape), graph.num_classes
    if spec.n_inputs != n_in or spec.n_outputs != n_out:
        raise UsageError(f"{spec.path} has {spec.n_inputs} inputs and {spec.n_outputs} outputs, the model "
                         f"{n_in} inputs {graph.input_shape} and {n_out} outputs")
    check_supported(graph)
    dev = resolve_device(device)
    if dev.type == "cuda":
        use_exact_float32()
    native = graph.copy(device=dev).eval()
    wide = graph.copy(dtype=torch.float64, device=dev).eval()
    native.requires_grad_(False)
    wide.requires_grad_(False)
    return native, wide, dev


def _clause_parts(clause: Clause, native: Graph, wide: Graph, dev: torch.device) -> tuple[InputBox, InputBox, LinearSpec, Callable]:
    """(the proof box, the attack box, the float64 spec, the counterexample check) of one clause."""
    proof_box, member_box, attack_box = _boxes(clause, native, native.dtype, dev)
    s = clause.spec(torch.float64).to(device=dev)
    rows_hit = clause.spec(torch.float64, counterexamples=True).to(device=dev)

    def confirmed(x: torch.Tensor) -> bool:
        x = x.to(native.dtype)  # the point a sat answer reports (branch and bound searches in float64)
        return bool(confirm_counterexamples(x, rows_hit, native, wide, _inside(x, member_box)).all())

    return proof_box, attack_box, s, confirmed


def _cascade(wide: Graph, box: InputBox, s: LinearSpec, opt: VerifyOptions, deadline: float, phase: list[str]) -> BoundMethod | None:
    """The first method of the cascade that proves `s` on `box`; None when none does, or the deadline passed
    before the method named in `phase`."""
    for method in CASCADE_METHODS:
        phase[0] = method.name
        if time.perf_counter() > deadline:
            return None
        with torch.no_grad():
            lb = method.bounds(wide, box, s, alpha_iters=opt.alpha_iters, deadline=deadline).lower
        if bool(s.proved(lb).all()):
            return method
    return None


def _branch_and_bound(wide: Graph, box: InputBox, s: LinearSpec, deadline: float, confirmed: Callable) -> tuple[str, BabResult]:
    """(name, result) of the complete method: input splitting up to INPUT_SPLIT_MAX_DIMS inputs, else ReLU splitting."""
    if box.lower.numel() <= INPUT_SPLIT_MAX_DIMS:
        return COMPLETE_METHODS[0], input_bab(wide, box, s, deadline, check=confirmed)
    return COMPLETE_METHODS[1], relu_bab(wide, box, s, deadline, check=confirmed)


def _timeout(start: float, phase: list[str]) -> VerifyResult:
    return VerifyResult("timeout", None, time.perf_counter() - start, detail=f"reached the deadline after {phase[0]}")


def _sat(native: Graph, x: torch.Tensor, method: str, start: float) -> VerifyResult:
    with torch.no_grad():
        y = native.logits(x.to(native.dtype))
    return VerifyResult("sat", method, time.perf_counter() - start,
                        (x.reshape(-1).cpu().double().numpy(), y.reshape(-1).cpu().double().numpy()))


def result_text(res: VerifyResult) -> str:
    """The VNN-COMP result file: the status, and for sat the assignment ((X_0 v) … (Y_0 v) …)."""
    if res.status != "sat" or res.counterexample is None:
        return res.status + "\n"
    x, y = res.counterexample
    lines = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)] + [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y)]
    return "sat\n(" + "\n ".join(lines) + ")\n"


def write_result(path: str, res: VerifyResult) -> None:
    write_text_atomic(path, result_text(res))


# ------------------------------------------------------------------------------------------------ benchmarks


@dataclass
class Instance:
    onnx: str
    vnnlib: str
    timeout: float
    key: tuple[str, str] = ("", "")  # paths relative to the benchmark root, for matching known results


def read_instances(csv_path: str) -> list[Instance]:
    """instances.csv rows `onnx,vnnlib,timeout` (VNN-COMP has no header line); a first line naming the columns
    onnx, vnnlib and timeout, in any order — the convention of known_results.csv — is read as a header."""
    if not os.path.exists(csv_path):
        raise UsageError(f"instances file '{csv_path}' does not exist")
    folder = os.path.dirname(os.path.abspath(csv_path))
    out: list[Instance] = []
    columns: tuple[int, ...] = (0, 1, 2)
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or not "".join(row).strip():
                    continue
                names = [cell.strip().lower() for cell in row]
                if not out and {"onnx", "vnnlib", "timeout"} <= set(names):
                    columns = tuple(names.index(k) for k in ("onnx", "vnnlib", "timeout"))  # a header line
                    continue
                if len(row) <= max(columns):
                    raise UsageError(f"{csv_path}:{lineno}: expected onnx,vnnlib,timeout")
                try:
                    timeout = float(row[columns[2]])
                except ValueError:
                    raise UsageError(f"{csv_path}:{lineno}: timeout {row[columns[2]]!r} is not a number "
                                     "(a header line, if any, must name the columns onnx, vnnlib and timeout)") from None
                if not 0 < timeout <= MAX_TIMEOUT:  # NaN fails too
                    raise UsageError(f"{csv_path}:{lineno}: timeout {row[columns[2]]!r} is not in (0, {MAX_TIMEOUT:g}] seconds")
                onnx, vnn = (os.path.normpath(os.path.join(folder, row[c].strip())) for c in columns[:2])
                out.append(Instance(onnx, vnn, timeout))
    except UnicodeDecodeError:
        raise UsageError(f"'{csv_path}' is not a text CSV file") from None
    if not out:
        raise UsageError(f"instances file '{csv_path}' holds no instances (expected lines onnx,vnnlib,timeout)")
    return out


def read_known(csv_path: str) -> dict[tuple[str, str], dict[str, str]]:
    """known_results.csv rows keyed by (onnx, vnnlib) as absolute normalised paths."""
    if not os.path.exists(csv_path):
        raise UsageError(f"known-results file '{csv_path}' does not exist")
    folder = os.path.dirname(os.path.abspath(csv_path))
    out: dict[tuple[str, str], dict[str, str]] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.DictReader(f), 2):
                if any(not row.get(k) for k in ("onnx", "vnnlib", "expected")):
                    raise UsageError(f"{csv_path}:{lineno}: expected columns onnx, vnnlib and expected (a header line names them)")
                onnx, vnn = (os.path.normpath(os.path.join(folder, row[k])) for k in ("onnx", "vnnlib"))
                out[onnx, vnn] = row
    except UnicodeDecodeError:
        raise UsageError(f"'{csv_path}' is not a text CSV file") from None
    if not out:
        raise UsageError(f"known-results file '{csv_path}' holds no rows")
    return out


def benchmark_problems(summary: "BenchmarkSummary", known: dict | None, allow_errors: bool) -> tuple[int, str | None]:
    """(exit code, reason) for a benchmark run: 2 when the known answers match no instance (nothing was checked),
    1 when an instance failed to run (unless `allow_errors`) or an answer contradicts a known one; else (0, None)."""
    if known is not None and not any(r.expected for r in summary.rows):
        return 2, "none of the instances appears in the known-results file: check that both name the same onnx/vnnlib paths"
    errors = [r for r in summary.rows if r.result is None]
    if errors and not allow_errors:
        return 1, f"{len(errors)} instance(s) could not be run (first: {errors[0].error}); pass --allow-errors to accept that"
    if known is not None and summary.unsound():
        return 1, f"{len(summary.unsound())} unsat answer(s) on instances known to be sat"
    return 0, None


@dataclass
class InstanceRow:
    instance: Instance
    result: VerifyResult | None
    error: str = ""
    expected: str | None = None


@dataclass
class BenchmarkSummary:
    rows: list[InstanceRow] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES + ("error",)}
        for r in self.rows:
            out[r.result.status if r.result else "error"] += 1
        return out

    def unsound(self) -> list[InstanceRow]:
        return [r for r in self.rows if r.expected == "sat" and r.result and r.result.status == "unsat"]

    def proved_of_expected_unsat(self) -> tuple[int, int]:
        rows = [r for r in self.rows if r.expected == "unsat"]
        return sum(1 for r in rows if r.result and r.result.status == "unsat"), len(rows)

    def falsified_of_expected_sat(self) -> tuple[int, int]:
        rows = [r for r in self.rows if r.expected == "sat"]
        return sum(1 for r in rows if r.result and r.result.status == "sat"), len(rows)


def run_instances(instances: list[Instance], opt: VerifyOptions, known: dict | None = None, timeout_cap: float | None = None,
                  on_row=None) -> BenchmarkSummary:
    """Verify every instance with its own timeout (capped by `timeout_cap`); load errors become rows."""
    summary = BenchmarkSummary()
    cache: dict[str, Graph] = {}
    for inst in instances:
        expected = (known or {}).get((inst.onnx, inst.vnnlib), {}).get("expected") if known else None
        t = min(inst.timeout, timeout_cap) if timeout_cap else inst.timeout
        try:
            if inst.onnx not in cache:
                cache[inst.onnx] = load_model(inst.onnx)
            res = verify(cache[inst.onnx], read_vnnlib(inst.vnnlib), VerifyOptions(**{**opt.__dict__, "timeout": t}))
            row = InstanceRow(inst, res, expected=expected)
        except SrpAuditError as e:
            row = InstanceRow(inst, None, str(e), expected)
        summary.rows.append(row)
        if on_row:
            on_row(row)
    return summary


def run_instances_sharded(instances: list[Instance], opt: VerifyOptions, known: dict | None = None,
                          timeout_cap: float | None = None, on_row=None) -> BenchmarkSummary | None:
    """`run_instances` here, or — launched by torchrun — a contiguous share of the instances per rank, gathered
    on rank 0, which reports every row in order (other ranks return None)."""
    d = init_from_env(opt.device)
    if d is None:
        return run_instances(instances, opt, known, timeout_cap, on_row)
    opt = VerifyOptions(**{**opt.__dict__, "device": str(d.device)})
    start, stop = shard(len(instances), 1, d.rank, d.world)
    with leaving(d):
        parts = run_and_gather(d, lambda: run_instances(instances[start:stop], opt, known, timeout_cap).rows,
                               f"instances {start}–{stop - 1}" if stop > start else "no instances")
    if parts is None:
        return None
    summary = BenchmarkSummary([row for part in parts for row in part])
    for row in summary.rows:
        if on_row:
            on_row(row)
    return summary
