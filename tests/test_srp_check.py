"""srp_check, the independent certificate checker: valid certificates check, and every kind of tampering is
refused — a slope past its range, an intermediate bound one ulp too tight, a dropped split, β where it may not
be, a certificate of another sample, of a larger eps, of another model."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_srp_check_support import crown_mlp, loosen, mlp_onnx, robustness_claim, sha256, write_cert

from srp_check import CertificateError, UnsupportedModel, check, read_network
from srp_check.relax import first_invalid_chord, relax

ROOT = Path(__file__).resolve().parent.parent

# y = relu(x) − 0.5·relu(x + 2) + 1.1 = relu(x) − 0.5·x + 0.1 on x ∈ [−1, 1]: true (min 0.1 at x = 0), not
# proven by CROWN's slope rule (λ = 1 gives 0.5·x + 0.1 ≥ −0.4), proven by λ = 0.5, by a split of neuron 0 with
# β = 0.5 on each side, or by an input split at 0.
KINK = [(np.array([[1.0], [1.0]]), np.array([0.0, 2.0])), (np.array([[1.0, -0.5]]), np.array([1.1]))]


def _box_claim(cid: str, lo, hi, leaves, tree=None, C=((1.0,),), d=(0.0,), groups=((0,),)):
    arrays = {f"{cid}/lo": np.array(lo, float), f"{cid}/hi": np.array(hi, float), f"{cid}/C": np.array(C, float), f"{cid}/d": np.array(d, float)}
    claim = {"id": cid, "set": {"type": "box", "lower": f"{cid}/lo", "upper": f"{cid}/hi"},
             "spec": {"C": f"{cid}/C", "d": f"{cid}/d", "groups": [list(g) for g in groups]},
             "tree": tree or {"leaf": 0}, "leaves": leaves}
    return claim, arrays


def _run(tmp_path: Path, model: Path, claims_arrays, name="c.npz", **kw):
    claims = [c for c, _ in claims_arrays]
    arrays = {k: v for _, a in claims_arrays for k, v in a.items()}
    return check(model, write_cert(tmp_path / name, model, claims, arrays), **kw)


@pytest.fixture
def kink(tmp_path):
    return mlp_onnx(tmp_path / "kink.onnx", KINK)


def _kink_leaf(beta=None, slopes=None, key="k"):
    leaf, arrays = {}, {}
    if beta is not None:
        arrays[f"{key}/beta"] = np.array(beta, float)
        leaf["beta"] = {"relu0": f"{key}/beta"}
    if slopes is not None:
        arrays[f"{key}/slopes"] = np.array(slopes, float)
        leaf["slopes"] = {"relu0": f"{key}/slopes"}
    return leaf, arrays


def _kink_claim(cid, leaves_arrays, tree=None):
    claim, arrays = _box_claim(cid, [-1.0], [1.0], [lf for lf, _ in leaves_arrays], tree)
    for _, a in leaves_arrays:
        arrays.update(a)
    return claim, arrays


SPLIT = {"relu": "relu0", "neuron": 0, "children": [{"leaf": 0}, {"leaf": 1}]}


def test_kink_proofs_check_and_crown_alone_does_not(tmp_path, kink):
    r = _run(tmp_path, kink, [
        _kink_claim("crown", [_kink_leaf()]),
        _kink_claim("alpha", [_kink_leaf(slopes=[0.5, 1.0], key="a")]),
        _kink_claim("alpha-rows", [_kink_leaf(slopes=[[0.5, 0.0]], key="ar")]),
        _kink_claim("relu-split", [_kink_leaf(beta=[0.5, 0.0], key="s0"), _kink_leaf(beta=[0.5, 0.0], key="s1")], SPLIT),
        _kink_claim("input-split", [_kink_leaf(), _kink_leaf()], {"input": 0, "at": 0.0, "children": [{"leaf": 0}, {"leaf": 1}]}),
    ])
    ok = {c.id: c.ok for c in r.claims}
    assert ok == {"crown": False, "alpha": True, "alpha-rows": True, "relu-split": True, "input-split": True}, r.lines()
    assert "group 0" in r.claims[0].reason and "-0.39999" in r.claims[0].reason
    assert [c.leaves for c in r.claims[1:]] == [1, 1, 2, 2]


def test_slope_past_its_range_is_rejected(tmp_path, kink):
    for lam in (1.5, -0.25, np.inf):
        r = _run(tmp_path, kink, [_kink_claim("c", [_kink_leaf(slopes=[lam, 1.0])])])
        assert not r.ok and "outside [0, 1]" in r.claims[0].reason, r.lines()


def test_dropped_split_is_rejected(tmp_path, kink):
    """The split's leaves hold only under their split: lifted to the whole box, each is refused."""
    split_leaves = [_kink_leaf(beta=[0.5, 0.0], key="s0"), _kink_leaf(beta=[0.5, 0.0], key="s1")]
    for tree in ({"leaf": 0}, {"leaf": 1}):
        r = _run(tmp_path, kink, [_kink_claim("c", split_leaves, tree)])
        assert not r.ok and "not split on the path" in r.claims[0].reason, r.lines()
    # the same leaves without β, the split dropped: the bound fails
    r = _run(tmp_path, kink, [_kink_claim("c", [_kink_leaf(), _kink_leaf()], {"leaf": 0})])
    assert not r.ok and "not proven" in r.claims[0].reason
    # an input split dropped: its leaves are proven only on their halves
    halves = {"input": 0, "at": 0.0, "children": [{"leaf": 0}, {"leaf": 1}]}
    assert _run(tmp_path, kink, [_kink_claim("c", [_kink_leaf(), _kink_leaf()], halves)]).ok
    r = _run(tmp_path, kink, [_kink_claim("c", [_kink_leaf(), _kink_leaf()], {"leaf": 1})])
    assert not r.ok and "not proven" in r.claims[0].reason
    # a split with one child is malformed
    with pytest.raises(CertificateError, match="two children"):
        _run(tmp_path, kink, [_kink_claim("c", split_leaves, {"relu": "relu0", "neuron": 0, "children": [{"leaf": 0}]})])


