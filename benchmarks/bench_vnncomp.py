"""VNN-COMP benchmarks: proved / falsified / unknown per benchmark, time, and alpha-beta-CROWN's counts beside.

Runs every instance of the shared benchmarks (../shared/benchmarks/vnncomp) with the competition's timeouts,
optionally capped (--timeout-cap S, to fit a CI or laptop budget), on this CPU; alpha-beta-CROWN's answers
come from known_results.csv (measured by the competition on a GPU).
Targets: 0 unsound answers; all sat instances of mnist_fc falsified; ≥ 80 % of the expected-unsat instances of
mnist_fc and oval21 proved.
Run: python benchmarks/bench_vnncomp.py [--benchmarks mnist_fc,oval21] [--timeout-cap 60]
"""

from __future__ import annotations

import sys
import time

from common import SHARED, machine, setup_threads
from docs_results import recorded
from tabulate import tabulate

from srp_audit.verify import VerifyOptions, read_instances, read_known, run_instances

ROOT = SHARED / "benchmarks" / "vnncomp"


def main() -> None:
    setup_threads()
    args = sys.argv[1:]
    benches = args[args.index("--benchmarks") + 1].split(",") if "--benchmarks" in args else ["test", "mnist_fc", "eran", "oval21", "cifar10_resnet"]
    cap = float(args[args.index("--timeout-cap") + 1]) if "--timeout-cap" in args else None
    if not ROOT.exists():
        print(f"{ROOT} is absent")
        return
    known = read_known(str(ROOT / "known_results.csv"))
    print(f"bench_vnncomp: {machine()}; timeouts: competition's" + (f", capped at {cap:.0f} s" if cap else ""))
    rows, unsound_total = [], 0
    for b in benches:
        insts = read_instances(str(ROOT / b / "instances.csv"))
        t0 = time.perf_counter()
        summary = run_instances(insts, VerifyOptions(), known, cap,
                                on_row=lambda r, b=b: print(f"  {b} {r.instance.vnnlib.split('/')[-1]:60s} "
                                                        f"{r.result.status if r.result else 'error'} {r.result.method if r.result else r.error} "
                                                        f"{r.result.seconds if r.result else 0:.1f}s (expected {r.expected})", flush=True))
        elapsed = time.perf_counter() - t0
        c = summary.counts()
        proved, n_unsat = summary.proved_of_expected_unsat()
        found, n_sat = summary.falsified_of_expected_sat()
        ab = {"sat": 0, "unsat": 0, "other": 0}
        for inst in insts:
            r = known.get((inst.onnx, inst.vnnlib), {}).get("abcrown_result", "")
            ab[r if r in ("sat", "unsat") else "other"] += 1
        unsound = len(summary.unsound())
        unsound_total += unsound
        rows.append([b, len(insts), c["unsat"], c["sat"], c["unknown"] + c["timeout"] + c["error"], unsound,
                     f"{proved}/{n_unsat}", f"{found}/{n_sat}", f"{elapsed:.0f} s", f"{ab['unsat']}/{ab['sat']}/{ab['other']}"])
    print(tabulate(rows, headers=["benchmark", "instances", "proved", "falsified", "unknown", "UNSOUND", "proved of exp. unsat",
                                  "falsified of exp. sat", "time (ours, CPU)", "αβ-CROWN unsat/sat/other (GPU)"], tablefmt="github"))
    print(f"unsound answers in total: {unsound_total} (must be 0)")


if __name__ == "__main__":
    with recorded("bench_vnncomp.py"):
        main()
