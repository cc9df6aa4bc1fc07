"""The models people bring: every family of ../shared/benchmarks/zoo (VNN-COMP 2023–2024) and the architecture zoo
of tests/arch_zoo.py (ResNet-18, MobileNetV2/V3, DenseNet, EfficientNet, tiny ViT, upsampling decoder).

Per model: loads, largest difference from onnxruntime (relative to the output scale), the cost of IBP, CROWN and
alpha-CROWN (20 iterations, stopped at twice CROWN's time) in forward passes of the same batch, CROWN ÷ IBP
(architectures: medians of 3 warm runs on 16 samples; zoo models: one cold run on one box), and
- zoo families: `verify` on every listed instance (its own timeout, capped by --timeout), each answer checked —
  a `sat` counterexample by a plain forward pass, an `unsat` by a strong attack — counted as sat/unsat/other;
- architectures: the certified fraction at eps 0.001 (CROWN, margins of the model's own predictions on 16 random
  inputs).
Targets: every family and architecture loads and bounds (100 %); CROWN on the tiny ViT within 20× its IBP time.
Run: python benchmarks/bench_zoo.py [--quick] [--timeout S]   (--quick: the first instance of each model, 5 s)
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, SHARED, machine, setup_threads
from docs_results import recorded
from tabulate import tabulate

sys.path.insert(0, str(ROOT / "tests"))
from arch_zoo import architectures, export
from zoo_checks import counterexample_holds, strong_attack_finds, zoo_instances

from srp_audit.bounds import get_method
from srp_audit.formats import load_model
from srp_audit.spec import InputBox, margin_spec
from srp_audit.verify import VerifyOptions, verify
from srp_audit.vnnlib import read_vnnlib

ZOO = SHARED / "benchmarks" / "zoo"
METHODS = ("ibp", "crown", "alpha-crown")


def _ort(path: Path, x: np.ndarray, batched: bool, shape: tuple) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ins = sess.get_inputs()
    outs = []
    for p in x:
        flat, feed, start = p.reshape(-1), {}, 0
        for i in ins:  # several inputs: consecutive parts of the flat sample
            dims = [d if isinstance(d, int) else 1 for d in i.shape]
            n = int(np.prod(dims))
            dtype = np.float64 if "double" in i.type else (np.int64 if "int64" in i.type else np.float32)
            feed[i.name] = flat[start:start + n].reshape(dims).astype(dtype)
            start += n
        outs.append(np.concatenate([o.reshape(-1) for o in sess.run(None, feed)]))
    return np.stack(outs)


def _costs(g, box: InputBox, spec, reps: int) -> tuple[list[str], torch.Tensor]:
    """Per method: seconds ÷ one forward pass of the same batch (float64, as bounds run), medians of `reps` warm
    runs after one warm-up (reps 0: one cold run, for the largest models); and CROWN ÷ IBP."""
    wide = g.copy(dtype=torch.float64)
    wide.requires_grad_(False)
    x = (box.lower + box.upper) / 2

    def timed(fn) -> float:
        if reps:
            fn()
        ts = []
        for _ in range(max(reps, 1)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    with torch.no_grad():
        fwd = timed(lambda: [wide(x) for _ in range(5)]) / 5
    cells, times, out = [], {}, {}
    for m in METHODS:
        def run(m=m):
            kw = {"alpha_iters": 20, "deadline": time.perf_counter() + 2 * times["crown"]} if m == "alpha-crown" else {}
            with torch.no_grad() if m != "alpha-crown" else contextlib.nullcontext():
                out[m] = get_method(m)(wide, box, spec, **kw).lower.detach()
        # alpha-CROWN stops its iterations past twice CROWN's time (on the largest zoo models 20 would take an hour)
        times[m] = timed(run)
        cells.append(f"{times[m] / fwd:.0f}" + ("" if bool(torch.isfinite(out[m]).all()) else " (inf)"))
    return cells + [f"{times['crown'] / times['ibp']:.1f}"], out["crown"]


def zoo_rows(quick: bool, cap: float) -> list[list]:
    rows = []
    by_model: dict[Path, list] = {}
    for fam, model, prop, t in zoo_instances(ZOO):
        by_model.setdefault(model, []).append((fam, prop, t))
    for model, items in by_model.items():
        fam = items[0][0]
        name = f"{fam}/{model.stem}"[:48]
        try:
            g = load_model(str(model)).eval()
        except Exception as e:  # a load failure is a row, not a crash
            rows.append([name, f"NO ({str(e)[:40]})"] + [""] * 7)
            continue
        spec0 = read_vnnlib(items[0][1])
        c = spec0.clauses[0]
        lo, hi = c.lower_in.reshape((1,) + g.input_shape), c.upper_in.reshape((1,) + g.input_shape)
        rng = np.random.default_rng(0)
        pts = (lo + (hi - lo) * rng.random((4,) + lo.shape[1:])).astype(np.float32)
        with torch.no_grad():
            ours = g(torch.from_numpy(pts)).reshape(4, -1).numpy()
        ref = _ort(model, pts, g.meta.batched, g.input_shape)
        diff = float(np.abs(ours - ref).max() / max(1.0, float(np.abs(ref).max())))
        centre = torch.from_numpy((lo + hi) / 2).double()
        rad = torch.from_numpy(np.minimum((hi - lo) / 2, 1e-3 * np.maximum(1.0, np.abs(lo + hi) / 2))).double()
        k = min(g.num_classes, 12)
        eye = torch.eye(g.num_classes, dtype=torch.float64)[:k]
        from srp_audit.spec import LinearSpec
        spec = LinearSpec(torch.cat([eye, -eye]).unsqueeze(0), torch.zeros(1, 2 * k, dtype=torch.float64), [[i] for i in range(2 * k)])
        costs, _ = _costs(g, InputBox(centre - rad, centre + rad), spec, 0)
        counts = {"sat": 0, "unsat": 0, "other": 0, "wrong": 0}
        for _, prop, t in items[:1] if quick else items:
            spec_v = read_vnnlib(prop)
            res = verify(g, spec_v, VerifyOptions(timeout=min(t, cap)))
            if res.status == "sat":
                counts["sat" if counterexample_holds(g, spec_v, res) else "wrong"] += 1
            elif res.status == "unsat":
                counts["wrong" if strong_attack_finds(g, spec_v) else "unsat"] += 1
            else:
                counts["other"] += 1
        n = sum(counts.values())
        rows.append([name, "yes", f"{diff:.0e}", *costs,
                     f"{counts['sat']}/{counts['unsat']}/{counts['other']} of {n}" + (f", {counts['wrong']} WRONG" if counts["wrong"] else "")])
        print(f"  {rows[-1]}", flush=True)
    return rows


def arch_rows() -> tuple[list[list], float | None]:
    rows, vit_ratio = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, shape) in architectures().items():
            path = Path(tmp) / f"{name}.onnx"
            export(module, shape, "torchscript", path)
            g = load_model(str(path)).eval()
            pts = np.random.default_rng(0).standard_normal((16,) + shape).astype(np.float32)
            with torch.no_grad():
                ours = g(torch.from_numpy(pts)).numpy()
            ref = _ort(path, pts, True, shape)
            diff = float(np.abs(ours - ref).max() / max(1.0, float(np.abs(ref).max())))
            xs = torch.from_numpy(pts).double()
            spec = margin_spec(torch.from_numpy(ours.argmax(1)), g.num_classes, torch.float64)
            costs, lb = _costs(g, InputBox(xs - 1e-3, xs + 1e-3), spec, 3)
            cert = float((spec.worst_bound(lb) > 0).double().mean())
            if name == "tiny_vit":
                vit_ratio = float(costs[-1])
            rows.append([name, "yes", f"{diff:.0e}", *costs, f"{100 * cert:.0f} % at 0.001"])
            print(f"  {rows[-1]}", flush=True)
    return rows, vit_ratio


def main() -> None:
    quick = "--quick" in sys.argv
    cap = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else (5.0 if quick else 30.0)
    setup_threads()
    print(f"bench_zoo: {machine()}; verify timeout cap {cap:g} s{' (--quick: first instance per model)' if quick else ''}")
    head = ["model", "loads", "vs ORT", "IBP ×fwd", "CROWN ×fwd", "α-CROWN ×fwd", "CROWN ÷ IBP"]
    arows, vit = arch_rows()
    print(tabulate(arows, headers=head + ["certified (CROWN)"], tablefmt="github"), flush=True)
    zrows = zoo_rows(quick, cap) if ZOO.exists() else []
    if zrows:
        print(tabulate(zrows, headers=head + ["verify sat/unsat/other"], tablefmt="github"))
    else:
        print(f"({ZOO} is absent: zoo rows skipped)")
    loaded = sum(r[1] == "yes" for r in zrows + arows)
    print(f"\nloads and bounds: {loaded}/{len(zrows) + len(arows)} (target: all)")
    if vit is not None:
        print(f"tiny ViT: CROWN ÷ IBP = {vit:.1f} (target ≤ 20: {'met' if vit <= 20 else 'MISSED'})")


if __name__ == "__main__":
    with recorded("bench_zoo.py"):
        main()
