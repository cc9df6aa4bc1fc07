"""Hidden counterexamples: `verify` on the scaled-down SoundnessBench of benchmarks/soundnessbench.py.

Generates the set (or reuses the cached one for the generator's current source), runs srp-audit's `verify` on
every instance with a small timeout (two worker processes, one torch thread each), re-checks every `sat`
answer's counterexample on its own (inside the box as written, exact rationals; a violation in onnxruntime and in
exact arithmetic on the ONNX file), and prints, per family: planted counterexamples found (sat), left unknown /
timeout, and answered **unsat — a soundness bug**; clean instances proved unsat of those an independent oracle
proved, and any sat answer on them.
Target: 0 wrong answers (unsat on a planted counterexample, sat on a proved-unsat instance, or a sat whose
counterexample does not re-check).
Run: python benchmarks/bench_soundnessbench.py [--timeout 5] [--jobs 2] [--families a,b] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soundnessbench as sb
from docs_results import recorded


@dataclass
class Outcome:
    """One instance's answer, with its independent re-check."""

    row: dict[str, str]
    status: str  # sat / unsat / unknown / timeout / error
    method: str
    seconds: float
    recheck: str = ""  # for sat: "ok", or why the counterexample fails
    x: np.ndarray | None = None

    @property
    def wrong(self) -> bool:
        """An answer that contradicts the ground truth or a counterexample that does not re-check."""
        e = self.row["expected"]
        return (self.status == "unsat" and e == "sat") or (self.status == "sat" and (e == "unsat" or self.recheck != "ok"))


def _verify_chunk(args: tuple[str, list[dict[str, str]], float]) -> list[tuple[str, str, float, list[float] | None, str]]:
    """Worker: verify each instance of the chunk (one torch thread, the CLI's process settings)."""
    folder, rows, timeout = args
    import torch

    torch.set_num_threads(1)
    from srp_audit.errors import SrpAuditError
    from srp_audit.formats import load_model
    from srp_audit.perf import tune_process
    from srp_audit.verify import VerifyOptions, verify
    from srp_audit.vnnlib import read_vnnlib

    tune_process()
    # verify's deadline alarm can fire inside torch's lazy import of torch._dynamo (alpha-CROWN's first fused Adam)
    # and leave torch half-imported: every later alpha-CROWN pass in the process then raises (a robustness bug of
    # the library, reported with a reproducer). Importing it here, before any alarm, keeps the run measuring answers.
    import torch._dynamo

    models: dict[str, object] = {}
    out = []
    for r in rows:
        try:
            onnx = os.path.join(folder, r["onnx"])
            if onnx not in models:
                models[onnx] = load_model(onnx)
            res = verify(models[onnx], read_vnnlib(os.path.join(folder, r["vnnlib"])), VerifyOptions(timeout=timeout, device="cpu"))
            x = res.counterexample[0].tolist() if res.counterexample is not None else None
            out.append((res.status, res.method or res.detail.split(":")[0], res.seconds, x, ""))
        except SrpAuditError as e:
            out.append(("error", "", 0.0, None, str(e)))
        except Exception as e:  # a crash of one instance is counted (and printed), not the end of the run
            out.append(("error", "", 0.0, None, f"{type(e).__name__}: {e}"))
    return out


def recheck(folder: Path, row: dict[str, str], x: np.ndarray, n_classes: int, cache: dict) -> str:
    """"ok" when x lies in the box as written (exact rationals) and violates the property (some other class ≥ the
    label) in onnxruntime (float32) and in exact arithmetic on the ONNX file; else what failed."""
    text = (folder / row["vnnlib"]).read_text()
    label = int(text.split("label ")[1].split()[0])
    x32 = np.asarray(x, dtype=np.float32).reshape(-1)
    if not np.array_equal(x32.astype(np.float64), np.asarray(x, dtype=np.float64).reshape(-1)):
        return "not a float32 point"
    lo, hi = sb.read_box(text, x32.size)
    if not all(a <= Fraction(float(v)) <= b for a, v, b in zip(lo, x32, hi)):
        return "outside the box"
    onnx = folder / row["onnx"]
    if onnx not in cache:
        cache[onnx] = sb.ExactOnnx(onnx)
    ev = cache[onnx]
    shape = tuple(d.dim_value for d in ev.model.graph.input[0].type.tensor_type.shape.dim)[1:]
    z = sb.ort_outputs(onnx, x32[None], shape)[0]
    if max(z[j] for j in range(n_classes) if j != label) < z[label]:
        return "no violation in onnxruntime"
    ze = ev(x32)
    diffs = [ze[j] - ze[label] for j in range(n_classes) if j != label]
    if not any(d >= 0 for d in diffs):  # arb: only when certain
        return "no violation in exact arithmetic"
    return "ok"


