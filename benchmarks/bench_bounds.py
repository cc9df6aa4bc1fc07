"""Bound methods side by side: time per batch of 64 and certified accuracy at two eps, with ratios to IBP.

For each fixture and for VNN-COMP's cifar10_resnet/resnet_2b.onnx (when ../shared is present): IBP,
CROWN-IBP, CROWN and alpha-CROWN on the same 64 samples (float64, CPU), then `certify --method auto` against
CROWN on all samples (verdict at eps, no radius search) on 100 samples.
Targets (CPU): CROWN on the MLP and small CNN at batch 64 under 0.2 s; alpha-CROWN within 30× CROWN;
auto never slower than CROWN on all samples.
Run: python benchmarks/bench_bounds.py [--quick]   (--quick: fixtures only, one eps)
"""

from __future__ import annotations

import sys
import time

import torch
from common import FIXTURES, SHARED, cifar_inputs, machine, setup_threads
from docs_results import recorded
from tabulate import tabulate

from srp_audit.bounds import METHODS
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.spec import linf_ball, margin_spec

ORDER = ("ibp", "crown-ibp", "crown", "alpha-crown")


def time_methods(name: str, graph, x, y, eps_list, domain) -> list[list]:
    rows = []
    g64 = graph.copy(dtype=torch.float64)
    g64.requires_grad_(False)
    for eps in eps_list:
        box = linf_ball(x.double(), eps, domain)
        spec = margin_spec(y, graph.num_classes)
        times, certs = {}, {}
        for m in ORDER:
            t0 = time.perf_counter()
            with torch.no_grad():
                lb = METHODS[m](g64, box, spec, alpha_iters=20).lower
            times[m] = time.perf_counter() - t0
            certs[m] = float(spec.proved(lb).float().mean())
        base = times["ibp"]
        for m in ORDER:
            rows.append([name, eps, m, f"{times[m]:.3f}", f"{times[m] / base:.0f}×", f"{100 * certs[m]:.1f} %"])
        rows.append([name, eps, "alpha÷crown", f"{times['alpha-crown'] / times['crown']:.1f}×", "", ""])
    return rows


def main() -> None:
    setup_threads()
    quick = "--quick" in sys.argv
    print(f"bench_bounds: batch 64, float64, {machine()}")
    rows, auto_rows = [], []
    for name, eps_list in (("mnist_mlp", (0.005, 0.02)), ("mnist_cnn", (0.005, 0.02)), ("mnist_resnet", (0.002, 0.005))):
        g = load_model(str(FIXTURES / f"{name}.onnx"))
        s = load_samples(str(FIXTURES / f"{name}.samples.npz"), g.input_shape, g.num_classes)
        rows += time_methods(name, g, s.x[:64], s.y[:64], eps_list[-1:] if quick else eps_list, (0.0, 1.0))
        if name != "mnist_resnet":
            times = {}
            for m in ("crown", "auto"):
                t0 = time.perf_counter()
                r = certify(g, s.x, s.y, CertifyOptions(eps=eps_list[-1], method=m, radius=False, device="cpu"))
                times[m] = (time.perf_counter() - t0, r.certified_accuracy)
            auto_rows.append([name, eps_list[-1], f"{times['crown'][0]:.1f} s", f"{times['auto'][0]:.1f} s",
                              f"{times['auto'][0] / times['crown'][0]:.2f}", f"{100 * times['crown'][1]:.0f} %", f"{100 * times['auto'][1]:.0f} %"])
    resnet = SHARED / "benchmarks" / "vnncomp" / "cifar10_resnet" / "onnx" / "resnet_2b.onnx"
    if resnet.exists() and not quick:
        g = load_model(str(resnet))
        x, y, dom = cifar_inputs(g, 64)
        rows += time_methods("resnet_2b", g, x, y, (1 / 255 / 0.25, 2 / 255 / 0.25), dom)
    print(tabulate(rows, headers=["model", "eps", "method", "s / batch 64", "÷ IBP", "certified"], tablefmt="github"))
    print()
    print(tabulate(auto_rows, headers=["model (100 samples)", "eps", "crown on all", "auto", "auto ÷ crown", "crown cert.", "auto cert."],
                   tablefmt="github"))
    print("targets: CROWN (MLP, CNN) < 0.2 s per batch of 64; alpha-CROWN ≤ 30× CROWN; auto ÷ crown ≤ 1")


if __name__ == "__main__":
    with recorded("bench_bounds.py"):
        main()
