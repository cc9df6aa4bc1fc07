"""Small dependency-free SVG charts: certified accuracy vs eps, and the histogram of certified radii."""

from __future__ import annotations

from html import escape

W, H, PAD = 480, 280, 48


def _axes(title: str, xlabel: str, ylabel: str, x_max: float, y_max: float, y_fmt) -> list[str]:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
           f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 12}" y2="{H - PAD}" stroke="#333"/>',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{PAD}" y2="28" stroke="#333"/>',
           f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle">{escape(xlabel)}</text>',
           f'<text x="14" y="{H / 2}" text-anchor="middle" transform="rotate(-90 14 {H / 2})">{escape(ylabel)}</text>']
    for i in range(5):
        fy = i / 4
        y = H - PAD - fy * (H - PAD - 28)
        out.append(f'<line x1="{PAD - 4}" y1="{y:.1f}" x2="{W - 12}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end">{y_fmt(fy * y_max)}</text>')
        x = PAD + fy * (W - 12 - PAD)
        out.append(f'<text x="{x:.1f}" y="{H - PAD + 14}" text-anchor="middle">{fy * x_max:.3g}</text>')
    return out


def sweep_curve(points: list[tuple[float, float]], radii: list[float], title: str = "certified accuracy vs eps") -> str:
    """Certified accuracy against eps: the sweep's points, and the full curve implied by the radii
    (the fraction of samples whose certified radius is at least eps)."""
    x_max = max([p[0] for p in points] + [max(radii, default=0.0), 1e-9]) * 1.05
    out = _axes(title, "eps", "certified accuracy", x_max, 1.0, lambda v: f"{100 * v:.0f}%")

    def sx(x: float) -> float:
        return PAD + x / x_max * (W - 12 - PAD)

    def sy(y: float) -> float:
        return H - PAD - y * (H - PAD - 28)

    if radii:
        n = len(radii)
        xs = sorted(radii)
        path = [f"M{sx(0):.1f},{sy(sum(r >= 0 for r in xs) / n):.1f}"]
        for i, r in enumerate(xs):
            path.append(f"L{sx(r):.1f},{sy((n - i) / n):.1f} L{sx(r):.1f},{sy((n - i - 1) / n):.1f}")
        out.append(f'<path d="{" ".join(path)}" fill="none" stroke="#4a7fb5" stroke-width="1.5"/>')
    for x, y in points:
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="#d9534f"><title>eps {x:g}: {100 * y:.1f} %</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def radius_histogram(radii: list[float], bins: int = 20, title: str = "certified radius per sample") -> str:
    x_max = max(radii, default=0.0) or 1e-3
    counts = [0] * bins
    for r in radii:
        counts[min(bins - 1, int(r / x_max * bins))] += 1
    y_max = max(counts, default=1) or 1
    out = _axes(title, "certified radius", "samples", x_max, y_max, lambda v: f"{v:.0f}")
    bw = (W - 12 - PAD) / bins
    for i, c in enumerate(counts):
        h = c / y_max * (H - PAD - 28)
        out.append(f'<rect x="{PAD + i * bw + 1:.1f}" y="{H - PAD - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" fill="#5cb85c">'
                   f"<title>{c} samples</title></rect>")
    out.append("</svg>")
    return "\n".join(out)
