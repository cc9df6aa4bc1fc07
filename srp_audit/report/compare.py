"""`compare OLD.json NEW.json`: did this change make the model less robust?"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..errors import DataError


@dataclass
class Comparison:
    lines: list[str]
    regressed: bool


def load_report(path: str) -> dict:
    if not os.path.exists(path):
        raise DataError(f"report '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"'{path}' is not a JSON report ({e})") from None
    if not isinstance(doc, dict) or "summary" not in doc or "certified_accuracy" not in doc.get("summary", {}):
        raise DataError(f"'{path}' is not an srp-audit JSON report (no summary.certified_accuracy)")
    return doc


def compare(old: dict, new: dict, tolerance: float = 0.0) -> Comparison:
    """Changes in the headline numbers; a regression is a drop in certified accuracy (at the report's eps and
    at every common sweep eps) or in the median certified radius larger than `tolerance` (absolute)."""
    so, sn = old["summary"], new["summary"]
    lines, regressed = [], False
    if so.get("eps") != sn.get("eps") or so.get("method") != sn.get("method"):
        lines.append(f"note: eps/method differ ({so.get('eps')}/{so.get('method')} → {sn.get('eps')}/{sn.get('method')})")

    def row(name: str, a: float, b: float, pct: bool, gate: bool) -> None:
        nonlocal regressed
        fmt = (lambda v: f"{100 * v:.1f} %") if pct else (lambda v: f"{v:.4f}")
        delta = b - a
        bad = gate and delta < -tolerance
        regressed |= bad
        sign = "+" if delta >= 0 else "−"
        mag = f"{100 * abs(delta):.1f} pp" if pct else f"{abs(delta):.4f}"
        lines.append(f"{name:28s} {fmt(a):>10s} → {fmt(b):>10s}  ({sign}{mag}){'  REGRESSION' if bad else ''}")

    row("clean accuracy", so["clean_accuracy"], sn["clean_accuracy"], True, False)
    row(f"certified accuracy @ {sn.get('eps')}", so["certified_accuracy"], sn["certified_accuracy"], True, True)
    if "median_certified_radius" in so and "median_certified_radius" in sn and so.get("radius_search", True) and sn.get("radius_search", True):
        row("median certified radius", so["median_certified_radius"], sn["median_certified_radius"], False, True)
    old_sweep = {r["eps"]: r for r in old.get("sweep", [])}
    for r in new.get("sweep", []):
        if r["eps"] in old_sweep:
            row(f"certified accuracy @ {r['eps']:g}", old_sweep[r["eps"]]["certified_accuracy"], r["certified_accuracy"], True, True)
    lost = _lost_samples(old, new)
    if lost:
        lines.append(f"samples certified before but not now: {', '.join(map(str, lost[:20]))}{' …' if len(lost) > 20 else ''}")
    lines.append("regression beyond tolerance" if regressed else f"no regression beyond tolerance {tolerance:g}")
    return Comparison(lines, regressed)


def _lost_samples(old: dict, new: dict) -> list[int]:
    before = {s["index"]: s["verdict"] for s in old.get("samples", [])}
    return [s["index"] for s in new.get("samples", []) if before.get(s["index"]) == "verified" and s["verdict"] != "verified"]