def test_beta_rules(tmp_path, kink):
    good = [_kink_leaf(beta=[0.5, 0.0], key="s0"), _kink_leaf(beta=[0.5, 0.0], key="s1")]
    assert _run(tmp_path, kink, [_kink_claim("c", good, SPLIT)]).ok
    neg = [_kink_leaf(beta=[-0.5, 0.0], key="s0"), good[1]]
    r = _run(tmp_path, kink, [_kink_claim("c", neg, SPLIT)])
    assert not r.ok and "negative β" in r.claims[0].reason
    unsplit = [_kink_leaf(beta=[0.5, 1e-3], key="s0"), good[1]]
    r = _run(tmp_path, kink, [_kink_claim("c", unsplit, SPLIT)])
    assert not r.ok and "neuron 1" in r.claims[0].reason and "not split" in r.claims[0].reason
    # per-row β (S, n) is accepted in the same way
    rows = [_kink_leaf(beta=[[0.5, 0.0]], key="r0"), _kink_leaf(beta=[[0.5, 0.0]], key="r1")]
    assert _run(tmp_path, kink, [_kink_claim("c", rows, SPLIT)]).ok
    # a neuron split twice on one path has no meaning in the format
    twice = {"relu": "relu0", "neuron": 0, "children": [SPLIT, {"leaf": 1}]}
    r = _run(tmp_path, kink, [_kink_claim("c", good, twice)])
    assert not r.ok and "split twice" in r.claims[0].reason


def _bounds_leaf(key: str, relu: str, l, u):
    return {"bounds": {relu: {"lower": f"{key}/l", "upper": f"{key}/u"}}}, {f"{key}/l": np.array(l, float), f"{key}/u": np.array(u, float)}


