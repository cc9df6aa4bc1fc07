"""The JSON report: a versioned document CI scripts can rely on (docs/report-schema.md)."""

from __future__ import annotations

import json
import math
from typing import Any

from .. import __version__
from ..certify import CertifyResult
from .summary import class_rows, summary, sweep_rows

SCHEMA_VERSION = 3  # 3: the norm of the ball (run.norm, summary.norm)


def as_dict(result: CertifyResult, model: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    o = result.options
    run = {"tool_version": __version__, "model": model, "method": o.method, "device": result.device, "seed": o.seed,
           "eps": o.eps, "norm": o.norm, "sweep": list(o.sweep), "domain": list(o.domain), "radius_search": o.radius,
           "radius_tol": o.radius_tol, "attack_steps": o.attack_steps, "attack_restarts": o.attack_restarts,
           "attack_early_stop": o.attack_early_stop, "bab_domains": o.bab_domains, "bab_time": o.bab_time,
           "wall_time_s": result.wall_time}
    run.update(meta or {})
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "srp-audit", "version": __version__},
        "run": run,
        "summary": summary(result),
        "sweep": sweep_rows(result),
        "by_class": class_rows(result),
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
                "sweep_verdicts": list(s.sweep_verdicts),
            }
            for s in result.samples
        ],
    }


def as_json(result: CertifyResult, model: str, meta: dict[str, Any] | None = None) -> str:
    return json.dumps(as_dict(result, model, meta), indent=2) + "\n"
