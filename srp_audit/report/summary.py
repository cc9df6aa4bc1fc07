"""The numbers every report shows: summary, confidence interval, per-eps sweep, per-class breakdown."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import betaincinv

from ..certify import CertifyResult


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for a proportion k/n (audits certify a sample, not the whole distribution)."""
    if n == 0:
        return (0.0, 1.0)
    # the Beta quantiles of the exact (Clopper–Pearson) interval; scipy.special, not scipy.stats, whose import
    # alone took 0.4 s of the demo's wall time
    tail = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, tail))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - tail))
    return (lo, hi)


def norm_label(norm: str) -> str:
    """How reports name the ball: L∞, L2 or L1."""
    return {"inf": "L∞", "2": "L2", "1": "L1"}[norm]


def summary(result: CertifyResult) -> dict[str, Any]:
    """Headline numbers; the keys are part of the JSON contract (docs/report-schema.md)."""
    radii = result.radii()
    o = result.options
    verified = result.count("verified")
    return {
        "samples": result.n,
        "eps": o.eps,
        "norm": o.norm,
        "method": o.method,
        "domain": list(o.domain),
        "clean_accuracy": result.clean_accuracy,
        "certified_accuracy": result.certified_accuracy,
        "certified_accuracy_ci95": list(clopper_pearson(verified, result.n)),
        "verified": verified,
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


def sweep_rows(result: CertifyResult) -> list[dict[str, Any]]:
    rows = result.sweep()
    for r in rows:
        r["certified_accuracy_ci95"] = list(clopper_pearson(r["verified"], result.n))
    return rows


def class_rows(result: CertifyResult) -> list[dict[str, Any]]:
    """Per label: samples, clean and certified accuracy (with its interval), mean certified radius."""
    out = []
    for label in sorted({s.label for s in result.samples}):
        ss = [s for s in result.samples if s.label == label]
        n, v = len(ss), sum(s.verdict == "verified" for s in ss)
        out.append({"label": label, "samples": n, "clean_accuracy": sum(s.prediction == s.label for s in ss) / n,
                    "certified_accuracy": v / n, "certified_accuracy_ci95": list(clopper_pearson(v, n)),
                    "mean_certified_radius": float(np.mean([s.certified_radius for s in ss]))})
    return out


def gate_failures(result: CertifyResult, fail_under: float | None, fail_under_radius: float | None) -> list[str]:
    """Why the CI gates fail (empty: they pass): certified accuracy below `fail_under`, median certified radius
    below `fail_under_radius`."""
    failed = []
    if fail_under is not None and result.certified_accuracy < fail_under:
        failed.append(f"certified accuracy {100 * result.certified_accuracy:.1f} % is below {100 * fail_under:.1f} %")
    median = float(np.median(result.radii())) if result.samples else 0.0
    if fail_under_radius is not None and median < fail_under_radius:
        failed.append(f"median certified radius {median:.4f} is below {fail_under_radius:g}")
    return failed