def test_intermediate_bound_one_ulp_too_tight_is_rejected(tmp_path):
    """z = x0 − x1 on [0, 1]²: exactly [−1, 1], attained. One ulp inside is a false claim."""
    model = mlp_onnx(tmp_path / "diff.onnx", [(np.array([[1.0, -1.0]]), np.zeros(1)), (np.ones((1, 1)), np.zeros(1))])
    inside = np.nextafter(-1.0, 0.0)
    cases = {"lower": ([inside], [1.0]), "upper": ([-1.0 - 1e-12], [np.nextafter(1.0, 0.0)])}
    for what, (l, u) in cases.items():
        leaf, a = _bounds_leaf("b", "relu0", l, u)
        claim, arrays = _box_claim("c", [0, 0], [1, 1], [leaf], d=(1.5,))
        r = _run(tmp_path, model, [(claim, {**arrays, **a})])
        assert not r.ok and f"claimed {what} bound" in r.claims[0].reason and "neuron 0" in r.claims[0].reason, r.lines()
    # 1e-12 outside the exact bounds: derivable, accepted
    leaf, a = _bounds_leaf("b", "relu0", [-1.0 - 1e-12], [1.0 + 1e-12])
    claim, arrays = _box_claim("c", [0, 0], [1, 1], [leaf], d=(1.5,))
    assert _run(tmp_path, model, [(claim, {**arrays, **a})]).ok


def test_second_layer_bound_one_ulp_too_tight_is_rejected(tmp_path):
    """Layer 1 is the identity on [0, 1]² (stable ReLUs), layer 2 z = h0 − h1 ∈ [−1, 1] exactly: the claim needs
    a backward pass through the first ReLU."""
    model = mlp_onnx(tmp_path / "deep.onnx", [(np.eye(2), np.zeros(2)), (np.array([[1.0, -1.0]]), np.zeros(1)), (np.ones((1, 1)), np.zeros(1))])
    for l, ok in ((np.nextafter(-1.0, 0.0), False), (-1.0 - 1e-12, True)):
        leaf, a = _bounds_leaf("b", "relu1", [l], [1.0 + 1e-12])
        claim, arrays = _box_claim("c", [0, 0], [1, 1], [leaf], d=(1.5,))
        r = _run(tmp_path, model, [(claim, {**arrays, **a})])
        assert r.ok == ok and (ok or "ReLU 'relu1', neuron 0: the claimed lower bound -0.9999999999999999" in r.claims[0].reason), r.lines()


def _tiny(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    ws = [(rng.normal(size=(8, 4)) / 2, rng.normal(size=8) / 4), (rng.normal(size=(8, 8)) / 3, rng.normal(size=8) / 4),
          (rng.normal(size=(3, 8)) / 3, rng.normal(size=3) / 4)]
    return ws, mlp_onnx(tmp_path / f"tiny{seed}.onnx", ws)


def _crown_claim(ws, x, eps, label, cid="c", sample=0):
    claim, arrays = robustness_claim(cid, f"{cid}/x", eps, label, 3, sample=sample)
    arrays[f"{cid}/x"] = x
    lo, hi = np.maximum(x - eps, 0), np.minimum(x + eps, 1)
    bounds, final = crown_mlp(ws, lo, hi, arrays[f"{cid}/C"], arrays[f"{cid}/d"])
    leaf = {"bounds": {}}
    for i, (l, u) in enumerate(bounds):
        arrays[f"{cid}/l{i}"], arrays[f"{cid}/u{i}"] = loosen(l, u)
        leaf["bounds"][f"relu{i}"] = {"lower": f"{cid}/l{i}", "upper": f"{cid}/u{i}"}
    claim["leaves"] = [leaf]
    return claim, arrays, final


def _sample(tmp_path, pixels, label):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.array([pixels], np.uint8), y=np.array([label], np.int64))
    x = (np.array(pixels, np.uint8).astype(np.float32) / np.float32(255)).astype(np.float64)
    return path, x


