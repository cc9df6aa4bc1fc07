"""Which neurons CROWN refines: only those the output depends on (`ir.relevance`), never an op's output whose pass
cannot beat IBP (`bounds.crown.settled`), with relaxations computed once per bound computation
(`Context.relaxation`). The shortcuts must never change what is proved: an entry called irrelevant never moves a
relevant output, and the bounds with the shortcuts are never looser than without them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from arch_zoo import architectures, export
from soundness import deep_graphs, identity_spec, op_graphs

import srp_audit.bounds.crown as crown
import srp_audit.bounds.targets as targets
from srp_audit.formats import load_model
from srp_audit.ir.relevance import relevant_entries
from srp_audit.ir.walk import INPUT, walk_forward
from srp_audit.kernel.backward import Context
from srp_audit.spec import InputBox

OPS = op_graphs(0)


def _random(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.randn((1,) + tuple(shape), generator=gen, dtype=torch.float64) * 2


@pytest.mark.parametrize("case", sorted(OPS))
@pytest.mark.parametrize("seed", range(3))
def test_an_irrelevant_input_entry_never_moves_a_relevant_output(case: str, seed: int) -> None:
    """Per op: for random output masks, every input entry outside `relevant_inputs` can take any value without
    changing an output entry inside the mask (exactly)."""
    graph = OPS[case].double()
    node, ins = graph.node("op"), graph.inputs_of["op"]
    shapes = [graph.shapes[i] for i in ins]
    gen = torch.Generator().manual_seed(seed)
    for trial in range(4):
        mask = torch.rand((1,) + graph.shapes["op"], generator=gen) < (0.15 if trial < 3 else 1.0)
        keep = node.relevant_inputs(mask, shapes)
        assert [tuple(k.shape) for k in keep] == [(1,) + tuple(s) for s in shapes]
        xs = [_random(s, gen) for s in shapes]
        moved = [torch.where(k, x, _random(s, gen)) for k, x, s in zip(keep, xs, shapes)]
        with torch.no_grad():
            y, y2 = node(*xs), node(*moved)
        torch.testing.assert_close(y2[mask], y[mask], rtol=0, atol=0, equal_nan=True,  # Log, Sqrt: NaN off their domain
                                   msg=lambda m: f"{case}: an input entry marked irrelevant changed a relevant output: {m}")


def test_softmax_and_select_narrow_the_relevant_entries() -> None:
    """Not vacuous: a pick reads only what it picks, a softmax entry only its own slice."""
    sm = OPS["Softmax"].node("op")  # axis 1 of (2, 5)
    mask = torch.zeros(1, 2, 5, dtype=torch.bool)
    mask[0, 1, 3] = True
    (keep,) = sm.relevant_inputs(mask, [(2, 5)])
    assert keep[0, 1].all() and not keep[0, 0].any()
    sel = OPS["Select"]
    mask = torch.zeros((1,) + sel.shapes["op"], dtype=torch.bool)
    mask.view(-1)[0] = True
    (keep,) = sel.node("op").relevant_inputs(mask, [sel.input_shape])
    assert int(keep.sum()) == 1


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    module, shape = architectures()["tiny_vit"]
    path = tmp_path_factory.mktemp("vit") / "vit.onnx"
    export(module, shape, "torchscript", path)
    g = load_model(str(path)).eval().double()
    g.requires_grad_(False)
    return g


def _graphs(vit) -> dict:
    return {"tiny_vit": vit, **{k: v.double() for k, v in deep_graphs(0).items()}}


def test_irrelevant_entries_of_any_value_never_move_the_output(vit) -> None:
    """Graph level: overwrite a value's irrelevant entries with noise mid-forward; the output stays the same. On the
    ViT (which classifies from its class token) most entries after attention are irrelevant."""
    gen = torch.Generator().manual_seed(0)
    pruned = 0
    for gname, g in _graphs(vit).items():
        masks = relevant_entries(g)
        x = torch.randn((2,) + g.input_shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            ref = g(x)
            for target in g.order:
                keep = masks[target]
                pruned += int((~keep).sum()) if gname == "tiny_vit" else 0

                def step(name, node, args, target=target, keep=keep):
                    y = node(*args)
                    return torch.where(keep, y, torch.randn(y.shape, generator=gen, dtype=y.dtype) * 10) if name == target else y

                out = walk_forward(g, x, step)
                assert torch.equal(out, ref), f"{gname}: noise at irrelevant entries of {target} moved the output"
        assert masks[INPUT].shape == (1,) + g.input_shape
    assert pruned > 100  # the class-token read prunes four of five tokens after attention


@pytest.mark.parametrize("name", ["tiny_vit", "attention_scores", "softmax_inside", "mlp_sigmoid", "mlp_tanh", "pools_smooth"])
def test_shortcuts_never_loosen_crown(name: str, vit, monkeypatch) -> None:
    """CROWN with relevance masks and settled targets skipped is never looser than CROWN refining every target on
    every entry (beyond 1e-9: the skipped passes would only have returned IBP's bounds minus their rounding), and
    skips something on the ViT."""
    g = _graphs(vit)[name]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((3,) + g.input_shape, generator=gen, dtype=torch.float64)
    box = InputBox(x - 0.01, x + 0.01)
    spec = identity_spec(g.num_classes, 3, torch.float64)
    with torch.no_grad():
        fast = crown.crown_bounds(g, box, spec).lower
        n_fast = len(crown.refine_targets(g))
        monkeypatch.setattr(targets, "settled", lambda *a: False)
        monkeypatch.setattr(crown, "relevant_entries", lambda graph: {k: torch.ones((1,) + graph.shapes[k], dtype=torch.bool) for k in graph.shapes})
        full = crown.crown_bounds(g, box, spec).lower
        n_full = len(crown.refine_targets(g))
    assert bool((fast >= full - 1e-9 * (1 + full.abs())).all()), f"{name}: shortcuts loosened CROWN by {float((full - fast).max()):.2e}"
    if name == "tiny_vit":
        assert n_fast < n_full


def test_relaxations_are_computed_once_and_sliced_for_sample_subsets() -> None:
    g = OPS["Tanh"].double()
    gen = torch.Generator().manual_seed(0)
    lo = torch.randn(6, 7, generator=gen, dtype=torch.float64)
    ctx = Context(g, {INPUT: (lo, lo + 1)})
    calls = []

    def make(l, u):
        calls.append(1)
        return (l * 2, u * 3)

    whole = ctx.relaxation("k", (INPUT,), make)
    part = ctx.subset(2, 5).relaxation("k", (INPUT,), make)
    assert len(calls) == 1 and torch.equal(part[0], whole[0][2:5]) and torch.equal(part[1], whole[1][2:5])
    ctx.bounds[INPUT] = (lo - 1, lo + 1)  # a replaced bound is never served from the old relaxation
    again = ctx.relaxation("k", (INPUT,), make)
    assert len(calls) == 2 and torch.equal(again[0], (lo - 1) * 2)
    sub = ctx.subset(0, 2)
    sub.bounds[INPUT] = (lo[:2] + 5, lo[:2] + 6)  # nor is a subset's own replaced bound
    own = sub.relaxation("k", (INPUT,), make)
    assert len(calls) == 3 and torch.equal(own[0], (lo[:2] + 5) * 2)
    assert np.isfinite(own[1].numpy()).all()
