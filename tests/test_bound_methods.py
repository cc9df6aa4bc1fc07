"""Bound methods as objects: the cascade follows their declared ranks, every declared capability matches what the
method does, and no driver outside `srp_audit.bounds` branches on a method's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from soundness import identity_spec, random_mlp

from srp_audit.bounds import (
    ALPHA_CROWN,
    CASCADE,
    CASCADE_METHODS,
    CROWN,
    IBP,
    METHODS,
    BoundMethod,
    as_methods,
    get_method,
)
from srp_audit.certify import chosen_methods
from srp_audit.errors import UsageError
from srp_audit.ir.graph import INPUT
from srp_audit.spec import NORMS, InputBox

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("ibp", "crown-ibp", "crown", "alpha-crown")


def _problem(seed: int = 0, r: float = 0.15) -> tuple:
    graph = random_mlp(seed, (4, 12, 12, 3))
    gen = torch.Generator().manual_seed(seed)
    c = torch.rand(2, 4, generator=gen, dtype=torch.float64)
    return graph, InputBox(c - r, c + r), identity_spec(graph.num_classes, 2, torch.float64)


def test_cascade_is_the_declared_ranks_cheapest_first() -> None:
    ranks = [m.rank for m in METHODS.values()]
    assert len(set(ranks)) == len(ranks), "two methods share a place in the cascade"
    assert CASCADE_METHODS == tuple(sorted(METHODS.values(), key=lambda m: m.rank))
    assert CASCADE == tuple(m.name for m in CASCADE_METHODS) == tuple(METHODS)
    assert CASCADE == NAMES  # the user-facing order (`--method auto`, reports) is unchanged


def test_get_method_and_names() -> None:
    for name in NAMES:
        assert get_method(name) is METHODS[name] and get_method(name).name == name
        assert isinstance(get_method(name), BoundMethod)
    with pytest.raises(UsageError, match="unknown bound method 'nope'; choose one of ibp, crown-ibp, crown, alpha-crown"):
        get_method("nope")
    assert as_methods(["crown", ALPHA_CROWN]) == (CROWN, ALPHA_CROWN)
    with pytest.raises(UsageError):
        as_methods(["crown", "beta-crown"])


@pytest.mark.parametrize("method", CASCADE_METHODS, ids=CASCADE)
def test_linear_methods_return_a_relaxation_and_others_do_not(method: BoundMethod) -> None:
    graph, box, spec = _problem()
    res = method(graph, box, spec, alpha_iters=3)
    assert res.lower.shape == (2, spec.C.shape[1])
    assert (res.crown is not None) == method.linear
    claim = method.claim_bounds(graph, box, spec, alpha_iters=3)
    assert (claim.ctx is not None) == method.linear
    if not method.optimised:  # without widening, a claim is the method's own bound
        assert torch.equal(claim.lower, res.lower)


def test_capabilities_that_reuse_a_linear_pass_are_declared_on_linear_methods() -> None:
    for m in CASCADE_METHODS:
        if m.salvageable or m.refines_intermediates or m.takes_prior:
            assert m.linear, m.name
        if m.reuses is not None:
            assert m.reuses.linear and m.reuses.rank < m.rank, "a method reuses a cheaper linear one, run before it"
        assert m.norms and m.norms <= set(NORMS)
    assert IBP.norms == {"inf"} and "2" in CROWN.norms  # the certificate format carries IBP's L∞ proofs only


@pytest.mark.parametrize("seed", range(3))
def test_a_reusing_method_is_as_tight_from_the_reused_result(seed: int) -> None:
    """alpha-CROWN handed CROWN's result starts from it: never looser than CROWN, nor than itself from scratch
    (both optimise from the same CROWN bounds)."""
    for m in (m for m in CASCADE_METHODS if m.reuses is not None):
        graph, box, spec = _problem(seed, 0.3)
        base = m.reuses(graph, box, spec)
        with_base = m(graph, box, spec, alpha_iters=5, base=base.crown).lower.detach()
        alone = m(graph, box, spec, alpha_iters=5).lower.detach()
        assert (with_base >= base.lower - 1e-9).all()
        assert torch.allclose(with_base, alone, atol=1e-9)


def test_prior_bounds_are_used_exactly_by_the_methods_that_take_them() -> None:
    """A method that `takes_prior` keeps every node's bounds inside a prior from a larger ball; the others ignore
    one, even an unsound one."""
    graph, box, spec = _problem(1, 0.1)
    big = InputBox(box.lower - 0.05, box.upper + 0.05)
    prior = {n: b for n, b in CROWN(graph, big, spec).crown.ctx.bounds.items() if n != INPUT}
    bogus = {n: (lo + 1.0, hi - 1.0) for n, (lo, hi) in prior.items()}
    for m in (m for m in CASCADE_METHODS if m.linear and not m.optimised):
        plain = m(graph, box, spec).lower
        if m.takes_prior:
            res = m(graph, box, spec, prior=prior).crown
            for n, (lo, hi) in res.ctx.bounds.items():
                if n in prior:
                    assert (lo >= prior[n][0]).all() and (hi <= prior[n][1]).all(), (m.name, n)
        else:
            assert torch.equal(m(graph, box, spec, prior=bogus).lower, plain), m.name


def test_refining_methods_keep_refined_intermediates() -> None:
    """`refines_intermediates`: its intermediate bounds are at least as tight as the interval ones it starts from."""
    graph, box, spec = _problem(2, 0.2)
    ibp_like = next(m for m in CASCADE_METHODS if m.linear and not m.refines_intermediates and not m.optimised)
    for m in (m for m in CASCADE_METHODS if m.refines_intermediates):
        fine, coarse = m(graph, box, spec).crown.ctx.bounds, ibp_like(graph, box, spec).crown.ctx.bounds
        shared = [n for n in coarse if n in fine and n != INPUT]
        assert shared, "no intermediate bounds to compare"
        assert all((fine[n][0] >= coarse[n][0] - 1e-9).all() and (fine[n][1] <= coarse[n][1] + 1e-9).all() for n in shared)


def test_auto_searches_radii_without_the_optimised_methods() -> None:
    methods, radius = chosen_methods("auto")
    assert methods == CASCADE_METHODS
    assert radius == tuple(m for m in CASCADE_METHODS if not m.optimised) and ALPHA_CROWN not in radius
    for name in NAMES:  # a named method proves and searches alone
        assert chosen_methods(name) == ((METHODS[name],), (METHODS[name],))
    with pytest.raises(UsageError):
        chosen_methods("fast")


# ------------------------------------------------------------------------------------------ no name branches

BOUND_METHOD_NAMES = frozenset(NAMES)
# robustify.py compares its *training regulariser* ("singleprop", "ibp", "crown-ibp"), not a bound method: its
# names only coincide, so it is outside the scan. The bound package itself defines the methods by these names.
NOT_SCANNED = ("srp_audit/bounds/", "srp_audit/robustify.py")


def _names_in(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & BOUND_METHOD_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_names_in(e) for e in node.elts))
    return set()


def test_no_driver_compares_against_a_method_name() -> None:
    """Drivers read a method's declarations (`optimised`, `takes_prior`, ...): `name == "crown"`, `m != "ibp"`,
    `name in ("crown", "crown-ibp")` and the like are allowed in `srp_audit/bounds/` only."""
    found = []
    files = [*ROOT.glob("srp_audit/**/*.py"), *ROOT.glob("cli/*.py")]
    assert len(files) > 20
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(NOT_SCANNED):
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Compare):
                hit = _names_in(node.left).union(*(_names_in(c) for c in node.comparators))
                if hit:
                    found.append(f"{rel}:{node.lineno} compares with {sorted(hit)}")
    assert not found, "branch on the method's declarations instead:\n" + "\n".join(found)


def test_the_scan_sees_a_name_branch() -> None:
    tree = ast.parse('if name in ("crown", "crown-ibp") or m != "alpha-crown" or "ibp" == x: pass')
    hits = [_names_in(n.left).union(*(_names_in(c) for c in n.comparators)) for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert set().union(*hits) == BOUND_METHOD_NAMES
