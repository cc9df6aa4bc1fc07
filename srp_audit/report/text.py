"""Terminal table and markdown renderers."""

from __future__ import annotations

import math
from typing import Any

from tabulate import tabulate

from ..certify import CertifyResult
from .summary import class_rows, norm_label, summary, sweep_rows


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _ci(ci: list[float]) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _radius(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def summary_rows(result: CertifyResult) -> list[tuple[str, str]]:
    s = summary(result)
    rows = [
        ("samples", str(s["samples"])),
        ("clean accuracy", _pct(s["clean_accuracy"])),
        ("certified accuracy", f"{_pct(s['certified_accuracy'])}  ({s['verified']}; 95 % CI {_ci(s['certified_accuracy_ci95'])})"),
        ("falsified", str(s["falsified"])),
        ("unknown", str(s["unknown"])),
    ]
    by = s["certified_by_method"]
    if by:
        rows.append(("certified by", ", ".join(f"{m} {c}" for m, c in sorted(by.items(), key=lambda kv: -kv[1]))))
    rows.append(("unstable ReLUs / sample", f"{s['mean_unstable_relus']:.1f}  (under IBP at eps; what makes CROWN slow)"))
    if s["radius_search"]:
        rows += [("mean certified radius", f"{s['mean_certified_radius']:.4f}"),
                 ("median certified radius", f"{s['median_certified_radius']:.4f}")]
    rows.append(("wall time", f"{s['wall_time_s']:.2f} s"))
    return rows


SAMPLE_HEADERS = ["#", "label", "pred", "verdict", "cert. radius", "attack radius", "method", "bound", "unstable"]


def sample_rows(result: CertifyResult) -> list[list[Any]]:
    return [[s.index, s.label, s.prediction, s.verdict, f"{s.certified_radius:.4f}", _radius(s.attack_radius),
             s.method or "", "–" if not math.isfinite(s.bound) else f"{s.bound:+.4f}", s.unstable]
            for s in result.samples]


def _sweep_table(result: CertifyResult, fmt: str) -> str:
    rows = [[f"{r['eps']:g}", _pct(r["certified_accuracy"]), _ci(r["certified_accuracy_ci95"]), r["verified"], r["falsified"], r["unknown"]]
            for r in sweep_rows(result)]
    return tabulate(rows, headers=["eps", "certified", "95 % CI", "verified", "falsified", "unknown"], tablefmt=fmt)


def _class_table(result: CertifyResult, fmt: str) -> str:
    rows = [[r["label"], r["samples"], _pct(r["clean_accuracy"]), _pct(r["certified_accuracy"]), _ci(r["certified_accuracy_ci95"]),
             f"{r['mean_certified_radius']:.4f}"] for r in class_rows(result)]
    return tabulate(rows, headers=["class", "samples", "clean", "certified", "95 % CI", "mean radius"], tablefmt=fmt)


def title(result: CertifyResult, model: str) -> str:
    o = result.options
    return (f"srp-audit certify {model}  eps={o.eps:g} ({norm_label(o.norm)})  method={o.method}  "
            f"domain=[{o.domain[0]:g}, {o.domain[1]:g}]  device={result.device}")


def as_table(result: CertifyResult, model: str, per_sample: bool = False, by_class: bool = False) -> str:
    parts = [title(result, model), "", tabulate(summary_rows(result), headers=["metric", "value"], tablefmt="simple")]
    if result.options.sweep:
        parts += ["", _sweep_table(result, "simple")]
    if by_class:
        parts += ["", _class_table(result, "simple")]
    if per_sample:
        parts += ["", tabulate(sample_rows(result), headers=SAMPLE_HEADERS, tablefmt="simple")]
    return "\n".join(parts) + "\n"


def as_markdown(result: CertifyResult, model: str, per_sample: bool = False, by_class: bool = False) -> str:
    parts = [f"### {title(result, f'`{model}`')}", "", tabulate(summary_rows(result), headers=["metric", "value"], tablefmt="github")]
    if result.options.sweep:
        parts += ["", "#### Certified accuracy vs eps", "", _sweep_table(result, "github")]
    if by_class:
        parts += ["", "#### Per class", "", _class_table(result, "github")]
    if per_sample:
        parts += ["", "#### Samples", "", tabulate(sample_rows(result), headers=SAMPLE_HEADERS, tablefmt="github")]
    return "\n".join(parts) + "\n"
