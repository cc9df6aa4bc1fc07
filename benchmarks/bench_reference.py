"""srp-audit beside auto_LiRPA (the reference bound library), same weights, samples and margin spec, one run.

For each fixture, VNN-COMP's cifar10_resnet/resnet_2b (when ../shared is present) and the tiny ViT of the
architecture zoo, batch 64, two eps: seconds per batch and certified count for IBP, CROWN-IBP, CROWN and
alpha-CROWN (20 iterations) — ours with default settings (float64, sound under rounding) beside auto_LiRPA in
float32 and float64 — the ratio ours ÷ theirs (float32), and the largest amount by which their lower bounds
exceed ours (positive: ours is looser). Times are medians of 3 runs, ours and theirs alternating.

auto_LiRPA is not a dependency: install it in a scratch environment (`make reference-venv`, see
../shared/reference/README.md) and run this script with that environment's Python
(`make bench-reference`). Without it, only our columns are printed, and the script says so.
Run: python benchmarks/bench_reference.py [--quick]   (--quick: fixtures only, one eps, 1 run each)
"""

from __future__ import annotations

import contextlib
import io
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from common import FIXTURES, SHARED, cifar_inputs, machine, setup_threads
from tabulate import tabulate

from srp_audit.bounds import METHODS
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.ir.graph import Graph
from srp_audit.ops.affine import ElementwiseAffine
from srp_audit.spec import linf_ball, margin_spec

try:
    import auto_LiRPA
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
except ImportError:
    BoundedModule = None

BATCH = 64
ORDER = ("ibp", "crown-ibp", "crown", "alpha-crown")
THEIR_NAME = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN", "alpha-crown": "alpha-CROWN"}
MIN_GAP_SHOWN = 1e-12


def _fixture(name: str):
    g = load_model(str(FIXTURES / f"{name}.onnx"))
    s = load_samples(str(FIXTURES / f"{name}.samples.npz"), g.input_shape, g.num_classes)
    reps = (BATCH + len(s.x) - 1) // len(s.x)
    return g, s.x.repeat(reps, *([1] * (s.x.dim() - 1)))[:BATCH], s.y.repeat(reps)[:BATCH], (0.0, 1.0)


def _vit():
    """The tiny ViT of tests/arch_zoo.py, exported by torch (TorchScript ONNX) and loaded like a user's model."""
    sys.path.insert(0, str(FIXTURES.parent / "tests"))
    from arch_zoo import architectures

    module, shape = architectures()["tiny_vit"]
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/tiny_vit.onnx"
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.randn((2,) + shape),), path, dynamo=False, opset_version=17,
                              input_names=["x"], dynamic_axes={"x": {0: "b"}})
        g = load_model(path).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((BATCH,) + shape).astype(np.float32))
    with torch.no_grad():
        y = g.logits(x).argmax(1)
    return g, x, y, (-10.0, 10.0)


