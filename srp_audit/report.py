"""Report writers for certification results: text table, markdown and JSON. Each returns a string."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from tabulate import tabulate

from . import __version__
from .certify import CertifyResult

SCHEMA_VERSION = 1


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _radius(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def summary(result: CertifyResult) -> dict[str, Any]:
    """The headline numbers; keys are part of the JSON contract (see docs/report-schema.md)."""
    radii = result.radii()
    o = result.options
    return {
        "samples": result.n,
        "eps": o.eps,
        "method": o.method,
        "domain": list(o.domain),
        "clean_accuracy": result.clean_accuracy,
        "certified_accuracy": result.certified_accuracy,
        "verified": result.count("verified"),
        "falsified": result.count("falsified"),
        "unknown": result.count("unknown"),
        "mean_certified_radius": float(radii.mean()) if radii.size else 0.0,
        "median_certified_radius": float(np.median(radii)) if radii.size else 0.0,
        "certified_by_method": result.method_counts(),
        "mean_unstable_relus": result.mean_unstable(),
        "radius_search": o.radius,
        "radius_tol": o.radius_tol,
        "device": result.device,
        "wall_time_s": result.wall_time,
    }


def _summary_rows(result: CertifyResult) -> list[tuple[str, str]]:
    s = summary(result)
    rows = [
        ("samples", str(s["samples"])),
        ("clean accuracy", _pct(s["clean_accuracy"])),
        ("certified accuracy", f"{_pct(s['certified_accuracy'])}  ({s['verified']})"),
        ("falsified", str(s["falsified"])),
        ("unknown", str(s["unknown"])),
    ]
    by = s["certified_by_method"]
    if by:
        rows.append(("certified by", ", ".join(f"{m} {c}" for m, c in sorted(by.items(), key=lambda kv: -kv[1]))))
    rows.append(("unstable ReLUs / sample", f"{s['mean_unstable_relus']:.1f}  (under IBP at eps; what makes CROWN slow)"))
    if s["radius_search"]:
        rows += [
            ("mean certified radius", f"{s['mean_certified_radius']:.4f}"),
            ("median certified radius", f"{s['median_certified_radius']:.4f}"),
        ]
    rows.append(("wall time", f"{s['wall_time_s']:.2f} s"))
    return rows


def _sample_rows(result: CertifyResult) -> list[list[Any]]:
    return [
        [s.index, s.label, s.prediction, s.verdict, f"{s.certified_radius:.4f}", _radius(s.attack_radius),
         s.method or "", "–" if not math.isfinite(s.bound) else f"{s.bound:+.4f}", s.unstable]
        for s in result.samples
    ]


SAMPLE_HEADERS = ["#", "label", "pred", "verdict", "cert. radius", "attack radius", "method", "bound", "unstable"]


def _title(result: CertifyResult, model: str) -> str:
    o = result.options
    return f"srp-audit certify {model}  eps={o.eps:g}  method={o.method}  domain=[{o.domain[0]:g}, {o.domain[1]:g}]  device={result.device}"


def as_table(result: CertifyResult, model: str, per_sample: bool = False) -> str:
    parts = [_title(result, model), "", tabulate(_summary_rows(result), headers=["metric", "value"], tablefmt="simple")]
    if per_sample:
        parts += ["", tabulate(_sample_rows(result), headers=SAMPLE_HEADERS, tablefmt="simple")]
    return "\n".join(parts) + "\n"


def as_markdown(result: CertifyResult, model: str, per_sample: bool = False) -> str:
    parts = [f"### {_title(result, f'`{model}`')}", "", tabulate(_summary_rows(result), headers=["metric", "value"], tablefmt="github")]
    if per_sample:
        parts += ["", tabulate(_sample_rows(result), headers=SAMPLE_HEADERS, tablefmt="github")]
    return "\n".join(parts) + "\n"


def as_dict(result: CertifyResult, model: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "srp-audit", "version": __version__},
        "model": model,
        "summary": summary(result),
        "samples": [
            {
                "index": s.index,
                "label": s.label,
                "prediction": s.prediction,
                "verdict": s.verdict,
                "certified_radius": s.certified_radius,
                "attack_radius": s.attack_radius,
                "method": s.method,
                "bound": s.bound if math.isfinite(s.bound) else None,
                "unstable_relus": s.unstable,
            }
            for s in result.samples
        ],
    }


def as_json(result: CertifyResult, model: str) -> str:
    return json.dumps(as_dict(result, model), indent=2) + "\n"


FORMATS = {"table": as_table, "markdown": as_markdown}


def render(result: CertifyResult, model: str, fmt: str, per_sample: bool = False) -> str:
    if fmt == "json":
        return as_json(result, model)
    return FORMATS[fmt](result, model, per_sample)
