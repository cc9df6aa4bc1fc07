"""Shared test set-up: thread counts, paths to fixtures and to the optional ../shared material."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run and machine (no random seed, no example database): a run's
# verdict never depends on when or where it ran, and a failure reproduces from the test's name alone.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.load_profile("deterministic")

# One pytest process on a 2-core machine: two torch threads. Never more threads than cores, so a parallel
# runner (or a subprocess we start) does not oversubscribe the CPU.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
warnings.filterwarnings("ignore", message=".*torchvision.*")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED = Path(os.environ.get("SRP_AUDIT_SHARED", ROOT.parent / "shared"))
VNNCOMP = SHARED / "benchmarks" / "vnncomp"
FIXTURE_MODELS = ["mnist_mlp", "mnist_cnn", "mnist_resnet"]


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (tests read real data from ../shared)")
    return p


def ort_session(path: str | Path):
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


@pytest.fixture(autouse=True)
def _subnormals_restored():
    """A CLI command run in-process flushes subnormals for the whole process (`perf.tune_process`, for speed);
    each test starts from IEEE arithmetic again, so no test depends on which ran before it."""
    yield
    if np.nextafter(0.0, 1.0) * 1.0 == 0.0:
        torch.set_flush_denormal(False)


@pytest.fixture(scope="session")
def fixture_models():
    from srp_audit.formats import load_model

    return {name: load_model(str(FIXTURES / f"{name}.onnx")) for name in FIXTURE_MODELS}
