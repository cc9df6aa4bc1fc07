"""Full-size CIFAR networks: ResNet-18 at widths 16 and 64 and VGG-16 (tests/arch_zoo.py, seeded weights with
batch norm statistics measured on random images), 32×32 inputs, L∞ eps 0.0005 (the width at which a full
ResNet-18 still has unstable ReLUs to bound in every layer).

Per architecture and method: parameters, seconds per sample of the first (cold) and second (warm) bound call,
and the process's peak resident memory — ours (float64, sound under rounding) beside auto_LiRPA 0.7.1 (float32,
patches mode) on the same weights and samples when it is installed, with ours ÷ theirs and the largest amount by
which their lower bound exceeds ours, relative to max(1, |ours|) (positive: ours is looser). Also `certify`'s whole process (import, load,
clean pass, bound, attack) for CROWN-IBP beside the same work through auto_LiRPA (import, build, bound).
Each measurement runs in its own process (peak memory is a process's high-water mark), one after the other.

auto_LiRPA is not a dependency: run with the reference environment's Python (`make reference-venv`, then
`.venv-reference/bin/python benchmarks/bench_full_size.py`); without it, only our columns are printed.
Run: python benchmarks/bench_full_size.py [--archs resnet18_w16,resnet18_w64,vgg16] [--methods ibp,crown-ibp]
       [--samples N] [--timeout S] [--write-docs]
CROWN and alpha-CROWN on these networks take minutes per sample on a CPU (both libraries): ask for them on one
network and sample, e.g. `--archs resnet18_w16 --methods crown --samples 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import ROOT, SHARED, machine, setup_threads
from docs_results import recorded
from tabulate import tabulate

sys.path.insert(0, str(ROOT / "tests"))

EPS = 0.0005
METHODS = ("ibp", "crown-ibp", "crown", "alpha-crown")
THEIR_NAME = {"ibp": "IBP", "crown-ibp": "CROWN-IBP", "crown": "CROWN", "alpha-crown": "alpha-CROWN"}
WARM_BELOW = 120.0  # seconds: a cold call slower than this is not repeated for a warm time


def _inputs(shape: tuple[int, ...], n: int) -> torch.Tensor:
    """CIFAR-10 test images (../shared/data) when present, else seeded uniform images."""
    path = SHARED / "data" / "cifar10_test_20.npz"
    if path.exists():
        x = torch.from_numpy(np.load(path)["x"].astype(np.float32) / 255).permute(0, 3, 1, 2)
        return x.repeat((n + len(x) - 1) // len(x), 1, 1, 1)[:n].contiguous()
    return torch.rand((n,) + shape, generator=torch.Generator().manual_seed(0))


def _module(arch: str):
    from arch_zoo import full_size

    return full_size()[arch]


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _child(side: str, arch: str, method: str, n: int, out: Path) -> None:
    """One side's bound calls in this process: writes {cold, warm, peak, lower} as JSON to `out`."""
    setup_threads()
    module, shape = _module(arch)
    x = _inputs(shape, n)
    with torch.no_grad():
        y = module(x).argmax(1)
    from srp_audit.spec import linf_ball, margin_spec

    spec = margin_spec(y, 10)
    box = linf_ball(x.double(), EPS, (0.0, 1.0))
    if side == "ours":
        from arch_zoo import export

        from srp_audit.bounds import METHODS as OURS
        from srp_audit.formats import load_model

        with tempfile.TemporaryDirectory() as tmp:
            export(module, shape, "torchscript", f"{tmp}/m.onnx")
            g = load_model(f"{tmp}/m.onnx").copy(dtype=torch.float64).eval()
        g.requires_grad_(False)

        def call() -> torch.Tensor:
            with torch.no_grad():
                return OURS[method](g, box, spec, alpha_iters=20).lower
    else:
        from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

        C = spec.shared.C[spec.shared.index].float() if spec.shared is not None else spec.C.float()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bm = BoundedModule(module, torch.zeros_like(x), device="cpu",
                               bound_opts={"optimize_bound_args": {"iteration": 20}, "verbosity": 0, "conv_mode": "patches"})
        bx = BoundedTensor(x, PerturbationLpNorm(norm=np.inf, eps=EPS, x_L=box.lower.float(), x_U=box.upper.float()))

        def call() -> torch.Tensor:
            with warnings.catch_warnings(), (torch.enable_grad() if method == "alpha-crown" else torch.no_grad()):
                warnings.simplefilter("ignore")
                lb, _ = bm.compute_bounds(x=(bx,), C=C, method=THEIR_NAME[method], bound_upper=False)
            return lb.detach().double()

    t0 = time.perf_counter()
    lower = call()
    cold = time.perf_counter() - t0
    warm = None
    if cold < WARM_BELOW:
        t0 = time.perf_counter()
        lower = call()
        warm = time.perf_counter() - t0
    out.write_text(json.dumps({"cold": cold, "warm": warm, "peak": _peak_gib(), "lower": lower.tolist()}))


