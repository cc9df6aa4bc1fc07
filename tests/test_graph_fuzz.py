"""Generated-model fuzz (tests/graph_fuzz.py): random valid ONNX graphs over every op the loader maps, and torch
exports (both exporters) of random module stacks, each loaded and checked against onnxruntime and for sampling
soundness of IBP and CROWN. A handful by default, a few hundred in the slow run; a refusal with a clear
`ModelLoadError` is fine, a failure is not (`python tests/graph_fuzz.py --seed 0 --count 300 --out DIR` reproduces
a run and saves the failing models)."""

from __future__ import annotations

import pytest
from graph_fuzz import report, run

QUICK = [0, 1, 2, 3, 4, 5, 7, 15]  # six generated ONNX graphs, one TorchScript export, one dynamo export


def test_generated_models_quick() -> None:
    s = run(seed=0, indices=QUICK)
    assert len(s.outcomes) == len(QUICK)
    assert {o.case.source for o in s.outcomes} == {"onnx", "torchscript", "dynamo"}
    assert not s.failures, report(s)


@pytest.mark.slow
def test_generated_models_many() -> None:
    s = run(seed=0, count=300)
    assert len(s.outcomes) >= 290
    assert not s.failures, report(s)
