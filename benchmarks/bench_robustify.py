"""Robustify: the cost of one training step per regulariser, and certified accuracy at a fixed time budget.

1. Step cost: median time of one training step (batch 100, forward + backward + Adam) on the fixture CNN for
   natural training, SingleProp (each ReLU variant), IBP and CROWN-IBP, as ratios to the natural step.
   Targets: SingleProp ≤ 2.0× natural and ≤ 0.85× the IBP step.
2. Quality at a fixed budget (skipped with --steps-only): from fixtures/mnist_cnn.onnx, robustify at eps 0.1 on
   fixtures/mnist_train_4k.npz for --max-time seconds (default 180), then certify the first 1 000 images of
   ../shared/data/mnist_test_1k.npz at eps 0.1 with IBP and with `auto`.
   Targets: IBP-certified ≥ 85 %, auto ≥ 92 %, clean ≥ 95 %; SingleProp (best variant) ≥ IBP training.
Run: python benchmarks/bench_robustify.py [--steps-only] [--max-time S] [--runs singleprop/fastlin,ibp,...]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F
from common import FIXTURES, SHARED, machine, setup_threads
from docs_results import recorded
from tabulate import tabulate

from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.robustify import RobustifyOptions, regularized_loss, robustify

EPS = 0.1


def step_costs(graph, x, y) -> list[list]:
    configs = [("natural", None, None), ("singleprop/fastlin", "singleprop", "fastlin"), ("singleprop/zero", "singleprop", "zero"),
               ("singleprop/adaptive", "singleprop", "adaptive"), ("ibp", "ibp", None), ("crown-ibp", "crown-ibp", None)]
    models = {}
    for name, reg, var in configs:
        m = graph.copy().train()
        opt = torch.optim.Adam(m.parameters(), lr=1e-4)
        ro = RobustifyOptions(eps=EPS, regularizer=reg or "singleprop", variant=var or "fastlin")

        def step(m=m, opt=opt, ro=ro, reg=reg):
            loss = F.cross_entropy(m(x), y) if reg is None else regularized_loss(m, x, y, EPS, 0.5, ro)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()

        models[name] = step
    times = {k: [] for k in models}
    for f in models.values():
        f(), f()
    for _ in range(15):  # round-robin, so machine noise hits every configuration alike
        for k, f in models.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return [[k, f"{med[k] / med['natural']:.2f}×", f"{med[k] / med['ibp']:.2f}×"] for k in models]


def quality(graph, train, test, max_time: float, runs: list[str]) -> list[list]:
    rows = []
    for run in runs:
        reg, _, var = run.partition("/")
        opts = RobustifyOptions(eps=EPS, max_time=max_time, regularizer=reg, variant=var or "fastlin", val_split=0.0, device="cpu")
        t0 = time.perf_counter()
        res = robustify(graph, train.x, train.y, opts)
        train_s = time.perf_counter() - t0
        ibp = certify(res.graph, test.x, test.y, CertifyOptions(eps=EPS, method="ibp", radius=False, device="cpu"))
        t1 = time.perf_counter()
        auto = certify(res.graph, test.x, test.y, CertifyOptions(eps=EPS, method="auto", radius=False, device="cpu"))
        auto_s = time.perf_counter() - t1
        rows.append([run, f"{train_s:.0f} s", res.steps, f"{100 * ibp.clean_accuracy:.1f} %", f"{100 * ibp.certified_accuracy:.1f} %",
                     f"{100 * auto.certified_accuracy:.1f} %", auto.count("falsified"), f"{auto_s:.0f} s"])
        print(tabulate([rows[-1]], tablefmt="plain"), flush=True)
    return rows


def main() -> None:
    setup_threads()
    args = sys.argv[1:]
    max_time = float(args[args.index("--max-time") + 1]) if "--max-time" in args else 180.0
    runs = args[args.index("--runs") + 1].split(",") if "--runs" in args else ["singleprop/fastlin", "singleprop/zero", "singleprop/adaptive", "ibp"]
    print(f"bench_robustify: {machine()}")
    graph = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    train = load_samples(str(FIXTURES / "mnist_train_4k.npz"), graph.input_shape, 10)
    torch.manual_seed(0)
    idx = torch.randperm(len(train))[:100]
    print(tabulate(step_costs(graph, train.x[idx], train.y[idx]), headers=["step (batch 100, CNN)", "÷ natural", "÷ IBP"], tablefmt="github"))
    print("targets: SingleProp ≤ 2.0× natural and ≤ 0.85× IBP\n")
    if "--steps-only" in args:
        return
    test_path = SHARED / "data" / "mnist_test_1k.npz"
    if not test_path.exists():
        print(f"{test_path} is absent: skipping the quality runs")
        return
    test = load_samples(str(test_path), graph.input_shape, 10)
    rows = quality(graph, train, test, max_time, runs)
    print(tabulate(rows, headers=["regulariser", "train", "steps", "clean", "IBP cert.", "auto cert.", "falsified", "auto time"], tablefmt="github"))
    print(f"eps {EPS}, budget {max_time:.0f} s, test: first 1 000 MNIST test images; targets: IBP ≥ 85 %, auto ≥ 92 %, clean ≥ 95 %")


if __name__ == "__main__":
    with recorded("bench_robustify.py"):
        main()
