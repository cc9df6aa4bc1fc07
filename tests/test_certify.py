"""certify: verdict consistency, attacks against every 'verified', radius monotonicity and tolerance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import FIXTURES

from srp_audit.attack import pgd
from srp_audit.bounds import get_method
from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.errors import UsageError
from srp_audit.formats import load_model
from srp_audit.spec import inner_linf_ball, linf_ball, margin_spec

# eps small enough that IBP proves some samples of each naturally trained fixture, large enough that some fall
EPS = {"mnist_mlp": 0.004, "mnist_cnn": 0.002, "mnist_resnet": 0.0004}


def _samples(graph, name: str, n: int = 40):
    s = load_samples(str(FIXTURES / f"{name}.samples.npz"), graph.input_shape, graph.num_classes)
    return s.x[:n], s.y[:n]


@pytest.fixture(scope="module")
def results(fixture_models):
    out = {}
    for name, eps in EPS.items():
        g = fixture_models[name]
        x, y = _samples(g, name)
        out[name] = (g, x, y, certify(g, x, y, CertifyOptions(eps=eps, method="ibp", device="cpu", batch_size=16)))
    return out


@pytest.mark.parametrize("name", list(EPS))
def test_verdicts_are_consistent(results, name: str) -> None:
    g, x, y, res = results[name]
    eps = res.options.eps
    g64 = g.copy(dtype=torch.float64)
    counts = {v: res.count(v) for v in ("verified", "falsified", "unknown")}
    assert sum(counts.values()) == res.n == len(x)
    assert counts["verified"] > 0, "the fixture eps should let IBP prove something"
    assert res.certified_accuracy <= res.clean_accuracy
    for s in res.samples:
        if s.prediction != s.label:
            assert s.verdict == "falsified" and s.certified_radius == 0 and s.attack_radius == 0
        if s.verdict == "verified":
            assert s.certified_radius >= eps and s.bound > 0 and s.method == "ibp"
        if s.attack_radius is not None:
            assert s.attack_radius > s.certified_radius or s.attack_radius == 0 == s.certified_radius
            ce = torch.from_numpy(s.counterexample).unsqueeze(0)
            dist = (ce.double() - x[s.index].double()).abs().max().item()
            assert dist == pytest.approx(s.attack_radius, abs=0) and ce.min() >= 0 and ce.max() <= 1
            for model in (g, g64):
                with torch.no_grad():
                    logits = model.logits(ce.to(model.dtype))[0]
                assert (logits[torch.arange(10) != s.label] >= logits[s.label]).any(), "counterexample must be real"
        if s.verdict == "falsified":
            assert s.attack_radius is not None and s.attack_radius <= eps
        if s.verdict == "unknown":
            assert s.certified_radius < eps and (s.attack_radius is None or s.attack_radius > eps)


@pytest.mark.parametrize("name", list(EPS))
def test_strong_attack_never_breaks_a_verified_sample(results, name: str) -> None:
    g, x, y, res = results[name]
    idx = torch.tensor([s.index for s in res.samples if s.verdict == "verified"])
    for eps in (res.options.eps, None):  # at the audited eps, and at each sample's own certified radius
        e = torch.tensor([res.options.eps if eps else res.samples[i].certified_radius for i in idx.tolist()], dtype=torch.float64)
        box = inner_linf_ball(x[idx], e, (0.0, 1.0))
        spec = margin_spec(y[idx], 10, torch.float32)
        att = pgd(g, box, spec, steps=200, restarts=5, seed=123, start=x[idx])
        assert not att.found.any(), f"PGD broke a certificate on {name}"


@pytest.mark.parametrize("name", list(EPS))
def test_radius_is_monotone_and_tight_to_tolerance(results, name: str) -> None:
    g, x, y, res = results[name]
    g64 = g.copy(dtype=torch.float64)
    method = get_method("ibp")
    spec = margin_spec(y, 10)
    r = torch.tensor(res.radii())
    has = r > 0
    idx = has.nonzero().flatten()
    tol = res.options.radius_tol
    for frac in (0.0, 0.25, 0.5, 0.9, 1.0):
        lb = method(g64, linf_ball(x[idx].double(), r[idx] * frac, (0.0, 1.0)), spec.select(idx)).lower
        assert spec.select(idx).proved(lb).all(), f"certified at r but not at {frac}·r"
    lb = method(g64, linf_ball(x[idx].double(), r[idx] + tol, (0.0, 1.0)), spec.select(idx)).lower
    assert not spec.select(idx).proved(lb).any(), "the radius search stopped more than one tolerance short"


def test_misclassified_samples_are_never_certified(fixture_models) -> None:
    g = fixture_models["mnist_mlp"]
    x, y = _samples(g, "mnist_mlp", 12)
    wrong = (y + 1) % 10
    res = certify(g, x, wrong, CertifyOptions(eps=0.001, method="ibp", device="cpu"))
    assert res.certified_accuracy == 0
    assert all(s.verdict == "falsified" and s.attack_radius == 0 for s in res.samples if s.prediction != s.label)


def test_no_radius_search_reports_eps_for_proved_samples(fixture_models) -> None:
    g = fixture_models["mnist_mlp"]
    x, y = _samples(g, "mnist_mlp", 10)
    res = certify(g, x, y, CertifyOptions(eps=0.002, method="ibp", radius=False, device="cpu"))
    for s in res.samples:
        assert s.certified_radius == (0.002 if s.verdict == "verified" else 0.0)


def test_batches_do_not_change_results(fixture_models) -> None:
    g = fixture_models["mnist_cnn"]
    x, y = _samples(g, "mnist_cnn", 12)
    a = certify(g, x, y, CertifyOptions(eps=0.002, method="ibp", device="cpu", batch_size=12))
    b = certify(g, x, y, CertifyOptions(eps=0.002, method="ibp", device="cpu", batch_size=5))
    assert [s.verdict for s in a.samples] == [s.verdict for s in b.samples]
    assert np.allclose(a.radii(), b.radii())


def test_cuda_without_gpu_is_a_usage_error(fixture_models) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    g = fixture_models["mnist_mlp"]
    x, y = _samples(g, "mnist_mlp", 2)
    with pytest.raises(UsageError, match="no CUDA GPU"):
        certify(g, x, y, CertifyOptions(eps=0.01, device="cuda"))


@pytest.fixture(scope="module")
def auto_result(fixture_models):
    g = fixture_models["mnist_mlp"]
    x, y = _samples(g, "mnist_mlp", 24)
    return g, x, y, certify(g, x, y, CertifyOptions(eps=0.015, method="auto", device="cpu", alpha_iters=10))


def test_auto_escalates_and_reports_which_method_proved(auto_result) -> None:
    g, x, y, res = auto_result
    ibp_only = certify(g, x, y, CertifyOptions(eps=0.015, method="ibp", radius=False, device="cpu"))
    assert res.certified_accuracy > ibp_only.certified_accuracy
    counts = res.method_counts()
    assert sum(counts.values()) == res.count("verified") and set(counts) <= {"ibp", "crown-ibp", "crown", "alpha-crown"}
    assert len(counts) >= 2 and res.mean_unstable() > 0
    for s in res.samples:
        assert (s.method is not None) == (s.verdict == "verified")


def test_auto_verdicts_survive_a_strong_attack_and_radii_are_consistent(auto_result) -> None:
    g, x, y, res = auto_result
    eps = res.options.eps
    idx = torch.tensor([s.index for s in res.samples if s.verdict == "verified"])
    att = pgd(g, inner_linf_ball(x[idx], eps, (0.0, 1.0)), margin_spec(y[idx], 10, torch.float32), steps=200, restarts=5,
              seed=7, start=x[idx])
    assert not att.found.any()
    for s in res.samples:
        assert (s.verdict == "verified") == (s.certified_radius >= eps) or s.verdict == "falsified"
        if s.attack_radius is not None:
            assert s.attack_radius > s.certified_radius or s.attack_radius == 0
    # certified at r ⇒ certified at every smaller eps: the verdict at eps' = r/2 is verified for those samples
    half = certify(g, x, y, CertifyOptions(eps=eps / 2, method="auto", device="cpu", alpha_iters=10))
    for a, b in zip(res.samples, half.samples):
        if a.verdict == "verified":
            assert b.verdict == "verified"


def _cnn_prover(fixture_models, n: int):
    """(float32 model, x, y, a CROWN-only Prover over the float64 copy) for n CNN fixture samples."""
    from srp_audit.prover import Prover

    g = fixture_models["mnist_cnn"]
    x, y = _samples(g, "mnist_cnn", n)
    wide = g.copy(dtype=torch.float64).eval()
    wide.requires_grad_(False)
    spec = margin_spec(y, 10, torch.float64)
    with torch.no_grad():
        clean = spec.worst_bound(spec.values(wide.logits(x.double())))
    return g, x, y, Prover(wide, x.double(), spec, (0.0, 1.0), ("crown",), 20, clean)


def test_salvaged_radius_is_a_proof_below_the_refuted_eps(fixture_models) -> None:
    """A pass refuted at hi still proves a smaller ball by its own linear bound: the salvaged radius lies in
    [lo, hi), PGD finds nothing inside it, and on this model it gains on most samples."""
    g, x, y, prove = _cnn_prover(fixture_models, 12)
    idx = torch.arange(len(x))
    hi = torch.full((len(x),), 0.06, dtype=torch.float64)
    ok, _, _ = prove(idx, hi)
    refuted = idx[~ok]
    assert refuted.numel() >= 6
    lo = torch.zeros(refuted.numel(), dtype=torch.float64)
    r = prove.salvage(refuted, lo, hi[refuted])
    assert ((r >= lo) & (r < hi[refuted])).all()
    assert (r > 0).sum() >= refuted.numel() // 2
    keep = refuted[r > 0]
    box = inner_linf_ball(x[keep], r[r > 0], (0.0, 1.0))
    att = pgd(g, box, margin_spec(y[keep], 10, torch.float32), steps=200, restarts=5, seed=7, start=x[keep])
    assert not att.found.any(), "PGD broke a salvaged radius"
    # the pass's intermediate bounds prove nothing beyond the eps it ran at, whatever bracket is asked for
    far = prove.salvage(refuted, lo, torch.full_like(lo, 0.5))
    assert (far < 0.06).all()
    prove(idx, torch.full((len(x),), 0.01, dtype=torch.float64), ("ibp",))  # a call without a linear pass
    assert torch.equal(prove.salvage(refuted, lo, hi[refuted]), lo), "a stale pass was salvaged"


def test_prover_reuses_refuted_bounds_only_on_smaller_balls(fixture_models) -> None:
    """CROWN's intermediate bounds from a refuted pass hold on every smaller ball around the same sample: the
    prover hands them to later CROWN passes at smaller eps only (at a larger eps they would be unsound), keeps
    the smallest refuted eps, and the margins it then proves survive a strong attack."""
    g, x, y, prove = _cnn_prover(fixture_models, 8)
    idx = torch.arange(len(x))
    at = lambda e: torch.full((len(x),), e, dtype=torch.float64)  # noqa: E731
    ok, _, _ = prove(idx, at(0.08))
    refuted = idx[~ok]
    assert refuted.numel() >= 6 and set(prove.refuted) == set(refuted.tolist())
    assert prove._prior(refuted, at(0.09)[refuted]) is None, "bounds of a smaller ball offered for a larger one"
    prior = prove._prior(idx, at(0.05))
    assert prior is not None
    for lo, hi in prior.values():
        assert torch.isinf(lo[ok]).all() and torch.isinf(hi[ok]).all()  # proved samples carry nothing
        assert torch.isfinite(lo[~ok]).all() and torch.isfinite(hi[~ok]).all()
    ok7, _, _ = prove(idx, at(0.07))
    assert {s: prove.refuted[s][0] for s in refuted.tolist()} == {s: 0.08 if ok7[s] else 0.07 for s in refuted.tolist()}
    ok5, bound, _ = prove(idx, at(0.05))
    keep = idx[ok5]
    assert keep.numel() >= 2
    box = inner_linf_ball(x[keep], at(0.05)[keep], (0.0, 1.0))
    att = pgd(g, box, margin_spec(y[keep], 10, torch.float32), steps=200, restarts=5, seed=3, start=x[keep])
    assert not att.found.any(), "PGD broke a proof made with reused bounds"


def test_radius_search_model_recovers_the_root_of_its_own_curve() -> None:
    """The guess model fits m − d·e − c·e^p through two evaluated bounds; on such a curve it lands on the root."""
    from srp_audit.radius import _model_root

    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    m, d, c, p = t(1.0, 0.5), t(10.0, 3.0), t(200.0, 40.0), t(2.5, 1.5)
    f = lambda e: m - d * e - c * e**p  # noqa: E731
    a, b = t(0.02, 0.02), t(0.09, 0.12)
    root = _model_root(m, d, a, f(a), b, f(b), a, b)
    assert torch.allclose(f(root), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    # one point only (nothing evaluated above yet): p = 2 through it, a guess inside the bracket
    one = _model_root(m, d, a, f(a), b, t(float("nan"), float("nan")), a, t(1.0, 1.0))
    assert ((one > a) & (one < 1.0)).all()
    # points that no such curve passes through (a bound above the tangent line) give no guess
    assert torch.isnan(_model_root(m, d, a, m, b, t(float("nan"), float("nan")), a, b)).all()


def test_radius_search_pilot_fits_the_exponent_for_the_other_samples(monkeypatch) -> None:
    """Margins that fall as m − d·e − c·e³: a few samples go first, and the exponent they fit guides every other
    sample's first guess — fewer passes than assuming p = 2, and every radius still proved within tolerance."""
    import srp_audit.radius as radius

    n, tol = 64, 1e-3
    gen = torch.Generator().manual_seed(0)
    m = 5 + 5 * torch.rand(n, generator=gen, dtype=torch.float64)
    d = 20 + 20 * torch.rand(n, generator=gen, dtype=torch.float64)
    c = 2e4 * (1 + torch.rand(n, generator=gen, dtype=torch.float64))
    f = lambda i, e: m[i] - d[i] * e - c[i] * e**3  # noqa: E731
    root = torch.tensor([float(np.roots([float(c[i]), 0, float(d[i]), -float(m[i])]).real.max()) for i in range(n)],
                        dtype=torch.float64)

    def run() -> tuple[torch.Tensor, int]:
        passes = [0]

        def prove(idx, e):
            passes[0] += idx.numel()
            b = f(idx, e)
            return b > 0, b, [None] * idx.numel()

        eps = torch.full((n,), 0.02, dtype=torch.float64)
        ok = torch.ones(n, dtype=torch.bool)
        attack = 3 * root  # counterexamples found far out: the bracket's top, not evaluated
        r = radius.certified_radius(prove, ok, ok, f(torch.arange(n), eps), eps, attack, m, 1.0, tol, None, d)
        return r, passes[0]

    with_pilot, passes_pilot = run()
    monkeypatch.setattr(radius, "PILOT_MIN", 10**9)
    without, passes_plain = run()
    for r in (with_pilot, without):
        assert ((r <= root) & (r > root - tol)).all()
    assert passes_pilot < passes_plain, (passes_pilot, passes_plain)


