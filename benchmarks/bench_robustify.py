"""Robustify: the cost of one training step per regulariser, and certified accuracy at a fixed time budget.

1. Step cost: median time of one training step (batch 100, forward + backward + Adam) on the fixture CNN for
   natural training, SingleProp (each ReLU variant), IBP and CROWN-IBP, as ratios to the natural step.
   Targets: SingleProp ≤ 2.0× natural and ≤ 0.85× the IBP step.
2. Quality at a fixed budget (skipped with --steps-only): from fixtures/mnist_cnn.onnx, robustify at eps 0.1 on
   fixtures/mnist_train_4k.npz for --max-time seconds (default 180), then certify the first 1 000 images of
   ../shared/data/mnist_test_1k.npz at eps 0.1 with IBP and with `auto`.
   Targets: IBP-certified ≥ 90 %, auto ≥ 95 %, clean ≥ 97 %; SingleProp (best variant) ≥ IBP training.
3. `--table`: instead of 1 and 2, the comparison table of docs/robustify.md — the CNN and the ResNet fixtures at
   eps 0.1 and 0.3, SingleProp beside IBP and CROWN-IBP fine-tuning, each for the same --max-time, then the same
   certification of the 1 000 test images at the training eps. With --write-docs it replaces the table's block in
   docs/robustify.md. SingleProp runs with its defaults, so `--finish auto` may train its last part with IBP (the
   "final phase" column says what it chose). Target: SingleProp ahead (auto-certified) on every model and eps.
Run: python benchmarks/bench_robustify.py [--steps-only | --table] [--max-time S] [--runs singleprop/fastlin,ibp,...]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F
from common import FIXTURES, SHARED, machine, setup_threads
from docs_results import ROOT, recorded
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


def one_run(graph, train, test, eps: float, run: str, max_time: float) -> list:
    """Robustify with `run` (regulariser[/variant]) for `max_time` seconds, then certify `test` at `eps` with IBP and
    `auto`: [run, train time, steps, final phase, clean, IBP-certified, auto-certified, falsified, auto's time]."""
    reg, _, var = run.partition("/")
    opts = RobustifyOptions(eps=eps, max_time=max_time, regularizer=reg, variant=var or "fastlin", val_split=0.0, device="cpu")
    t0 = time.perf_counter()
    res = robustify(graph, train.x, train.y, opts)
    train_s = time.perf_counter() - t0
    ibp = certify(res.graph, test.x, test.y, CertifyOptions(eps=eps, method="ibp", radius=False, device="cpu"))
    t1 = time.perf_counter()
    auto = certify(res.graph, test.x, test.y, CertifyOptions(eps=eps, method="auto", radius=False, device="cpu"))
    auto_s = time.perf_counter() - t1
    choice = res.finish_choice
    final = "—" if choice is None else f"IBP from step {choice.step}" if choice.finish else "none"
    return [run, f"{train_s:.0f} s", res.steps, final, f"{100 * ibp.clean_accuracy:.1f} %", f"{100 * ibp.certified_accuracy:.1f} %",
            f"{100 * auto.certified_accuracy:.1f} %", auto.count("falsified"), f"{auto_s:.0f} s"]


def quality(graph, train, test, max_time: float, runs: list[str]) -> list[list]:
    rows = []
    for run in runs:
        rows.append(one_run(graph, train, test, EPS, run, max_time))
        print(tabulate([rows[-1]], tablefmt="plain"), file=sys.stderr, flush=True)  # progress, outside the recorded block
    return rows


TABLE_MODELS = {"CNN": "mnist_cnn.onnx", "ResNet": "mnist_resnet.onnx"}
TABLE_EPS = (0.1, 0.3)
TABLE_RUNS = ("singleprop/fastlin", "ibp", "crown-ibp")


def comparison_table(test_path, max_time: float) -> None:
    """Every model × eps × regulariser at the same budget; prints the table and, per model and eps, which
    regulariser certified the most (auto)."""
    rows, leaders = [], []
    for label, file in TABLE_MODELS.items():
        graph = load_model(str(FIXTURES / file))
        train = load_samples(str(FIXTURES / "mnist_train_4k.npz"), graph.input_shape, 10)
        test = load_samples(str(test_path), graph.input_shape, 10)
        for eps in TABLE_EPS:
            group = []
            for run in TABLE_RUNS:
                row = [label, eps, *one_run(graph, train, test, eps, run, max_time)]
                print(tabulate([row], tablefmt="plain"), file=sys.stderr, flush=True)  # progress, outside the recorded block
                group.append(row)
            best = max(group, key=lambda r: (float(r[8].rstrip(" %")), -r[9]))
            leaders.append(f"{label} eps {eps}: {best[2]}")
            rows += group
    print()
    print(tabulate(rows, headers=["model", "eps", "regulariser", "train", "steps", "final phase", "clean", "IBP cert.", "auto cert.", "falsified",
                                  "auto time"], tablefmt="github"))
    print(f"\nbudget {max_time:.0f} s each, from the naturally trained fixture, 4 000 training images, test: the 1 000 MNIST test "
          "images certified at the training eps")
    print("most auto-certified: " + "; ".join(leaders))


def main() -> None:
    setup_threads()
    args = sys.argv[1:]
    max_time = float(args[args.index("--max-time") + 1]) if "--max-time" in args else 180.0
    runs = args[args.index("--runs") + 1].split(",") if "--runs" in args else ["singleprop/fastlin", "singleprop/zero", "singleprop/adaptive", "ibp"]
    print(f"bench_robustify: {machine()}")
    test_path = SHARED / "data" / "mnist_test_1k.npz"
    if "--table" in args:
        if not test_path.exists():
            print(f"{test_path} is absent: no table")
            return
        comparison_table(test_path, max_time)
        return
    graph = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    train = load_samples(str(FIXTURES / "mnist_train_4k.npz"), graph.input_shape, 10)
    torch.manual_seed(0)
    idx = torch.randperm(len(train))[:100]
    print(tabulate(step_costs(graph, train.x[idx], train.y[idx]), headers=["step (batch 100, CNN)", "÷ natural", "÷ IBP"], tablefmt="github"))
    print("targets: SingleProp ≤ 2.0× natural and ≤ 0.85× IBP\n")
    if "--steps-only" in args:
        return
    if not test_path.exists():
        print(f"{test_path} is absent: skipping the quality runs")
        return
    test = load_samples(str(test_path), graph.input_shape, 10)
    rows = quality(graph, train, test, max_time, runs)
    print(tabulate(rows, headers=["regulariser", "train", "steps", "final phase", "clean", "IBP cert.", "auto cert.", "falsified",
                                  "auto time"], tablefmt="github"))
    print(f"eps {EPS}, budget {max_time:.0f} s, test: first 1 000 MNIST test images; targets: IBP ≥ 90 %, auto ≥ 95 %, clean ≥ 97 %")


if __name__ == "__main__":
    if "--table" in sys.argv:  # its figures live in the robustify guide, beside the prose that reads them
        with recorded("bench_robustify.py --table", ROOT / "docs" / "robustify.md"):
            main()
    else:
        with recorded("bench_robustify.py"):
            main()
