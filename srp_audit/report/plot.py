"""`--plot FILE`: the sweep curve and the radius histogram as an image. SVG needs nothing extra; PNG needs
matplotlib (`pip install 'srp-audit[plot]'`)."""

from __future__ import annotations

import os

from ..atomic import atomic_path, prepare_output, write_text_atomic
from ..certify import CertifyResult
from ..errors import UsageError
from .summary import sweep_rows
from .svg import radius_histogram, sweep_curve


def check_plot_path(path: str, inputs: tuple[str, ...] = ()) -> None:
    """Before any work: the plot's type is known (.svg, or .png with matplotlib installed) and it can be written."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".svg", ".png"):
        raise UsageError(f"--plot {path!r}: use a .png or .svg file")
    if suffix == ".png":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot FILE.png needs matplotlib: pip install 'srp-audit[plot]' (or write .svg, which needs nothing)") from None
    prepare_output(path, "plot", inputs)


def write_plot(result: CertifyResult, path: str) -> None:
    radii = [s.certified_radius for s in result.samples]
    points = [(r["eps"], r["certified_accuracy"]) for r in sweep_rows(result)] or [(result.options.eps, result.certified_accuracy)]
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".svg":
        curve, hist = sweep_curve(points, radii), radius_histogram(radii)
        body = curve.replace("<svg ", '<svg x="0" ', 1) + hist.replace("<svg ", '<svg x="500" ', 1)
        text = f'<svg xmlns="http://www.w3.org/2000/svg" width="980" height="280">{body}</svg>\n'
        write_text_atomic(path, text)
        return
    if suffix != ".png":
        raise UsageError(f"--plot {path!r}: use a .png or .svg file")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot FILE.png needs matplotlib: pip install 'srp-audit[plot]' (or write .svg, which needs nothing)") from None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    xs = sorted(radii)
    n = max(len(xs), 1)
    a.step([0] + xs, [1.0] + [(n - i - 1) / n for i in range(len(xs))], where="post", label="radius ≥ eps")
    a.scatter([p[0] for p in points], [p[1] for p in points], color="C3", zorder=3, label="sweep")
    a.set_xlabel("eps")
    a.set_ylabel("certified accuracy")
    a.legend()
    b.hist(radii, bins=20, color="C2")
    b.set_xlabel("certified radius")
    b.set_ylabel("samples")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