def test_certificate_of_another_sample_or_label_is_rejected(tmp_path):
    ws, model = _tiny(tmp_path)
    x = (np.array([90, 200, 30, 140], np.uint8).astype(np.float32) / np.float32(255)).astype(np.float64)
    label = int(np.argmax(read_network(model.read_bytes()).forward(x)))
    claim, arrays, final = _crown_claim(ws, x, 0.01, label)
    assert final.min() > 0
    prepared = (claim, arrays)
    data, x_read = _sample(tmp_path, [90, 200, 30, 140], label)
    assert np.array_equal(x_read, x)
    assert _run(tmp_path, model, [prepared], data=data).ok
    other = tmp_path / "other.npz"
    np.savez(other, x=np.array([[90, 200, 31, 140]], np.uint8), y=np.array([label]))
    r = _run(tmp_path, model, [prepared], data=other)
    assert not r.ok and "another sample" in r.claims[0].reason and "input 2" in r.claims[0].reason
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.array([[90, 200, 30, 140]], np.uint8), y=np.array([(label + 1) % 3]))
    r = _run(tmp_path, model, [prepared], data=wrong)
    assert not r.ok and "another sample" in r.claims[0].reason
    # the margins are rebuilt from the label: rows of another label are refused even without --data
    claim2 = json.loads(json.dumps(claim))
    claim2["set"]["label"] = (label + 1) % 3
    r = _run(tmp_path, model, [(claim2, arrays)])
    assert not r.ok and "margins of its label" in r.claims[0].reason


def test_certificate_of_a_larger_eps_is_rejected(tmp_path):
    ws, model = _tiny(tmp_path)
    x = np.array([0.35, 0.8, 0.1, 0.55])
    label = int(np.argmax(read_network(model.read_bytes()).forward(x)))
    claim, arrays, final = _crown_claim(ws, x, 0.01, label)
    assert _run(tmp_path, model, [(claim, arrays)]).ok
    claim["set"]["eps"] = 0.02
    r = _run(tmp_path, model, [(claim, arrays)])
    assert not r.ok and "is not derived" in r.claims[0].reason, r.lines()


def _ulp_model(tmp_path: Path, w: float, name: str) -> Path:
    """y = (w·x, x): the claim y0 − y1 > 0 at x = 1 holds iff w > 1."""
    return mlp_onnx(tmp_path / name, [(np.array([[w], [1.0]]), np.zeros(2))])


def test_model_changed_by_one_ulp(tmp_path):
    w = float(np.nextafter(np.float32(1), np.float32(2)))
    model = _ulp_model(tmp_path, w, "m.onnx")
    claim, arrays = _box_claim("c", [1.0], [1.0], [{}], C=((1.0, -1.0),))
    cert = write_cert(tmp_path / "c.npz", model, [claim], arrays)
    assert check(model, cert).ok
    changed = _ulp_model(tmp_path, 1.0, "m2.onnx")  # the weight one float32 ulp lower
    with pytest.raises(CertificateError, match="another model"):
        check(changed, cert)
    patched = write_cert(tmp_path / "p.npz", model, [claim], arrays, sha=sha256(changed))
    r = check(changed, patched)
    assert not r.ok and "not proven" in r.claims[0].reason


def test_malformed_certificates_raise(tmp_path, kink):
    claim, arrays = _kink_claim("c", [_kink_leaf(slopes=[0.5, 1.0])])

    def bad(mutate, match):
        c, a = json.loads(json.dumps(claim)), dict(arrays)
        mutate(c, a)
        with pytest.raises(CertificateError, match=match):
            check(kink, write_cert(tmp_path / "bad.npz", kink, [c], a))

    bad(lambda c, a: a.pop("c/C"), "no array 'c/C'")
    bad(lambda c, a: a.update({"c/C": np.ones((1, 2))}), "shape")
    bad(lambda c, a: a.update({"k/slopes": np.array([np.nan, 1.0])}), "NaN")
    bad(lambda c, a: a.update({"c/lo": np.array([np.inf])}), "not finite")
    bad(lambda c, a: a.update({"c/lo": np.array([2.0])}), "empty box")
    bad(lambda c, a: a.update({"c/d": np.array([1], np.int64)}), "dtype")
    bad(lambda c, a: c.pop("spec"), "spec")
    bad(lambda c, a: c["spec"].update(groups=[[3]]), "groups")
    bad(lambda c, a: c["leaves"][0].update(slopes={"nope": "k/slopes"}), "not the output tensor of a ReLU")
    bad(lambda c, a: c.update(tree={"leaf": 5}), "leaf index")
    bad(lambda c, a: c.update(tree={"leaf": 0, "extra": 1}), "keys")
    bad(lambda c, a: c.update(tree={"relu": "relu0", "neuron": 0, "children": [{"leaf": 0}]}), "two children")
    bad(lambda c, a: c.update(tree={"relu": "relu0", "neuron": 2, "children": [{"leaf": 0}, {"leaf": 0}]}), "neuron")
    bad(lambda c, a: c.update(tree={"input": 0, "at": "x", "children": [{"leaf": 0}, {"leaf": 0}]}), "number")
    bad(lambda c, a: c["set"].update(type="ball"), "type")
    with pytest.raises(CertificateError, match="no such certificate"):
        check(kink, tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CertificateError, match="not a readable certificate"):
        check(kink, tmp_path / "junk.npz")
    np.savez(tmp_path / "nan.npz", **{"manifest.json": np.frombuffer(b'{"format": NaN}', np.uint8)})
    with pytest.raises(CertificateError, match="finite"):
        check(kink, tmp_path / "nan.npz")
    v2 = json.dumps({"format": "srp-audit certificate", "version": 2}).encode()
    np.savez(tmp_path / "v2.npz", **{"manifest.json": np.frombuffer(v2, np.uint8)})
    with pytest.raises(CertificateError, match="version 1"):
        check(kink, tmp_path / "v2.npz")