def _attack_oracle(margin, noise: float = 0.0, seed: int = 0):
    """attack(idx, eps, restarts, seed) over a synthetic margin curve: a counterexample at distance eps exactly
    where margin(idx, eps) < 0, its margin reported, optionally with noise (PGD's margins are not a smooth curve)."""
    gen = torch.Generator().manual_seed(seed)
    calls = []

    def attack(idx, eps, restarts, s):
        calls.append(idx.numel())
        obj = margin(idx, eps) + noise * torch.randn(idx.numel(), generator=gen, dtype=torch.float64)
        found = margin(idx, eps) < 0
        points = torch.zeros(idx.numel(), 1, dtype=torch.float64) + eps.unsqueeze(1)  # at distance eps from x = 0
        return found, points, obj

    return attack, calls


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_attack_radius_search_ends_within_tolerance_in_fewer_attacks_than_bisection(noise: float) -> None:
    """Regula falsi on the attack's margins (m − d·e − c·e², with and without noise): every attack radius ends
    within tolerance above the true crossing, the bracket never crosses it, and the search needs fewer attacks
    than bisection's ⌈log2(width / tol)⌉ per sample."""
    from srp_audit.radius import attack_radius_search

    n, tol = 64, 1e-3
    gen = torch.Generator().manual_seed(1)
    m = 5 + 5 * torch.rand(n, generator=gen, dtype=torch.float64)
    d = 20 + 40 * torch.rand(n, generator=gen, dtype=torch.float64)
    c = 50 + 500 * torch.rand(n, generator=gen, dtype=torch.float64)
    margin = lambda i, e: m[i] - d[i] * e - c[i] * e**2  # noqa: E731
    root = (-d + (d**2 + 4 * c * m).sqrt()) / (2 * c)
    eps = torch.full((n,), 0.02, dtype=torch.float64)
    attack, calls = _attack_oracle(margin, noise)
    att_r = torch.full((n,), torch.inf, dtype=torch.float64)
    ce = torch.zeros(n, 1, dtype=torch.float64)
    ok = torch.ones(n, dtype=torch.bool)
    opt = CertifyOptions(eps=0.02, radius_tol=tol)
    attack_radius_search(attack, att_r, ce, torch.zeros(n, 1, dtype=torch.float64), ok, eps.clone(), 1.0, opt, m, eps,
                         margin(torch.arange(n), eps))
    assert ((att_r >= root) & (att_r <= root + tol)).all(), (att_r - root).abs().max()
    bisection = math.ceil(math.log2((1.0 - 0.02) / tol)) + 1  # + the attack at the cap
    assert sum(calls) < n * bisection, (sum(calls), n * bisection)


