"""Checks of the generated-model fuzz (tests/graph_fuzz.py) on one model file: load it, compare with onnxruntime,
and sample IBP and CROWN bounds over a small box. A strict float64 violation is re-evaluated exactly (the arb oracle
of tests/exact_onnx.py): cleared when the exact value lies inside the bounds (the float64 IR's own rounding),
confirmed when it lies outside."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import graph_fuzz_onnx as gfo
import numpy as np
import onnx
import torch
from graph_fuzz_discrete import RELATIONS
from soundness import identity_spec, sample_box

from srp_audit.bounds import METHODS
from srp_audit.errors import ModelLoadError, SrpAuditError, UnsupportedOpError
from srp_audit.formats import load_model
from srp_audit.spec import InputBox

TOL = 1e-4  # onnxruntime (float32) against the float64 IR, relative to max(1, output scale)
# discontinuous ops: a float32 rounding may flip a step, so one sample of a batch may differ from onnxruntime
STEP_OPS = {"Floor", "Ceil", "Round", "Sign", "ArgMax", "ArgMin", "Mod", "OneHot", *RELATIONS, "Cast"}
SAMPLES = 256


@dataclass
class Case:
    index: int
    source: str  # onnx | torchscript | dynamo
    opset: int
    ops: list[str]
    model: onnx.ModelProto | None
    note: str = ""


@dataclass
class Outcome:
    case: Case
    status: str  # ok | refused | failure | export-failed
    kind: str = ""
    message: str = ""
    note: str = ""  # the loader's note on how it read the model (the batch axis fixed to 1)


def refusal_reason(e: Exception) -> str:
    msg = str(e)
    head = e.op if isinstance(e, UnsupportedOpError) else "load"
    detail = msg.split("): ", 1)[1] if isinstance(e, UnsupportedOpError) and "): " in msg else msg
    detail = re.sub(r"'[^']*'", "'…'", detail)
    detail = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", detail)
    detail = re.sub(r"[\[(][#, …]*[\])]", "(…)", detail)
    return f"{head}: {detail[:120]}"


class OrtModel:
    """onnxruntime on IR-layout inputs: (n, total) flat samples ↔ the model's (batched) inputs and outputs."""

    def __init__(self, path: Path, per_sample: bool = False) -> None:
        self.sess = gfo.ort_session(str(path))
        self.inputs = self.sess.get_inputs()
        self.dynamic = not per_sample and not all(isinstance(i.shape[0], int) for i in self.inputs)
        self.sizes = [math.prod(int(d) for d in i.shape[1:]) for i in self.inputs]

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        flat = flat.astype(np.float32)
        rows = [flat] if self.dynamic else [flat[i:i + 1] for i in range(flat.shape[0])]
        out = []
        for r in rows:
            feeds, at = {}, 0
            for inp, size in zip(self.inputs, self.sizes):
                feeds[inp.name] = r[:, at:at + size].reshape((r.shape[0], *[int(d) for d in inp.shape[1:]]))
                at += size
            out.append(np.concatenate([o.reshape(r.shape[0], -1) for o in self.sess.run(None, feeds)], axis=1))
        return np.concatenate(out).astype(np.float64)