def run(folder: Path, timeout: float, jobs: int = 2, families: list[str] | None = None, log=print) -> list[Outcome]:
    """Verify every instance of a generated set; each sat answer re-checked."""
    rows = [r for r in sb.read_rows(folder) if not families or r["family"] in families]
    by_family: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_family.setdefault(r["family"], []).append(r)
    # chunks: every family split in `jobs` interleaved parts, so both workers stay busy to the end
    chunks = [(str(folder), part, timeout) for fam_rows in by_family.values() for k in range(jobs) if (part := fam_rows[k::jobs])]
    t0 = time.perf_counter()
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(_verify_chunk, chunks, chunksize=1)
    else:
        results = [_verify_chunk(c) for c in chunks]
    outcomes: list[Outcome] = []
    cache: dict = {}
    for (_, part, _), res in zip(chunks, results):
        for r, (status, method, seconds, x, err) in zip(part, res):
            o = Outcome(r, status, method or err, seconds, x=None if x is None else np.asarray(x))
            if status == "sat":
                n_classes = sum(1 for line in (folder / r["vnnlib"]).read_text().splitlines() if line.startswith("(declare-const Y_"))
                o.recheck = recheck(folder, r, o.x, n_classes, cache)
            outcomes.append(o)
    log(f"verified {len(outcomes)} instances in {time.perf_counter() - t0:.0f} s (timeout {timeout:g} s, {jobs} workers)")
    return outcomes


def table(outcomes: list[Outcome]) -> tuple[list[str], list[list[object]]]:
    """Per family: planted (hidden) → sat / unknown+timeout / WRONG unsat; clean proved-unsat → unsat / other /
    WRONG sat; clean unknown → unsat / sat / other; sat counterexamples that failed the re-check."""
    heads = ["family", "planted (hidden)", "found sat (hidden)", "unknown / timeout", "WRONG unsat", "clean: exp. unsat", "proved",
             "unknown / timeout", "WRONG sat", "clean: no label / exp. sat", "unsat / sat / other", "bad cex", "time"]
    fams = sorted({o.row["family"] for o in outcomes}, key=[o.row["family"] for o in outcomes].index)
    body: list[list[object]] = []
    for f in fams + ["total"]:
        rs = [o for o in outcomes if f == "total" or o.row["family"] == f]
        planted = [o for o in rs if o.row["kind"] == "planted"]
        hidden = sum(o.row["hidden"] == "True" for o in planted)
        exp_unsat = [o for o in rs if o.row["expected"] == "unsat"]
        other = [o for o in rs if o.row["kind"] == "clean" and o.row["expected"] != "unsat"]
        body.append([
            f, f"{len(planted)} ({hidden})",
            f"{sum(o.status == 'sat' for o in planted)} ({sum(o.status == 'sat' and o.row['hidden'] == 'True' for o in planted)})",
            sum(o.status in ("unknown", "timeout", "error") for o in planted), sum(o.status == "unsat" for o in planted),
            len(exp_unsat), sum(o.status == "unsat" for o in exp_unsat), sum(o.status in ("unknown", "timeout", "error") for o in exp_unsat),
            sum(o.status == "sat" for o in exp_unsat),
            f"{sum(o.row['expected'] == 'unknown' for o in other)} / {sum(o.row['expected'] == 'sat' for o in other)}",
            f"{sum(o.status == 'unsat' for o in other)} / {sum(o.status == 'sat' for o in other)} / "
            f"{sum(o.status not in ('sat', 'unsat') for o in other)}",
            sum(o.status == "sat" and o.recheck != "ok" for o in rs), f"{sum(o.seconds for o in rs):.0f} s",
        ])
    return heads, body


def report_wrong(folder: Path, outcomes: list[Outcome], log=print) -> list[Outcome]:
    """Print every wrong answer with what reproduces it; returns them."""
    wrong = [o for o in outcomes if o.wrong]
    for o in wrong:
        log(f"WRONG: {o.status} ({o.method}, {o.seconds:.1f} s) on {o.row['vnnlib']} expected {o.row['expected']}"
            + (f", counterexample re-check: {o.recheck}" if o.status == "sat" else "")
            + (f"; witness {folder / o.row['witness_npy']}" if o.row["witness_npy"] else "")
            + f"\n  reproduce: srp-audit verify {folder / o.row['onnx']} {folder / o.row['vnnlib']} --timeout 60")
    return wrong


def main() -> None:
    from tabulate import tabulate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per instance")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    p.add_argument("--families", help="comma-separated subset")
    p.add_argument("--out", type=Path, help="an already generated set (default: the cache, generated when absent)")
    a = p.parse_args()
    folder = a.out or sb.ensure_generated(jobs=a.jobs)
    import platform

    import torch

    print(f"bench_soundnessbench: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"set {folder}")
    outcomes = run(folder, a.timeout, a.jobs, a.families.split(",") if a.families else None)
    heads, body = table(outcomes)
    print(tabulate(body, headers=heads, tablefmt="github"))
    counts: dict[tuple[str, str, str], int] = {}
    for o in outcomes:
        key = (o.row["kind"] + ("/hidden" if o.row["hidden"] == "True" and o.row["kind"] == "planted" else ""), o.status, o.method)
        counts[key] = counts.get(key, 0) + 1
    print("by kind, answer and deciding method: " + "; ".join(f"{k} {s} {m or '-'}: {n}" for (k, s, m), n in sorted(counts.items())))
    for o in outcomes:
        if o.status == "error":
            print(f"ERROR on {o.row['vnnlib']}: {o.method[:300]}")
    wrong = report_wrong(folder, outcomes)
    print(f"wrong answers: {len(wrong)} (must be 0)")
    sys.exit(1 if wrong else 0)


if __name__ == "__main__":
    with recorded("bench_soundnessbench.py"):
        main()