def test_false_claims_cannot_be_dressed_up(tmp_path):
    """A false claim (the model's worst class at the sample itself) with bounds that would make it provable —
    dead or linear layers, splits whose every side claims to be empty, an input split outside the box, big β —
    is refused every time."""
    ws, model = _tiny(tmp_path)
    x = np.array([0.35, 0.8, 0.1, 0.55])
    worst = int(np.argmin(read_network(model.read_bytes()).forward(x)))
    claim, arrays, _ = _crown_claim(ws, x, 0.01, worst)
    assert not _run(tmp_path, model, [(claim, arrays)]).ok

    def variant(change, tree=None, leaves=None):
        c, a = json.loads(json.dumps(claim)), {k: v.copy() for k, v in arrays.items()}
        change(a)
        if tree is not None:
            c["tree"], c["leaves"] = tree, leaves
        r = _run(tmp_path, model, [(c, a)])
        assert not r.ok, r.lines()
        return r.claims[0].reason

    assert "not derived" in variant(lambda a: a.update({"c/u1": -np.ones(8)}))  # every second-layer ReLU dead
    assert "not derived" in variant(lambda a: a.update({"c/l0": np.zeros(8)}))  # every first-layer ReLU linear
    leaf = claim["leaves"][0]

    def empty_sides(a):  # the z ≥ 0 side claims z ≤ −1, the z ≤ 0 side claims z ≥ 1: both "empty"
        a["e/u"], a["e/l"] = a["c/u0"].copy(), a["c/l0"].copy()
        a["e/u"][0], a["e/l"][0] = -1.0, 1.0
        a["e/l0"] = a["c/l0"]
        a["e/u0"] = a["c/u0"]

    pos = {"bounds": {**leaf["bounds"], "relu0": {"lower": "e/l0", "upper": "e/u"}}}
    neg = {"bounds": {**leaf["bounds"], "relu0": {"lower": "e/l", "upper": "e/u0"}}}
    split = {"relu": "relu0", "neuron": 0, "children": [{"leaf": 0}, {"leaf": 1}]}
    assert "not derived" in variant(empty_sides, split, [pos, neg])
    outside = {"input": 0, "at": 5.0, "children": [{"leaf": 0}, {"leaf": 0}]}  # x_0 ≥ 5 is empty, x_0 ≤ 5 is all
    variant(lambda a: None, outside, [leaf])

    def big_beta(a):
        a["bb"] = np.full(8, 1e6)
        a["bb"][1:] = 0.0

    beta_leaf = {**leaf, "beta": {"relu0": "bb"}}
    variant(big_beta, {"relu": "relu0", "neuron": 0, "children": [{"leaf": 0}, {"leaf": 0}]}, [beta_leaf])


def test_robustness_set_validation(tmp_path):
    ws, model = _tiny(tmp_path)
    x = np.array([0.35, 0.8, 0.1, 0.55])
    claim, arrays, _ = _crown_claim(ws, x, 0.01, 0)
    for key, value, match in (("norm", "3", "must be 'inf', '2' or '1'"), ("classes", 4, "classes"), ("eps", -1.0, "eps"),
                              ("domain", [0.5, 1.0], "is empty"), ("label", 3, "label"), ("sample", -1, "sample")):
        c = json.loads(json.dumps(claim))
        c["set"][key] = value
        with pytest.raises(CertificateError, match=match):
            check(model, write_cert(tmp_path / "bad.npz", model, [c], arrays))