def _median_time(fn: Callable[[], torch.Tensor], runs: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _ours(graph: Graph, box, spec, method: str) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad():
            return METHODS[method](graph, box, spec, alpha_iters=20).lower
    return run


def _reference_module(graph: Graph, dtype: torch.dtype) -> Graph:
    """Our graph as a torch module for auto_LiRPA, with each per-channel scale-and-shift on an image (the
    fixtures' normalisation, batch norm) as the exact 1×1 depthwise convolution auto_LiRPA's patches mode needs
    (its CROWN asserts on an elementwise Mul before a convolution; ../shared/reference/README.md)."""
    model = graph.copy(dtype=dtype).eval()
    for name, node, _ in list(model.items()):
        shape = model.shapes[model.inputs_of[name][0]]
        if isinstance(node, ElementwiseAffine) and len(shape) == 3:
            c = shape[0]
            scale = torch.broadcast_to(node.scale, shape)[:, 0, 0]
            shift = torch.broadcast_to(node.shift, shape)[:, 0, 0]
            if not (torch.broadcast_to(node.scale, shape) == scale.view(c, 1, 1)).all():
                continue  # not per channel: left as it is
            conv = torch.nn.Conv2d(c, c, 1, groups=c).to(dtype)
            conv.weight.data = scale.reshape(c, 1, 1, 1).clone()
            conv.bias.data = shift.clone()
            model.layers[name] = conv
    model.requires_grad_(False)
    return model


class _Theirs:
    """auto_LiRPA's bound on the same margins: patches mode (its default), else its dense 'matrix' mode when
    patches fail (auto_LiRPA 0.7.1 with torch 2.13 fails in patches mode on our CNNs); `note` says which, or why
    it cannot run. The first (warm-up) call is timed too: slow calls are not repeated."""

    def __init__(self, graph: Graph, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, C: torch.Tensor,
                 eps: float, method: str, dtype: torch.dtype) -> None:
        self.run, self.note, self.first = None, "", None
        model = _reference_module(graph, dtype)
        ptb = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=lo.to(dtype), x_U=hi.to(dtype))
        self.bx, self.C, self.method = BoundedTensor(x.to(dtype), ptb), C.to(dtype), method
        errors = []
        for mode in ("patches", "matrix"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.bm = BoundedModule(model, torch.zeros_like(x, dtype=dtype), device="cpu", bound_opts={
                        "optimize_bound_args": {"iteration": 20}, "verbosity": 0, "conv_mode": mode})
                self.first = _median_time(self._bound, 1)
            except Exception as e:  # any failure of the reference becomes a table cell
                errors.append(f"{type(e).__name__}")
                continue
            self.run, self.note = self._bound, "" if mode == "patches" else " (matrix)"
            return
        self.note = "fails: " + ", ".join(sorted(set(errors)))

    def _bound(self) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.method == "alpha-crown":
                lb, _ = self.bm.compute_bounds(x=(self.bx,), C=self.C, method="alpha-CROWN", bound_upper=False)
            else:
                with torch.no_grad():
                    lb, _ = self.bm.compute_bounds(x=(self.bx,), C=self.C, method=THEIR_NAME[self.method], bound_upper=False)
        return lb.detach()


class _Skipped:
    def __init__(self, note: str) -> None:
        self.run, self.note, self.first = None, note, None


SLOW = 5.0  # seconds: a reference call this slow is timed once (its warm-up call)


def bench_model(name: str, graph: Graph, x: torch.Tensor, y: torch.Tensor, domain, eps_list, runs: int) -> list[list]:
    rows = []
    matrix_only: dict[torch.dtype, bool] = {}  # their CROWN ran only in dense mode (or not at all): skip alpha
    g64 = graph.copy(dtype=torch.float64).eval()
    g64.requires_grad_(False)
    for eps in eps_list:
        box = linf_ball(x.double(), eps, domain)
        spec = margin_spec(y, graph.num_classes)
        C = spec.C if spec.shared is None else spec.shared.C[spec.shared.index]
        for m in ORDER:
            ours = _ours(g64, box, spec, m)
            ours()  # warm
            theirs = {}
            if BoundedModule is not None:
                for dt in (torch.float32, torch.float64):
                    if m == "alpha-crown" and matrix_only.get(dt):
                        theirs[dt] = _Skipped("not run: its CROWN needed matrix mode")
                        continue
                    theirs[dt] = _Theirs(graph, x, box.lower, box.upper, C, eps, m, dt)
                    if m == "crown":
                        matrix_only[dt] = theirs[dt].note != ""
            t_ours, lb_ours = [], None
            t_theirs = {dt: [th.first[0]] for dt, th in theirs.items() if th.run is not None}
            lb_theirs = {dt: th.first[1] for dt, th in theirs.items() if th.run is not None}
            for _ in range(runs):  # alternate, so machine noise hits both
                t, lb_ours = _median_time(ours, 1)
                t_ours.append(t)
                for dt, th in theirs.items():
                    if th.run is not None and th.first[0] < SLOW:
                        t, lb_theirs[dt] = _median_time(th.run, 1)
                        t_theirs[dt].append(t)
            to = statistics.median(t_ours)
            row = [name, eps, m, f"{to:.3f}", int(spec.proved(lb_ours).sum())]
            gaps = {}
            for dt in (torch.float32, torch.float64):
                th = theirs.get(dt)
                if th is None:
                    row += ["—", "—"]
                elif th.run is None:
                    row += [th.note, "—"]
                else:
                    lt = lb_theirs[dt].double().reshape(lb_ours.shape)
                    gaps[dt] = float((lt - lb_ours).max())
                    row += [f"{statistics.median(t_theirs[dt][1:] or t_theirs[dt]):.3f}{th.note}", int((lt > 0).all(1).sum())]
            if torch.float32 in gaps:
                row += [f"{to / statistics.median(t_theirs[torch.float32][1:] or t_theirs[torch.float32]):.2f}×",
                        f"{gaps[torch.float32]:.1e}"]
            else:
                row += ["—", "—"]
            row += [f"{gaps[torch.float64]:.1e}" if torch.float64 in gaps else "—"]
            rows.append(row)
            print("  " + " | ".join(str(c) for c in row), flush=True)
    return rows


def main() -> None:
    setup_threads()
    quick = "--quick" in sys.argv
    runs = 1 if quick else 3
    print(f"bench_reference: batch {BATCH}, {machine()}")
    if BoundedModule is None:
        print("auto_LiRPA is not installed in this environment: reference columns skipped "
              "(make bench-reference installs it in a scratch environment and runs this there)")
    else:
        print(f"auto_LiRPA {auto_LiRPA.__version__}")
    models = [("mnist_mlp", _fixture("mnist_mlp"), (0.005, 0.02)), ("mnist_cnn", _fixture("mnist_cnn"), (0.005, 0.02)),
              ("mnist_resnet", _fixture("mnist_resnet"), (0.002, 0.005))]
    resnet = SHARED / "benchmarks" / "vnncomp" / "cifar10_resnet" / "onnx" / "resnet_2b.onnx"
    if not quick:
        if resnet.exists():
            g = load_model(str(resnet))
            x, y, dom = cifar_inputs(g, BATCH)
            models.append(("resnet_2b", (g, x, y, dom), (1 / 255 / 0.25, 2 / 255 / 0.25)))
        else:
            print(f"{resnet} not found: its rows are skipped")
        models.append(("tiny_vit", _vit(), (0.001, 0.004)))
    rows = []
    for name, (g, x, y, dom), eps_list in models:
        rows += bench_model(name, g, x, y, dom, eps_list[-1:] if quick else eps_list, runs)
    print()
    print(tabulate(rows, headers=["model", "eps", "method", "ours s/batch", "ours cert.", "theirs f32 s", "f32 cert.",
                                  "theirs f64 s", "f64 cert.", "ours ÷ f32", "max(f32 lb − ours)", "max(f64 lb − ours)"],
                   tablefmt="github"))
    print("targets: ours ÷ f32 ≤ 1.0 on every row, certified ≥ theirs, max(f32 lb − ours) ≤ 1e-4")


if __name__ == "__main__":
    main()
