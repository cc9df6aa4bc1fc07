"""srp-audit beside auto_LiRPA (the reference bound library), same weights, samples and margin spec, one run.

For each fixture, VNN-COMP's cifar10_resnet/resnet_2b (when ../shared is present) and the tiny ViT of the
architecture zoo, batch 64, two eps: seconds per batch and certified count for IBP, CROWN-IBP, CROWN and
alpha-CROWN (20 iterations) — ours with default settings (float64, sound under rounding) beside auto_LiRPA in
float32 and float64 — the ratio ours ÷ theirs (float32), and the largest amount by which their lower bounds
exceed ours (positive: ours is looser). Times are medians of 3 runs (7 for rows under 0.1 s), ours and theirs
alternating.

auto_LiRPA is not a dependency: install it in a scratch environment (`make reference-venv`, see
../shared/reference/README.md) and run this script with that environment's Python
(`make bench-reference`). Without it, only our columns are printed, and the script says so.
Run: python benchmarks/bench_reference.py [--quick]   (--quick: fixtures only, one eps, 1 run each; 7 under 0.1 s)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from common import FIXTURES, SHARED, cifar_inputs, machine, setup_threads
from docs_results import recorded
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
MATRIX_SAMPLES = 8  # their dense 'matrix' mode is timed on this many samples and scaled to the batch
ORDER = ("ibp", "crown-ibp", "crown", "alpha-crown")
THEIR_NAME = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN", "alpha-crown": "alpha-CROWN"}
SLOW = 5.0  # seconds: a reference call this slow is timed once (its warm-up call)
FAST, FAST_RUNS = 0.1, 7  # seconds: rows whose call is faster are timed FAST_RUNS times, alternated, even in --quick


def _fixture(name: str):
    g = load_model(str(FIXTURES / f"{name}.onnx"))
    s = load_samples(str(FIXTURES / f"{name}.samples.npz"), g.input_shape, g.num_classes)
    reps = (BATCH + len(s.x) - 1) // len(s.x)
    return g, s.x.repeat(reps, *([1] * (s.x.dim() - 1)))[:BATCH], s.y.repeat(reps)[:BATCH], (0.0, 1.0)


def _vit():
    """The tiny ViT of tests/arch_zoo.py, exported by torch (TorchScript ONNX) and loaded like a user's model."""
    sys.path.insert(0, str(FIXTURES.parent / "tests"))
    from arch_zoo import architectures, export

    module, shape = architectures()["tiny_vit"]
    with tempfile.TemporaryDirectory() as tmp:
        export(module, shape, "torchscript", f"{tmp}/tiny_vit.onnx")
        g = load_model(f"{tmp}/tiny_vit.onnx").eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((BATCH,) + shape).astype(np.float32))
    with torch.no_grad():
        y = g.logits(x).argmax(1)
    return g, x, y, (-10.0, 10.0)


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _reference_module(graph: Graph, dtype: torch.dtype) -> Graph:
    """Our graph as a torch module for auto_LiRPA, with each per-channel scale-and-shift on an image (the
    fixtures' normalisation, batch norm) as the exact 1×1 depthwise convolution the reference README suggests
    for its patches mode (its CROWN asserts on an elementwise Mul before a convolution)."""
    model = graph.copy(dtype=dtype).eval()
    for name, node, _ in list(model.items()):
        shape = model.shapes[model.inputs_of[name][0]]
        if not isinstance(node, ElementwiseAffine) or len(shape) != 3:
            continue
        scale, shift = (torch.broadcast_to(t, shape) for t in (node.scale, node.shift))
        if not ((scale == scale[:, :1, :1]).all() and (shift == shift[:, :1, :1]).all()):
            continue  # not per channel: left as it is
        c = shape[0]
        conv = torch.nn.Conv2d(c, c, 1, groups=c).to(dtype)
        conv.weight.data = scale[:, 0, 0].reshape(c, 1, 1, 1).clone()
        conv.bias.data = shift[:, 0, 0].clone()
        model.layers[name] = conv
    model.requires_grad_(False)
    return model