def test_uncertified_only_and_unsupported_models(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = tmp_path / "sigmoid.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    cert = write_cert(tmp_path / "u.npz", model, [], {}, uncertified=[{"id": "sample 0", "reason": "Sigmoid is not supported"}])
    r = check(model, cert)
    assert r.ok and r.claims == () and r.uncertified == (("sample 0", "Sigmoid is not supported"),)
    claim, arrays = _box_claim("c", np.zeros(3), np.ones(3), [{}], C=(np.eye(3)[0],))
    with pytest.raises(UnsupportedModel, match="operator Sigmoid"):
        check(model, write_cert(tmp_path / "r.npz", model, [claim], arrays))


def test_robustness_box_is_rounded_outward():
    from srp_check.certificate import Claim
    from srp_check.inputs import claim_box

    x = np.array([np.float32(0.1), np.float32(1 / 3), 0.0, 1.0, np.float32(0.7)], dtype=np.float64)
    eps = 0.1
    c = Claim("c", {"type": "robustness", "x": x, "eps": eps, "domain": (0.0, 1.0), "label": 0, "sample": 0}, np.ones((1, 1)),
              np.zeros(1), [[0]], {"leaf": 0}, [])
    lo, hi = claim_box(c)
    for i in range(x.size):
        assert Fraction(lo[i]) <= max(Fraction(x[i]) - Fraction(eps), Fraction(0))
        assert Fraction(hi[i]) >= min(Fraction(x[i]) + Fraction(eps), Fraction(1))
    assert lo[2] == 0.0 and hi[3] == 1.0


def test_chord_check_is_exact():
    rng = np.random.default_rng(1)
    l, u = -rng.random(300) * 10 ** rng.uniform(-6, 3, 300), rng.random(300) * 10 ** rng.uniform(-6, 3, 300)
    rx = relax(l, u, "t")
    assert rx.unstable.all()
    assert first_invalid_chord(rx.k, rx.c, l, u) is None
    for j in range(0, 300, 7):
        k, c = rx.k[j:j + 1].copy(), rx.c[j:j + 1].copy()
        for kk, cc in ((k, np.nextafter(c, -np.inf)), (np.nextafter(k, 2), c), (k * 0.5, c)):
            want = Fraction(kk[0]) * Fraction(l[j]) + Fraction(cc[0]) >= 0 and Fraction(kk[0]) * Fraction(u[j]) + Fraction(cc[0]) >= Fraction(u[j])
            assert (first_invalid_chord(kk, cc, l[j:j + 1], u[j:j + 1]) is None) == want


def test_srp_check_imports_nothing_of_srp_audit():
    code = ("import sys, srp_check, srp_check.checker, srp_check.vnnlib; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('srp_audit', 'srp_audit_cli')]; "
            "assert not bad, bad; print('clean')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr


def test_ibp_proof_stops_at_a_relu_output(tmp_path):
    """A leaf's `stops`: the final pass is minimised over that ReLU output's interval (an IBP proof); with the
    input too, each row takes its best pass."""
    ws, model = _tiny(tmp_path)
    x = np.array([0.35, 0.8, 0.1, 0.55])
    y = read_network(model.read_bytes()).forward(x)[0]
    best, worst = int(np.argmax(y)), int(np.argmin(y))
    for label, ok in ((best, True), (worst, False)):
        claim, arrays = robustness_claim("c", "c/x", 1e-4, label, 3)
        arrays["c/x"] = x
        for stops in (["relu1"], [None, "relu1"]):
            claim["leaves"] = [{"stops": stops}]
            r = _run(tmp_path, model, [(claim, arrays)])
            assert r.ok == ok, r.lines()
    for bad in (["lin1"], [], "relu1", [None] * 5):
        claim["leaves"] = [{"stops": bad}]
        with pytest.raises(CertificateError, match="stops"):
            _run(tmp_path, model, [(claim, arrays)])
