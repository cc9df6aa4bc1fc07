"""`compare OLD.json NEW.json`: did this change make the model less robust?"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..errors import DataError, UsageError

READABLE_SCHEMAS = (2, 3)  # version 2 reports are all L∞
MAX_REPORT_BYTES = 512 << 20


@dataclass
class Comparison:
    lines: list[str]
    regressed: bool


def load_report(path: str) -> dict:
    if not os.path.exists(path):
        raise DataError(f"report '{path}' does not exist")
    if os.path.getsize(path) > MAX_REPORT_BYTES:
        raise DataError(f"'{path}' is {os.path.getsize(path)} bytes, too large for an srp-audit JSON report")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"'{path}' is not a JSON report ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("summary"), dict) or "certified_accuracy" not in doc["summary"]:
        raise DataError(f"'{path}' is not an srp-audit JSON report (no summary.certified_accuracy)")
    version = doc.get("schema_version")
    if version not in READABLE_SCHEMAS:
        raise DataError(f"'{path}' has report schema_version {version!r}; this srp-audit reads versions "
                        f"{', '.join(map(str, READABLE_SCHEMAS))}: re-create the report with this version")
    problem = _value_problem(doc)
    if problem:
        raise DataError(f"'{path}' is not a valid srp-audit JSON report ({problem}): re-create it with certify")
    return doc


def _share(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0  # NaN fails both


def _value_problem(doc: dict) -> str | None:
    """What is wrong with the values the comparison reads (None: nothing): shares in [0, 1], a finite radius
    ≥ 0, sweep rows and samples of the right form — a NaN accuracy must not pass a gate."""
    s = doc["summary"]
    for key in ("clean_accuracy", "certified_accuracy"):
        if not _share(s.get(key)):
            return f"summary.{key} is {s.get(key)!r}, not a share in [0, 1]"
    r = s.get("median_certified_radius")
    if r is not None and not (isinstance(r, (int, float)) and not isinstance(r, bool) and 0.0 <= r < float("inf")):
        return f"summary.median_certified_radius is {r!r}, not a finite radius ≥ 0"
    if not isinstance(doc.get("run", {}), dict):
        return "run is not an object"
    sweep, samples = doc.get("sweep", []), doc.get("samples", [])
    if not isinstance(sweep, list) or any(not isinstance(x, dict) or not isinstance(x.get("eps"), (int, float))
                                          or not _share(x.get("certified_accuracy")) for x in sweep):
        return "sweep is not a list of rows with eps and a certified_accuracy in [0, 1]"
    if not isinstance(samples, list) or any(not isinstance(x, dict) or not isinstance(x.get("index"), int)
                                            or not isinstance(x.get("verdict"), str) for x in samples):
        return "samples is not a list of rows with an integer index and a verdict"
    return None


def incomparable(old: dict, new: dict) -> str | None:
    """Why two reports cannot gate each other (None: they can): different eps, or different data."""
    eo, en = old["summary"].get("eps"), new["summary"].get("eps")
    if eo != en:
        return f"the reports are at different eps ({eo} vs {en}): certify both at the same --eps"
    no, nn = old["summary"].get("norm", "inf"), new["summary"].get("norm", "inf")
    if no != nn:
        return f"the reports use different norms (L{no} vs L{nn}): certify both with the same --norm"
    do, dn = old.get("run", {}).get("data_sha256"), new.get("run", {}).get("data_sha256")
    if do and dn and do != dn:
        return "the reports were made on different data (data_sha256 differs): certify both on the same --data"
    if bool(do) != bool(dn):
        return "only one report records its data (data_sha256); certify both with this version of srp-audit"
    so, sn = old["summary"].get("samples"), new["summary"].get("samples")
    if so != sn:
        return f"the reports cover different numbers of samples ({so} vs {sn}): use the same --data and --limit"
    return None


def compare(old: dict, new: dict, tolerance: float = 0.0) -> Comparison:
    """Changes in the headline numbers; a regression is a drop in certified accuracy (at the report's eps and
    at every common sweep eps) or in the median certified radius larger than `tolerance` (absolute)."""
    reason = incomparable(old, new)
    if reason:
        raise UsageError(f"cannot compare: {reason}")
    so, sn = old["summary"], new["summary"]
    lines, regressed = [], False
    if so.get("method") != sn.get("method"):
        lines.append(f"note: the bound methods differ ({so.get('method')} → {sn.get('method')})")
    budgets = [tuple(r.get("run", {}).get(k) for k in ("bab_domains", "bab_time")) for r in (old, new)]
    if budgets[0] != budgets[1] and None not in budgets[0] + budgets[1]:
        lines.append(f"note: the branch-and-bound budgets differ (--bab-domains/--bab-time {budgets[0][0]}/{budgets[0][1]} "
                     f"→ {budgets[1][0]}/{budgets[1][1]}): auto proves more with more")

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
    if (so.get("median_certified_radius") is not None and sn.get("median_certified_radius") is not None
            and so.get("radius_search", True) and sn.get("radius_search", True)):
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
