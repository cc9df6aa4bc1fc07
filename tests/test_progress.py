"""Progress of long runs: CROWN's layer-by-layer refinement reports the share of its estimated work done, and the
CLI's progress line turns batches and that share into an estimate of the time left."""

from __future__ import annotations

import torch
from conftest import FIXTURES

from cli.progress import ProgressBar
from srp_audit.bounds import METHODS
from srp_audit.bounds.progress import reporting
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.spec import linf_ball, margin_spec


def _bounds(method: str) -> list[float]:
    g = load_model(str(FIXTURES / "mnist_resnet.onnx")).copy(dtype=torch.float64).eval()
    s = load_samples(str(FIXTURES / "mnist_resnet.samples.npz"), g.input_shape, g.num_classes)
    seen: list[float] = []
    with reporting(seen.append), torch.no_grad():
        METHODS[method](g, linf_ball(s.x[:2].double(), 0.005, (0.0, 1.0)), margin_spec(s.y[:2], g.num_classes))
    return seen


def test_crown_reports_its_refinement_until_done() -> None:
    seen = _bounds("crown")
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] == 1.0 and seen[0] > 0


def test_passes_without_a_layer_by_layer_refinement_report_nothing() -> None:
    assert _bounds("ibp") == [] and _bounds("crown-ibp") == []


def test_the_progress_line_estimates_the_time_left(capsys) -> None:
    bar = ProgressBar("certify", enabled=True)
    bar(2, 8)
    err = capsys.readouterr().err
    assert "2/8 samples" in err and "left" in err
    bar.within(0.25)
    bar.within(0.5)
    err = capsys.readouterr().err
    assert "CROWN pass 50%" in err and "left in it" in err
    bar.close()

