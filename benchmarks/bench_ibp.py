"""IBP cost against a plain forward pass, and end-to-end certify throughput, on each fixture (CPU).

Per fixture at batch 256: IBP time ÷ forward time in float64 (the precision certify uses) and in float32
(forward and IBP in the same precision, timed alternately), and the cost of one full `certify` sample
(bounds, radius search, attacks) measured in float32 forward passes. Target: IBP ÷ forward ≤ 2.5.
Run: python benchmarks/bench_ibp.py [--quick]   (--quick: the IBP ratios only, without the certify column,
whose ResNet row runs a full `auto` certify with CROWN and takes many minutes on 2 cores)
"""

from __future__ import annotations

import sys
import time

import torch
from common import FIXTURES, machine, setup_threads, time_ratio
from docs_results import recorded
from tabulate import tabulate

from srp_audit.bounds import interval_bounds
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.spec import linf_ball, margin_spec

BATCH = 256


def _batch(s, n: int):
    reps = (n + len(s) - 1) // len(s)
    return s.x.repeat(reps, *([1] * (s.x.dim() - 1)))[:n], s.y.repeat(reps)[:n]


def main() -> None:
    quick = "--quick" in sys.argv
    setup_threads()
    print(f"bench_ibp: batch {BATCH}, {machine()}")
    rows = []
    for name in ("mnist_mlp", "mnist_cnn", "mnist_resnet"):
        g = load_model(str(FIXTURES / f"{name}.onnx"))
        s = load_samples(str(FIXTURES / f"{name}.samples.npz"), g.input_shape, g.num_classes)
        x, y = _batch(s, BATCH)
        row = [name]
        for dt in (torch.float64, torch.float32):
            gd, xd = g.copy(dtype=dt), x.to(dt)
            box, spec = linf_ball(xd, 0.01, (0.0, 1.0)), margin_spec(y, 10, dt)
            with torch.no_grad():
                ratio, t_fwd = time_ratio(lambda gd=gd, box=box, spec=spec: interval_bounds(gd, box, spec), lambda gd=gd, xd=xd: gd(xd))
            row.append(f"{ratio:.2f}")
        t_fwd32 = t_fwd  # the last loop ran float32
        if quick:
            rows.append(row + ["(--quick)"])
            print(f"  {name}: IBP ÷ forward {row[1]} (float64), {row[2]} (float32)", flush=True)
            continue
        n = 100
        t0 = time.perf_counter()
        certify(g, s.x[:n], s.y[:n], CertifyOptions(eps=0.01, device="cpu", batch_size=BATCH))
        t_cert = time.perf_counter() - t0
        row += [f"{t_cert / n / (t_fwd32 / BATCH):.0f}"]
        rows.append(row)
        print(f"  {name}: IBP ÷ forward {row[1]} (float64), {row[2]} (float32); certify {row[3]} forward passes per sample",
              flush=True)
    print(tabulate(rows, headers=["fixture", "IBP ÷ forward (float64)", "IBP ÷ forward (float32)",
                                  "certify cost per sample, in float32 forward passes"], tablefmt="github"))
    print("target: IBP ÷ forward ≤ 2.5 (same precision); certify includes radius bisection (~10 IBP passes) and PGD")


if __name__ == "__main__":
    with recorded("bench_ibp.py"):
        main()