def _measure(side: str, arch: str, method: str, n: int, timeout: float) -> dict | str:
    """Run `_child` in a fresh process; its JSON, or why there is none."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, __file__, "--child", side, arch, method, str(n), str(out)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT / "benchmarks")
        except subprocess.TimeoutExpired:
            return f"> {timeout:.0f} s"
        if r.returncode != 0 or not out.exists():
            last = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            return "killed (out of memory?)" if r.returncode in (-9, 137) else f"failed: {last[:60]}"
        return json.loads(out.read_text())


def _certify_process(arch: str, n: int, timeout: float) -> tuple[float | str, float | str]:
    """Seconds of `certify --method crown-ibp --no-radius` as a whole process on n samples: with the default attack
    and with --attack-steps 0 (the model exported to ONNX and the samples written beforehand, not timed)."""
    module, shape = _module(arch)
    x = _inputs(shape, n)
    with torch.no_grad():
        y = module(x).argmax(1)
    from arch_zoo import export

    srp = str(Path(sys.executable).parent / "srp-audit")
    times: list[float | str] = []
    with tempfile.TemporaryDirectory() as tmp:
        export(module, shape, "torchscript", f"{tmp}/m.onnx")
        np.savez(f"{tmp}/s.npz", x=x.numpy(), y=y.numpy())
        for steps in ("30", "0"):
            cmd = [srp, "certify", f"{tmp}/m.onnx", "--data", f"{tmp}/s.npz", "--eps", str(EPS), "--method", "crown-ibp",
                   "--no-radius", "--attack-steps", steps, "-q"]
            t0 = time.perf_counter()
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                times.append(time.perf_counter() - t0 if r.returncode in (0, 1) else f"failed: {r.stderr.strip()[-60:]}")
            except subprocess.TimeoutExpired:
                times.append(f"> {timeout:.0f} s")
    return times[0], times[1]


def _reference_process(arch: str, n: int, timeout: float) -> float | str:
    """Seconds of the same CROWN-IBP work through auto_LiRPA as a whole process: import, build, bound."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_full_size as b; "
            f"import tempfile, pathlib; d = tempfile.mkdtemp(); b._child('theirs', {arch!r}, 'crown-ibp', {n}, "
            f"pathlib.Path(d) / 'r.json')")
    t0 = time.perf_counter()
    try:
        env = {**os.environ, "SRP_BENCH_COLD_ONLY": "1"}
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s"
    return time.perf_counter() - t0 if r.returncode == 0 else f"failed: {r.stderr.strip()[-60:]}"


def _has_reference() -> bool:
    try:
        import auto_LiRPA  # noqa: F401
    except ImportError:
        return False
    return True


def _cell(r: dict | str, key: str, n: int) -> str:
    if isinstance(r, str):
        return r if key == "cold" else "—"
    v = r[key]
    return "—" if v is None else f"{v / n:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", default="resnet18_w16,resnet18_w64,vgg16")
    ap.add_argument("--methods", default="ibp,crown-ibp", help=f"some of {','.join(METHODS)}")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measured process")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    threads = setup_threads()
    ref = _has_reference()
    print(f"bench_full_size: {machine()}; eps {EPS}, {args.samples} samples, {threads} threads"
          + ("" if ref else "; auto_LiRPA not installed: our columns only"))
    rows = []
    for arch in args.archs.split(","):
        module, _ = _module(arch)
        params = sum(p.numel() for p in module.parameters())
        for method in args.methods.split(","):
            ours = _measure("ours", arch, method, args.samples, args.timeout)
            theirs = _measure("theirs", arch, method, args.samples, args.timeout) if ref else "not installed"
            ratio = gap = "—"
            if isinstance(ours, dict) and isinstance(theirs, dict):
                ratio = f"{ours['cold'] / theirs['cold']:.2f}× / " + (
                    f"{ours['warm'] / theirs['warm']:.2f}×" if ours["warm"] and theirs["warm"] else "—")
                lt, lo = torch.tensor(theirs["lower"]), torch.tensor(ours["lower"])
                gap = f"{float(((lt - lo) / lo.abs().clamp(min=1)).max()):.1e}"
            row = [arch, f"{params / 1e6:.1f} M", method, _cell(ours, "cold", args.samples), _cell(ours, "warm", args.samples),
                   f"{ours['peak']:.1f}" if isinstance(ours, dict) else "—",
                   _cell(theirs, "cold", args.samples), _cell(theirs, "warm", args.samples),
                   f"{theirs['peak']:.1f}" if isinstance(theirs, dict) else "—", ratio, gap]
            rows.append(row)
            print("  " + " | ".join(row), flush=True)
    print(tabulate(rows, headers=["network", "params", "method", "ours s/sample cold", "warm", "peak GiB",
                                  "auto_LiRPA f32 s/sample cold", "warm", "peak GiB", "ours ÷ theirs cold / warm",
                                  "max(their lb − ours) ÷ max(1, |ours|)"], tablefmt="github"))
    if "resnet18_w64" in args.archs.split(","):
        n = 8
        with_attack, bound_only = _certify_process("resnet18_w64", n, args.timeout)
        theirs_p = _reference_process("resnet18_w64", n, args.timeout) if ref else "not installed"

        def s(v: float | str) -> str:
            return f"{v:.1f} s" if isinstance(v, float) else v

        ratio = f"{bound_only / theirs_p:.2f}×" if isinstance(bound_only, float) and isinstance(theirs_p, float) else "—"
        print(f"\nresnet18_w64, CROWN-IBP on {n} samples, whole process: certify --attack-steps 0 {s(bound_only)}, "
              f"with the default attack {s(with_attack)}; auto_LiRPA (import, build, bound) {s(theirs_p)}; "
              f"ours ÷ theirs (attack off) {ratio}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        side, arch, method, n, out = sys.argv[2:7]
        _child(side, arch, method, int(n), Path(out))
    else:
        with recorded("bench_full_size.py"):
            main()
