"""The op contract: every registered op has a node, loader mappings (ONNX and ATen, checked by a round trip
through our own writer and readers), an IBP rule, a CROWN rule, a SingleProp rule (or an explicit "not
trainable" marker) and a sampling soundness case. The test names what each op lacks."""

from __future__ import annotations

import os

import pytest
import torch
from soundness import op_graphs

from srp_audit import ops
from srp_audit.formats.aten_read import graph_from_exported
from srp_audit.formats.onnx_read import load_onnx
from srp_audit.formats.onnx_write import save_onnx
from srp_audit.ir.graph import Graph

CASES = op_graphs(0)
CASE_OF = {}
for _name, _graph in CASES.items():
    CASE_OF.setdefault(type(_graph.node(_graph.output)), _graph)


def _reloaded_holds(op: type, graph: Graph, back: Graph) -> str | None:
    """None when `back` computes what `graph` does and keeps the op (or the op it is a special case of)."""
    if not any(issubclass(op, type(n)) for _, n, _ in back.items()):
        return f"reads back without a {op.__name__} node ({[n.op for _, n, _ in back.items()]})"
    x = torch.randn((3,) + graph.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.allclose(back(x), graph(x), rtol=1e-5, atol=1e-5):
            return "reads back computing something else"
    return None


def _missing(op: type, tmp: str) -> list[str]:
    missing = [f"no {method} rule" for method in ("ibp", "crown") if not op.supports(method)]
    if not op.supports("singleprop") and op.trainable:
        missing.append("no singleprop rule (or trainable = False with a reason)")
    graph = CASE_OF.get(op)
    if graph is None:
        return [*missing, "no sampling case in tests/soundness.py::op_graphs"]
    path = os.path.join(tmp, f"{op.__name__}.onnx")
    try:
        save_onnx(graph, path)
        problem = _reloaded_holds(op, graph, load_onnx(path))
    except Exception as e:  # a missing exporter or reader mapping
        problem = f"{type(e).__name__}: {e}"
    if problem:
        missing.append(f"ONNX export/read: {problem}")
    try:
        module = graph.copy(dtype=torch.float32).eval()
        ep = torch.export.export(module, (torch.zeros((2,) + graph.input_shape),),
                                 dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
        problem = _reloaded_holds(op, graph, graph_from_exported(ep, op.__name__))
    except Exception as e:
        problem = f"{type(e).__name__}: {e}"
    if problem:
        missing.append(f"ATen read: {problem}")
    return missing


@pytest.mark.parametrize("op", ops.ALL_OPS, ids=lambda c: c.__name__)
def test_op_fulfils_the_contract(op: type, tmp_path) -> None:
    missing = _missing(op, str(tmp_path))
    assert not missing, f"op {op.__name__}: " + "; ".join(missing)


def test_registry_finds_every_op_module() -> None:
    """Ops are discovered from the package, not listed: each module's public op classes are registered."""
    import inspect

    found = {cls for module in vars(ops).values() if inspect.ismodule(module) and module.__name__.startswith("srp_audit.ops.")
             for cls in vars(module).values()
             if inspect.isclass(cls) and issubclass(cls, ops.Node) and cls.__module__ == module.__name__ and not cls.__name__.startswith("_")}
    abstract = {cls for cls in found if cls not in ops.ALL_OPS}
    bases = {ops.smooth.SShaped, ops.convex.ConvexIncreasing, ops.convex.Curved, ops.scalar.ScalarActivation, ops.lines.LinesActivation}
    assert abstract <= bases, f"unregistered op classes: {abstract}"


def test_an_op_without_rules_is_named_by_every_driver() -> None:
    """A node type that overrides no hook is refused by each method with the op and node named."""
    from srp_audit.bounds import get_method
    from srp_audit.bounds.singleprop import singleprop
    from srp_audit.errors import BoundMethodError
    from srp_audit.ir.node import Node
    from srp_audit.ir.walk import INPUT
    from srp_audit.spec import InputBox, margin_spec

    class Mystery(Node):
        def forward(self, x):
            return x * 2

    g = Graph((3,), [("m", Mystery(), (INPUT,))], "m").double()
    box = InputBox(torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64))
    spec = margin_spec(torch.tensor([0]), 3)
    for method in ("ibp", "crown-ibp", "crown"):
        with pytest.raises(BoundMethodError, match=r"has no rule for op Mystery \(node m\)"):
            get_method(method)(g, box, spec)
    with pytest.raises(BoundMethodError, match="singleprop.*Mystery"):
        singleprop(g, torch.zeros(1, 3, dtype=torch.float64), 0.1)


def test_inspect_ops_lists_every_op_with_its_support() -> None:
    from click.testing import CliRunner
    from srp_audit_cli.main import main

    r = CliRunner().invoke(main, ["inspect", "--ops"])
    assert r.exit_code == 0, r.output
    for cls in ops.ALL_OPS:
        line = next(ln for ln in r.stdout.splitlines() if ln.split() and ln.split()[0] == cls.__name__)
        assert line.split()[2:5] == ["yes", "yes", "yes"], line
    assert "ONNX operators read" in r.stdout and "ConvTranspose" in r.stdout