class Reference:
    """auto_LiRPA's bound on the same margins in one precision: its default patches mode on the whole batch, else
    its dense 'matrix' mode on the first MATRIX_SAMPLES samples (auto_LiRPA 0.7.1 with torch 2.13 fails in patches
    mode on our CNNs, and matrix mode takes minutes per batch there), time scaled to the batch. `note` says which,
    or why it cannot run; the warm-up call is timed too, and a slow one is not repeated."""

    def __init__(self, graph: Graph, x: torch.Tensor, eps: float, box, C: torch.Tensor, method: str, dtype: torch.dtype,
                 skip: str = "") -> None:
        self.run, self.note, self.n, self.times = None, skip, BATCH, []
        if skip:
            return
        errors = []
        for mode, n in (("patches", BATCH), ("matrix", MATRIX_SAMPLES)):
            ptb = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=box.lower[:n].to(dtype), x_U=box.upper[:n].to(dtype))
            self.bx, self.C, self.method = BoundedTensor(x[:n].to(dtype), ptb), C[:n].to(dtype), method
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.bm = BoundedModule(_reference_module(graph, dtype), torch.zeros_like(x[:n], dtype=dtype),
                                            device="cpu", bound_opts={"optimize_bound_args": {"iteration": 20},
                                                                      "verbosity": 0, "conv_mode": mode})
                    t, self.lower = _timed(self._bound)
            except Exception as e:  # any failure of the reference becomes a table cell
                errors.append(type(e).__name__)
                continue
            self.run, self.n, self.times = self._bound, n, [t * BATCH / n]
            self.note = "" if mode == "patches" else f" (matrix, timed on {n})"
            return
        self.note = "fails: " + ", ".join(sorted(set(errors)))

    def _bound(self) -> torch.Tensor:
        # auto_LiRPA creates some tensors (max-pool slopes) in the default dtype: float64 runs need it float64
        before = torch.get_default_dtype()
        torch.set_default_dtype(self.C.dtype)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with torch.enable_grad() if self.method == "alpha-crown" else torch.no_grad():
                    lb, _ = self.bm.compute_bounds(x=(self.bx,), C=self.C, method=THEIR_NAME[self.method], bound_upper=False)
        finally:
            torch.set_default_dtype(before)
        return lb.detach().double()

    def time_again(self) -> None:
        if self.run is not None and self.times[0] < SLOW:
            t, self.lower = _timed(self.run)
            self.times.append(t * BATCH / self.n)

    def cells(self, ours: torch.Tensor) -> tuple[list, float | None, float | None]:
        """(time and certified cells, seconds per batch, largest amount by which their bound exceeds ours)."""
        if self.run is None:
            return [self.note or "—", "—"], None, None
        secs = statistics.median(self.times[1:] or self.times)
        lt = self.lower.reshape(self.n, -1)
        certified = int((lt > 0).all(1).sum())
        return ([f"{secs:.3f}{self.note}", certified if self.n == BATCH else f"{certified}/{self.n}"], secs,
                float((lt - ours[: self.n]).max()))


def bench_model(name: str, graph: Graph, x: torch.Tensor, y: torch.Tensor, domain, eps_list, runs: int) -> list[list]:
    rows = []
    g64 = graph.copy(dtype=torch.float64).eval()
    g64.requires_grad_(False)
    for eps in eps_list:
        box = linf_ball(x.double(), eps, domain)
        spec = margin_spec(y, graph.num_classes)
        C = spec.C if spec.shared is None else spec.shared.C[spec.shared.index]
        dense_only: dict[torch.dtype, bool] = {}  # their CROWN needed matrix mode (or failed): skip their alpha
        for m in ORDER:
            def ours(m=m, box=box, spec=spec) -> torch.Tensor:
                with torch.no_grad():
                    return METHODS[m](g64, box, spec, alpha_iters=20).lower
            t_warm, _ = _timed(ours)  # warm
            refs = {}
            for dt in ((torch.float32, torch.float64) if BoundedModule is not None else ()):
                skip = "not run: its CROWN ran only in matrix mode" if m == "alpha-crown" and dense_only.get(dt) else ""
                refs[dt] = Reference(graph, x, eps, box, C, m, dt, skip)
                if m == "crown":
                    dense_only[dt] = refs[dt].n != BATCH or refs[dt].run is None
            t_ours = []
            # alternate, so machine noise hits both; rows of milliseconds take FAST_RUNS (one timing of a few ms
            # can catch a page-fault burst: a --quick run once read the MLP's IBP at 3.8x their time, 0.6x in 5 runs)
            for _ in range(max(runs, FAST_RUNS) if t_warm < FAST else runs):
                t, lb = _timed(ours)
                t_ours.append(t)
                for ref in refs.values():
                    ref.time_again()
            secs = statistics.median(t_ours)
            row = [name, eps, m, f"{secs:.3f}", int(spec.proved(lb).sum())]
            found = {dt: refs[dt].cells(lb) if dt in refs else (["—", "—"], None, None) for dt in (torch.float32, torch.float64)}
            row += found[torch.float32][0] + found[torch.float64][0]
            _, t32, gap32 = found[torch.float32]
            row += [f"{secs / t32:.2f}×" if t32 else "—", f"{gap32:.1e}" if gap32 is not None else "—"]
            gap64 = found[torch.float64][2]
            row += [f"{gap64:.1e}" if gap64 is not None else "—"]
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
    with recorded("bench_reference.py"):
        main()