def test_a_named_method_bounds_each_batch_once(monkeypatch) -> None:
    """`--method crown-ibp`: the samples neither proved nor falsified are not bounded a second time by the same
    method (an empty escalation used to fall back to the prover's default, the named method again)."""
    method = get_method("crown-ibp")
    calls: list[int] = []
    original = type(method).bounds

    def counted(self, graph, box, spec, **kw):
        calls.append(box.n)
        return original(self, graph, box, spec, **kw)

    monkeypatch.setattr(type(method), "bounds", counted)
    g = load_model(str(FIXTURES / "mnist_cnn.onnx"))
    s = load_samples(str(FIXTURES / "mnist_cnn.samples.npz"), g.input_shape, g.num_classes)
    res = certify(g, s.x[:32], s.y[:32], CertifyOptions(eps=0.05, method="crown-ibp", radius=False))
    assert any(r.verdict == "unknown" for r in res.samples)  # some samples reach the end undecided
    assert len(calls) == 1


@pytest.mark.parametrize(("method", "norm"), [("ibp", "inf"), ("crown-ibp", "inf"), ("crown", "inf"), ("auto", "inf"),
                                              ("crown-ibp", "2")])
def test_the_unstable_count_is_ibps_whichever_method_runs_first(fixture_models, method: str, norm: str) -> None:
    """The report's unstable ReLUs per sample come from the first method's own IBP pass where it makes one (IBP,
    CROWN-IBP over an L∞ box) and from a separate IBP pass otherwise: the same counts either way."""
    from srp_audit.certify import _unstable_ibp
    from srp_audit.spec import ball

    g = fixture_models["mnist_cnn"]
    x, y = _samples(g, "mnist_cnn", 6)
    eps = 0.02 if norm == "inf" else 0.5
    res = certify(g, x, y, CertifyOptions(eps=eps, method=method, radius=False, attack_steps=0, norm=norm, device="cpu"))
    wide = g.copy(dtype=torch.float64)
    want = _unstable_ibp(wide, ball(x.double(), torch.full((6,), eps, dtype=torch.float64), (0.0, 1.0), norm))
    correct = [s for s in res.samples if s.prediction == s.label]
    assert correct and all(s.unstable == int(want[s.index]) for s in correct)
    assert any(s.unstable > 0 for s in correct), "no unstable neuron: the case no longer tests the count"