def _ir(g, flat: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return g(torch.from_numpy(flat).to(torch.float64).reshape((flat.shape[0], *g.input_shape))).reshape(flat.shape[0], -1).numpy()


def _mismatch(ours: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, str]:
    """(samples whose outputs differ beyond the tolerance, a description of the worst)."""
    scale = max(1.0, float(np.abs(ref[np.isfinite(ref)]).max()) if np.isfinite(ref).any() else 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        overflow = np.isinf(ref) & (ours.astype(np.float32) == ref)  # past float32's range: onnxruntime's inf is right
        bad_nan = np.isnan(ours) != np.isnan(ref)
        err = np.where(np.isnan(ours) | np.isnan(ref) | overflow, 0.0, np.abs(ours - ref)) / scale
    rows = (err > TOL).any(axis=1) | bad_nan.any(axis=1)
    return rows, f"max error {float(err.max()):.3g} × output scale {scale:.3g} in {int(rows.sum())}/{len(rows)} samples"


def _inside_ibp(graph, point: np.ndarray, exact: np.ndarray, ours: np.ndarray) -> bool:
    """Whether the exact outputs and the float64 IR's lie in IBP's enclosure on the zero-width box at `point`."""
    if graph is None:
        return False
    wide = graph.copy(dtype=torch.float64)
    t = torch.from_numpy(np.asarray(point, dtype=np.float64)).reshape((1, *wide.input_shape))
    k = wide.num_classes
    lb = METHODS["ibp"](wide, InputBox(t, t.clone()), identity_spec(k, 1, torch.float64)).lower[0].detach().numpy()
    lo, hi = lb[:k], -lb[k:]
    return all(bool(np.all((lo <= v) & (v <= hi))) for v in (exact.astype(np.float64), ours.reshape(-1)))


def _compare(graph, x: np.ndarray, ref: np.ndarray, steps: bool, path: Path) -> str:
    """'' when the IR (float64) matches onnxruntime. Past a discontinuity (steps) float32 and float64 may round to
    either side, so there a sample differs only when the IR in float32 differs from onnxruntime too; and a sample
    where the float64 IR agrees with the exact value (the oracle) is onnxruntime's float32 error (cos of 1e5)."""
    ours = _ir(graph.copy(dtype=torch.float64), x)
    if ours.shape != ref.shape:
        return f"output shape: IR {ours.shape} vs onnxruntime {ref.shape}"
    rows, msg = _mismatch(ours, ref)
    if steps and rows.any():
        with torch.no_grad():
            ours32 = graph.copy(dtype=torch.float32)(torch.from_numpy(x).float().reshape((x.shape[0], *graph.input_shape)))
        rows &= _mismatch(ours32.reshape(x.shape[0], -1).double().numpy(), ref)[0]
    if rows.any() and _matches_exact(path, x[rows], ours[rows], graph):
        return ""
    return msg if rows.any() else ""


def _matches_exact(path: Path, x: np.ndarray, ours: np.ndarray, graph=None) -> bool:
    """Whether the float64 IR's outputs at these points agree with the stored model's exact values: within 1e-9
    (relative), or — an ill-conditioned graph (fmod of 3.4e7 by 0.6), where float64's own rounding moves the
    result by more — with both the exact value and the float64 output inside IBP's enclosure at the point (False
    where the oracle cannot evaluate the model)."""
    try:
        from exact_onnx import ExactOnnx, midpoints

        ex = ExactOnnx(onnx.load(str(path)))
        shapes = ex.input_shapes()
        for p, o in zip(x, ours):
            feeds, at = [], 0
            for s in shapes:
                feeds.append(p[at:at + math.prod(s)].reshape(s))
                at += math.prod(s)
            exact = np.concatenate([midpoints(np.asarray(v, dtype=object).reshape(-1)) for v in ex.run(feeds)])
            if np.abs(exact - o.reshape(-1)).max() > 1e-9 * max(1.0, float(np.abs(exact).max())) and not _inside_ibp(graph, p, exact, o):
                return False
        return True
    except Exception:  # the oracle lacks an op, or cannot decide a step
        return False


def check(case: Case, path: Path, seed: int) -> Outcome:
    rng = np.random.default_rng([seed, case.index, 1])
    gen = torch.Generator().manual_seed(seed * 100_003 + case.index)
    steps = bool(STEP_OPS & set(case.ops))
    try:
        g, raw = load_model(str(path)), load_model(str(path), simplified=False)
    except ModelLoadError as e:
        return Outcome(case, "refused", refusal_reason(e), str(e))
    except Exception as e:
        return Outcome(case, "failure", "internal error at load", f"{type(e).__name__}: {e}")
    o = _checks(case, path, g, raw, rng, gen, steps)
    o.note = getattr(g.meta, "note", "")
    return o


def _checks(case: Case, path: Path, g, raw, rng: np.random.Generator, gen: torch.Generator, steps: bool) -> Outcome:
    stage, cleared = "onnxruntime comparison", 0
    try:
        ref_model = OrtModel(path, per_sample=not g.meta.batched)  # read whole: the model on one sample at a time
        total = sum(ref_model.sizes)
        if math.prod(g.input_shape) != total:
            return Outcome(case, "failure", "input size", f"IR input {g.input_shape} for {total} model inputs")
        outs = ref_model.sess.get_outputs()
        if len(outs) == 1 and all(isinstance(d, int) for d in outs[0].shape[1:]):  # the IR keeps the output's shape
            want = tuple(outs[0].shape[1:]) if g.meta.batched else (1, *outs[0].shape[1:])
            if tuple(g.output_shape) != want:
                return Outcome(case, "failure", "output shape", f"IR output per sample {tuple(g.output_shape)}, the model's {want}")
        x = (rng.standard_normal((8, total)) * rng.choice([0.5, 1.0, 2.0])).astype(np.float32).astype(np.float64)
        ref = ref_model(x)
        for name, graph in (("simplified", g), ("unsimplified", raw)):
            if msg := _compare(graph, x, ref, steps, path):
                return Outcome(case, "failure", f"mismatch vs onnxruntime ({name})", msg)
        g64 = g.copy(dtype=torch.float64)
        centre = torch.from_numpy(x[:1]).reshape((1, *g.input_shape))
        radius = float(rng.choice([0.01, 0.1, 0.3, 0.6])) * torch.from_numpy(rng.uniform(0, 1, (1, *g.input_shape)))
        lo, hi = centre - radius, centre + radius
        points = sample_box(lo, hi, SAMPLES, gen)[0]
        flat = points.reshape(SAMPLES, -1).numpy()
        ir_vals, ort_vals = _ir(g64, flat), ref_model(flat.astype(np.float32).astype(np.float64))
        k = g.num_classes
        for method in ("ibp", "crown"):
            stage = method
            try:
                lb = METHODS[method](g64, InputBox(lo, hi), identity_spec(k, 1, torch.float64)).lower.detach()
            except SrpAuditError as e:
                return Outcome(case, "refused", f"bounds ({method}): {refusal_reason(e).split(': ', 1)[1]}", str(e))
            low, up = lb[0, :k].numpy(), -lb[0, k:].numpy()
            if np.isnan(low).any() or np.isnan(up).any():
                return Outcome(case, "failure", f"NaN bound ({method})", f"lower {low}, upper {up}")
            fin = np.isfinite(ir_vals)
            gap = np.where(fin, np.maximum(low - ir_vals, ir_vals - up), -np.inf)
            if (gap > 0).any():
                i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
                verdict = exact_verdict(case.model, flat[np.flatnonzero((gap > 0).any(axis=1))[:4]], low, up)
                if verdict != "cleared":
                    return Outcome(case, "failure", f"unsound {method} (float64 IR)",
                                   f"output {j} = {ir_vals[i, j]!r} at sample {i} outside [{low[j]!r}, {up[j]!r}] by {gap[i, j]:.3g}; "
                                   f"exact oracle: {verdict}")
                cleared += 1
            if steps:  # onnxruntime's float32 may round past a step the exact network does not reach
                continue
            scale = max(1.0, float(np.abs(ir_vals[fin]).max()) if fin.any() else 1.0)
            gap = np.where(np.isfinite(ort_vals), np.maximum(low - ort_vals, ort_vals - up), -np.inf) / scale
            if (gap > TOL).any():
                i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
                return Outcome(case, "failure", f"unsound {method} (onnxruntime)",
                               f"output {j} = {ort_vals[i, j]!r} at sample {i} outside [{low[j]!r}, {up[j]!r}] by {gap[i, j]:.3g} × {scale:.3g}")
        return Outcome(case, "ok", "cleared by the exact oracle" if cleared else "")
    except Exception as e:
        return Outcome(case, "failure", f"internal error ({stage})", f"{type(e).__name__}: {str(e)[:300]}")


def exact_verdict(model: onnx.ModelProto, points: np.ndarray, low: np.ndarray, up: np.ndarray) -> str:
    """How the exact outputs of `model` at these (flat) points sit in [low, up]: 'cleared' (all inside: the float64
    IR's own rounding crossed the bound), 'confirmed …' (some proven outside), or why the oracle cannot tell."""
    try:
        from exact_onnx import ExactOnnx, enclosure

        ex = ExactOnnx(model)
        shapes = ex.input_shapes()
        for p in points:
            feeds, at = [], 0
            for s in shapes:
                feeds.append(p[at:at + math.prod(s)].reshape(s))
                at += math.prod(s)
            balls = np.concatenate([np.asarray(o, dtype=object).reshape(-1) for o in ex.run(feeds)])
            enc = enclosure(balls, low, up)
            if enc.disjoint.any():
                return f"confirmed (exact value proven outside the bounds: {enc.summary()})"
            if not enc.ok:
                return f"unconfirmed (the exact ball straddles a bound: {enc.summary()})"
        return "cleared"
    except Exception as e:  # the oracle lacks an op, or cannot decide a step
        return f"cannot tell ({type(e).__name__}: {str(e)[:120]})"
