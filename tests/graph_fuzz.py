"""Generated-model fuzz: random but valid ONNX graphs over every op the loader maps on the model's data (with
shape-arithmetic chains through the constant folders), across opsets 11–21, and torch exports of random small
module stacks (both exporters). Each model is loaded with `load_model` and checked (graph_fuzz_check.py):

(a) against onnxruntime on random inputs (the IR in float64 on the stored float32 weights: relative tolerance 1e-4
    of max(1, output scale)), simplified and unsimplified, and the IR's output shape against the model's;
(b) for sampling soundness: IBP and CROWN bounds over a small box around a random point contain the outputs at
    sampled points (corners included), evaluated by the float64 IR with no tolerance (a violation is re-evaluated
    by the exact arb oracle, tests/exact_onnx.py, and cleared only when the exact value lies inside) and by
    onnxruntime (float32) within the same tolerance. Past a discontinuous op (Floor, Round, ArgMax, comparisons…)
    float32 may round to the other side of a step: there a sample differs from onnxruntime only if the IR in float32
    differs too, and onnxruntime's values are not checked against the bounds.

A `ModelLoadError` (`UnsupportedOpError` included) at load, or an `SrpAuditError` from a bound method, is a refusal
(counted by reason); any other exception, a mismatch or a sampled value outside the bounds is a failure. Upsample is
never generated: it is deprecated from opset 10, so no valid model of opsets 11–21 holds it.

    python tests/graph_fuzz.py --seed 0 --count 300 [--out DIR] [--only onnx|torch] [--index N ...]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: the helpers beside this file
    sys.path.insert(0, str(HERE))

import graph_fuzz_discrete  # noqa: E402, F401  (each registers its generators)
import graph_fuzz_layout  # noqa: E402, F401
import graph_fuzz_more  # noqa: E402, F401
import graph_fuzz_nn  # noqa: E402, F401
import graph_fuzz_onnx as gfo  # noqa: E402
import graph_fuzz_shape  # noqa: E402, F401
import graph_fuzz_torch as gft  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from graph_fuzz_check import Case, Outcome, check  # noqa: E402

from srp_audit.formats.onnx_const import FOLDERS  # noqa: E402
from srp_audit.formats.onnx_read import supported_onnx_ops  # noqa: E402

SPECS = sorted(gfo.REG)


@dataclass
class Summary:
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)  # generated graphs the checker or onnxruntime rejected (retried)
    seconds: float = 0.0

    def of(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def failures(self) -> list[Outcome]:
        return self.of("failure")


# ---------------------------------------------------------------------------------------------- generation


def _shape(rng: np.random.Generator, r: int) -> tuple[int, ...]:
    while True:
        s = (int(rng.integers(1, 5)),) + tuple(int(v) for v in rng.integers(2, 7, r - 1)) if r == 3 else \
            tuple(int(v) for v in rng.integers(1, 9 if r == 1 else 6, r))
        if math.prod(s) <= 64 and (r != 1 or s[0] >= 2):
            return s


def _applicable(spec: gfo.Spec, b: gfo.Builder, x: gfo.V) -> bool:
    return spec.since <= b.opset <= spec.until and (spec.ranks is None or len(x.shape) in spec.ranks)


def _step(b: gfo.Builder, x: gfo.V, spec: gfo.Spec | None) -> gfo.V:
    """One generator applied to x (the given one, else a random applicable one), its output shape from onnxruntime;
    a step onnxruntime rejects, that grows too large or drops every sample axis is rolled back and tried again."""
    for _ in range(4 if spec else 12):
        s = spec or b.rng.choice([gfo.REG[n] for n in SPECS if _applicable(gfo.REG[n], b, x)])
        snap = b.snapshot()
        try:
            v = s.fn(b, x)
            shape = b.probe(v.name) if v is not None else ()
            if v is not None and shape and 0 not in shape and math.prod(shape) <= gfo.MAX_VALUES:
                return gfo.V(v.name, shape, v.pos)
        except Exception:  # an invalid step: roll back and try again
            pass
        b.restore(snap)
    raise ValueError(f"no valid step ({spec.name if spec else 'random'})")


def onnx_case(seed: int, index: int, tries: int = 40, rejected: Counter | None = None) -> Case:
    """A random valid ONNX graph whose focus is generator `index` mod their number (so every op comes up)."""
    rng = np.random.default_rng([seed, index])
    focus = gfo.REG[SPECS[index % len(SPECS)]]
    for _ in range(tries):
        b = gfo.Builder(rng, int(rng.integers(max(11, focus.since), min(21, focus.until) + 1)), "N" if rng.random() < 0.85 else 1)
        x = gfo.V("x", _shape(rng, int(rng.choice(focus.ranks)) if focus.ranks else int(rng.integers(1, 4))))
        b.inputs.append(x)
        try:
            if rng.random() < 0.1:  # a second data input joins the first
                y = gfo.V("y", x.shape)
                b.inputs.append(y)
                op = b.pick(["Add", "Mul", "Sub", "Concat"])
                x = gfo.V(b.node(op, [x.name, y.name], **({"axis": b.ax(len(x.shape))} if op == "Concat" else {})), ())
                x = gfo.V(x.name, b.probe(x.name))
            n, at = int(rng.integers(1, 7)), int(rng.integers(0, 3))
            values = []
            for i in range(n):
                x = _step(b, x, focus if i == min(at, n - 1) else None)
                values.append(x)
                if len(b.nodes) >= 16:
                    break
            outs = [x] if len(values) < 2 or rng.random() < 0.9 else [values[int(rng.integers(len(values) - 1))], x]
            m = b.model(outs)
            onnx.checker.check_model(m, full_check=True)
            sess = gfo.ort_session(m.SerializeToString())
            n_b = 3 if b.batch == "N" else 1
            sess.run(None, {v.name: rng.standard_normal((n_b, *v.shape)).astype(np.float32) for v in b.inputs})
            note = f"inputs {[('N' if b.batch == 'N' else 1, *v.shape) for v in b.inputs]}, focus {focus.name}"
            return Case(index, "onnx", b.opset, sorted({nd.op_type for nd in m.graph.node}), m, note)
        except Exception as e:  # an invalid graph: count the reason, try again
            if rejected is not None:
                rejected[f"{focus.name}: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"] += 1
    raise RuntimeError(f"no valid graph for generator {focus.name} in {tries} tries")


def make_case(seed: int, index: int, rejected: Counter | None = None) -> Case:
    """Seven in eight cases are generated ONNX graphs; the rest alternate between the two torch exporters."""
    if index % 8 == 7:
        exporter = "torchscript" if (index // 8) % 2 == 0 else "dynamo"
        model, opset, note, error = gft.torch_case(seed, index, exporter)
        ops = sorted({nd.op_type for nd in model.graph.node}) if model is not None else []
        return Case(index, exporter, opset, ops, model, error or note)
    return onnx_case(seed, index, rejected=rejected)


# ---------------------------------------------------------------------------------------------- checks


# ---------------------------------------------------------------------------------------------- driver


def run(seed: int = 0, count: int = 300, out: Path | None = None, only: str = "all", log=None, indices=None) -> Summary:
    """Cases 0..count−1 (or `indices`) of `seed`, each generated, saved, loaded and checked."""
    summary = Summary(seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for index in (range(count) if indices is None else indices):
            if (only == "onnx" and index % 8 == 7) or (only == "torch" and index % 8 != 7):
                continue
            torch.manual_seed(seed * 100_003 + index)
            try:
                case = make_case(seed, index, summary.rejected)
            except RuntimeError as e:
                summary.rejected[f"gave up: {e}"] += 1
                continue
            if case.model is None:
                summary.outcomes.append(Outcome(case, "export-failed", case.note.split(":")[0], case.note))
                continue
            path = Path(tmp) / f"{index}.onnx"
            onnx.save(case.model, str(path))
            o = check(case, path, seed)
            summary.outcomes.append(o)
            if o.status == "failure" and out is not None:
                out.mkdir(parents=True, exist_ok=True)
                onnx.save(case.model, str(out / f"fuzz_{seed}_{index}_{case.source}.onnx"))
            if log:
                log(f"#{index} {case.source} opset {case.opset} {o.status} {o.kind}")
    summary.seconds = time.perf_counter() - t0
    return summary


def report(s: Summary, out: Path | None = None) -> str:
    by_source = Counter(o.case.source for o in s.outcomes)
    lines = [f"graph fuzz, seed {s.seed}: {len(s.outcomes)} graphs ({', '.join(f'{v} {k}' for k, v in sorted(by_source.items()))}) "
             f"in {s.seconds:.1f} s",
             f"  loaded and checked: {len(s.of('ok')) + len(s.failures)} (ok {len(s.of('ok'))}), refused {len(s.of('refused'))}, "
             f"torch export failed {len(s.of('export-failed'))}, FAILURES {len(s.failures)}"]
    for title, status in (("refused, by reason", "refused"), ("torch export failures (not srp-audit's)", "export-failed")):
        counts = Counter(o.kind for o in s.of(status))
        if counts:
            lines.append(f"{title}:")
            lines += [f"  {n:4d}  {k}" for k, n in counts.most_common()]
    cleared = [o for o in s.outcomes if o.kind == "cleared by the exact oracle"]
    if cleared:
        lines.append(f"float64-IR sample outside a bound but the exact value inside (cleared by the arb oracle): "
                     f"{len(cleared)} graphs {[o.case.index for o in cleared]}")
    notes = Counter(re.sub(r"'[^']*'", "'…'", o.note) for o in s.outcomes if o.note)
    if notes:
        lines.append("loaded with a note (checked against onnxruntime one sample at a time):")
        lines += [f"  {n:4d}  {k}" for k, n in notes.most_common()]
    if s.failures:
        lines.append("failures:")
        for o in s.failures:
            c = o.case
            saved = f" [saved {out / f'fuzz_{s.seed}_{c.index}_{c.source}.onnx'}]" if out else ""
            lines.append(f"  #{c.index} {c.source} opset {c.opset} ops {c.ops} ({c.note}): {o.kind}: {o.message}{saved}")
    if len(s.outcomes) < 40:
        return "\n".join(lines)
    seen = {op for o in s.outcomes for op in o.case.ops}
    lines.append(f"supported data ops generated: {len(set(supported_onnx_ops()) & seen)}/{len(supported_onnx_ops())}; never: "
                 f"{sorted(set(supported_onnx_ops()) - seen)}")
    lines.append(f"constant folders generated: {len(set(FOLDERS) & seen)}/{len(FOLDERS)}; never: {sorted(set(FOLDERS) - seen)}")
    if s.rejected:
        lines.append(f"generator retries (graphs the checker or onnxruntime rejected): {sum(s.rejected.values())}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--out", type=Path, default=None, help="save each failing model here")
    p.add_argument("--only", choices=["all", "onnx", "torch"], default="all")
    p.add_argument("--index", type=int, nargs="*", help="only these case numbers (to reproduce one)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--rejections", action="store_true", help="list why generated graphs were rejected and retried")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    s = run(a.seed, a.count, a.out, a.only, log=(lambda m: print(m, flush=True)) if a.verbose else None, indices=a.index)
    print(report(s, a.out))
    if a.rejections:
        print("\n".join(f"  {n:4d}  {k}" for k, n in s.rejected.most_common(40)))
    return 1 if s.failures else 0


if __name__ == "__main__":
    sys.exit(main())
