"""A self-contained HTML report: summary, certified accuracy vs eps, radius histogram (inline SVG), samples."""

from __future__ import annotations

from html import escape

from ..certify import CertifyResult
from .summary import class_rows, sweep_rows
from .svg import radius_histogram, sweep_curve
from .text import SAMPLE_HEADERS, sample_rows, summary_rows, title

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}.verified{color:#2a7a2a}
.falsified{color:#b52a2a}.unknown{color:#8a6d00}.charts{display:flex;gap:2em;flex-wrap:wrap}"""


def _table(headers: list[str], rows: list[list], verdict_col: int | None = None) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for j, v in enumerate(r):
            cls = f' class="{escape(str(v))}"' if j == verdict_col else ""
            cells.append(f"<td{cls}>{escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def as_html(result: CertifyResult, model: str, per_sample: bool = True, by_class: bool = False) -> str:
    radii = [s.certified_radius for s in result.samples]
    points = [(r["eps"], r["certified_accuracy"]) for r in sweep_rows(result)] or [(result.options.eps, result.certified_accuracy)]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>srp-audit report</title><style>{STYLE}</style></head><body>",
             f"<h1>{escape(title(result, model))}</h1>", _table(["metric", "value"], [list(r) for r in summary_rows(result)]),
             f"<div class='charts'>{sweep_curve(points, radii)}{radius_histogram(radii)}</div>"]
    if result.options.sweep:
        parts.append("<h2>Certified accuracy vs eps</h2>")
        parts.append(_table(["eps", "certified", "95 % CI", "verified", "falsified", "unknown"],
                            [[f"{r['eps']:g}", f"{100 * r['certified_accuracy']:.1f} %",
                              f"[{100 * r['certified_accuracy_ci95'][0]:.1f}, {100 * r['certified_accuracy_ci95'][1]:.1f}]",
                              r["verified"], r["falsified"], r["unknown"]] for r in sweep_rows(result)]))
    if by_class:
        parts.append("<h2>Per class</h2>")
        parts.append(_table(["class", "samples", "clean", "certified", "mean radius"],
                            [[r["label"], r["samples"], f"{100 * r['clean_accuracy']:.1f} %", f"{100 * r['certified_accuracy']:.1f} %",
                              f"{r['mean_certified_radius']:.4f}"] for r in class_rows(result)]))
    if per_sample:
        parts.append("<h2>Samples</h2>")
        parts.append(_table(SAMPLE_HEADERS, sample_rows(result), verdict_col=3))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
