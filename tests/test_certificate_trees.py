"""Certificates of branch-and-bound proofs: ReLU-split trees (an anchor with the root bounds and the slopes of the
optimised intermediate bounds, one subtree per spec group, α and β per leaf) and input-split trees both check,
on small MLPs and on real VNN-COMP instances; a dropped split, a tightened root bound, a slope out of range, a
β moved to another neuron or a leaf moved to another branch are rejected."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import VNNCOMP, shared_path
from srp_audit_cli.main import main
from test_srp_check_support import mlp_onnx

from srp_audit.bounds.crown import crown_bounds
from srp_audit.certificate import Certificate, ProofWriter
from srp_audit.certificate_trees import input_split_claim, relu_split_claim
from srp_audit.formats import load_model
from srp_audit.spec import InputBox, LinearSpec
from srp_check import CertificateError, check


def _problem(tmp_path: Path, seed: int, n_in: int) -> tuple[Path, ProofWriter, InputBox, LinearSpec]:
    """A random 3-output MLP on [-1, 1]^n_in and the property y_k > t_k for each k, t_k between CROWN's bound and
    the sampled minimum: true, and beyond a single CROWN pass."""
    rng = np.random.default_rng(seed)
    ws = [(rng.standard_normal((30, n_in)) / np.sqrt(n_in), rng.standard_normal(30) * 0.1),
          (rng.standard_normal((30, 30)) / np.sqrt(30), rng.standard_normal(30) * 0.1),
          (rng.standard_normal((3, 30)) / np.sqrt(30), rng.standard_normal(3) * 0.1)]
    path = mlp_onnx(tmp_path / "m.onnx", ws)
    writer = ProofWriter(str(path), load_model(str(path)))
    box = InputBox(torch.full((1, n_in), -1.0, dtype=torch.float64), torch.full((1, n_in), 1.0, dtype=torch.float64))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mins = writer.graph(torch.rand(100_000, n_in, dtype=torch.float64, generator=gen) * 2 - 1).min(0).values
        C = torch.eye(3, dtype=torch.float64).unsqueeze(0)
        crown = crown_bounds(writer.graph, box, LinearSpec(C, torch.zeros(1, 3, dtype=torch.float64), [[0], [1], [2]]), "crown").lower[0]
    assert bool((crown < mins - 0.1).all())
    t = crown + 0.6 * (mins - crown)
    return path, writer, box, LinearSpec(C, -t.unsqueeze(0), [[0], [1], [2]])


def _write(tmp_path: Path, writer: ProofWriter, claim, name: str = "c.npz") -> Path:
    cert = writer.certificate()
    cert.claims.append(claim)
    out = tmp_path / name
    cert.write(str(out))
    return out


def _load(path: Path) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(bytes(arrays.pop("manifest.json")).decode()), arrays


def _save(path: Path, manifest: dict, arrays: dict) -> Path:
    np.savez(path, **arrays, **{"manifest.json": np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)})
    return path


def _splits(node, out=None):
    """Every ReLU split node of a tree, depth first."""
    out = [] if out is None else out
    if isinstance(node, dict):
        if "relu" in node or "input" in node:
            out.append(node)
        for kid in node.get("children", []) + node.get("groups", []):
            _splits(kid, out)
    return out


@pytest.fixture(scope="module")
def relu_tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tree")
    path, writer, box, spec = _problem(tmp, 0, 20)
    claim = relu_split_claim(writer, "c", box, spec, float("inf"))
    assert claim is not None and len(claim.leaves) > 10
    return path, _write(tmp, writer, claim)


def test_relu_split_tree_checks(relu_tree) -> None:
    path, cert = relu_tree
    report = check(str(path), str(cert))
    assert report.ok, report.lines()
    manifest, _ = _load(cert)
    tree = manifest["claims"][0]["tree"]
    assert tree["bounds"] == 0 and len(tree["groups"]) == 3 and _splits(tree)
    assert report.claims[0].leaves == len(manifest["claims"][0]["leaves"]) - 1


def _tampered(tmp_path: Path, cert: Path, edit) -> Path:
    manifest, arrays = _load(cert)
    edit(manifest["claims"][0], arrays)
    return _save(tmp_path / "t.npz", manifest, arrays)


def test_dropped_split_is_rejected(relu_tree, tmp_path: Path) -> None:
    path, cert = relu_tree
    for side in (0, 1):
        def drop(claim, arrays, side=side):
            node = _splits(claim["tree"])[0]
            kid = node["children"][side]
            node.clear()
            node.update(kid)
        report = check(str(path), str(_tampered(tmp_path, cert, drop)))
        assert not report.ok  # a leaf now covers its sibling's part too: unproven there, or its β names a lost split


def test_leaf_moved_to_the_other_branch_is_rejected(relu_tree, tmp_path: Path) -> None:
    path, cert = relu_tree

    def swap(claim, arrays):
        for node in _splits(claim["tree"]):
            node["children"].reverse()
    assert not check(str(path), str(_tampered(tmp_path, cert, swap))).ok


def test_root_bound_tightened_by_one_ulp_is_rejected(relu_tree, tmp_path: Path) -> None:
    """Set root lower bounds of the second layer, one at a time, just above the checker's own derivation (from the
    claimed first-layer bounds, with the certificate's slopes or CROWN's rule, whichever is tighter): 1e-12
    relative, since the derivation's last bits depend on how the CPU's matrix kernels sum."""
    from srp_check import read_network
    from srp_check.certificate import parse_claims, read_manifest
    from srp_check.leaf import Leaf, _derive, sweep
    from srp_check.tree import LeafContext

    path, cert = relu_tree
    net = read_network(path.read_bytes())
    anchor = parse_claims(read_manifest(str(cert)), net)[0].leaves[0]
    first = Leaf(bounds={"relu0": anchor.bounds["relu0"]})
    lo, hi = np.full(20, -1.0), np.ones(20)
    st = sweep(net, first, LeafContext(0, lo, hi, {}, "root"), "t")
    z = net.nodes[net.relus["relu1"]].inputs[0]
    l_claim = anchor.bounds["relu1"][0]
    idx = np.flatnonzero(l_claim > st.lo[z])[:5]  # claims the interval pass alone does not give
    assert idx.size == 5
    derived = np.maximum(_derive(net, st, z, idx, 1.0, anchor.islopes.get("relu1")), _derive(net, st, z, idx, 1.0))
    assert np.all(derived >= l_claim[idx])
    manifest, arrays = _load(cert)
    key = manifest["claims"][0]["leaves"][0]["bounds"]["relu1"]["lower"]
    for j, v in zip(idx, derived):
        a = dict(arrays)
        a[key] = arrays[key].copy()
        a[key][j] = v + 1e-12 * max(1.0, abs(v))  # past any difference of summation order between BLAS kernels
        report = check(str(path), str(_save(tmp_path / "t.npz", manifest, a)))
        assert not report.ok and "not derived" in report.claims[0].reason


def test_intermediate_slope_out_of_range_and_stray_beta_are_rejected(relu_tree, tmp_path: Path) -> None:
    path, cert = relu_tree
    manifest, arrays = _load(cert)
    claim = manifest["claims"][0]
    isl = claim["leaves"][0]["islopes"]
    assert isl, "the root's optimised intermediate bounds carry their slopes"
    key = next(iter(next(iter(isl.values()))["slopes"].values()))
    a = dict(arrays)
    a[key] = arrays[key].copy()
    a[key].reshape(-1)[0] = 1.5
    report = check(str(path), str(_save(tmp_path / "t.npz", manifest, a)))
    assert not report.ok and "outside [0, 1]" in report.claims[0].reason
    with_beta = [leaf for leaf in claim["leaves"] if leaf.get("beta")]
    assert with_beta
    key = next(iter(with_beta[0]["beta"].values()))
    b = arrays[key].copy()
    b[:, np.argmin(b.max(axis=0))] = 0.5  # a multiplier on a neuron no split on the path names
    a = dict(arrays)
    a[key] = b
    report = check(str(path), str(_save(tmp_path / "t.npz", manifest, a)))
    assert not report.ok and "not split on the path" in report.claims[0].reason


def test_groups_node_needs_one_child_per_group(relu_tree, tmp_path: Path) -> None:
    path, cert = relu_tree
    with pytest.raises(CertificateError, match="one child per spec group"):
        check(str(path), str(_tampered(tmp_path, cert, lambda c, a: c["tree"]["groups"].pop())))


def test_input_split_tree_checks_and_a_dropped_half_is_rejected(tmp_path: Path) -> None:
    path, writer, box, spec = _problem(tmp_path, 1, 3)
    claim = input_split_claim(writer, "c", box, spec, ("crown",), float("inf"))
    assert claim is not None and "input" in claim.tree
    cert = _write(tmp_path, writer, claim)
    assert check(str(path), str(cert)).ok

    def drop(c, arrays):
        node = c["tree"]
        while "children" in node["children"][0]:
            node = node["children"][0]
        kid = node["children"][0]
        node.clear()
        node.update(kid)
    assert not check(str(path), str(_tampered(tmp_path, cert, drop))).ok


def _vnncomp(tmp_path: Path, family: str, onnx_name: str, prop: str) -> tuple[Path, Path]:
    model = shared_path("benchmarks", "vnncomp", family, "onnx", onnx_name)
    spec = tmp_path / prop
    spec.write_bytes(gzip.decompress((VNNCOMP / family / "vnnlib" / f"{prop}.gz").read_bytes()))
    return model, spec


def test_verify_certificate_of_a_branch_and_bound_proof_checks(tmp_path: Path) -> None:
    """mnist_fc 256x2 prop_11 at 0.05 needs ReLU branch and bound; its certificate checks against the VNN-LIB file."""
    model, spec = _vnncomp(tmp_path, "mnist_fc", "mnist-net_256x2.onnx", "prop_11_0.05.vnnlib")
    cert = tmp_path / "p.npz"
    r = CliRunner().invoke(main, ["verify", str(model), str(spec), "--timeout", "60", "--certificate", str(cert)])
    assert r.exit_code == 0 and "unsat by bab-relu" in r.output, r.output
    manifest, _ = _load(cert)
    assert len(manifest["claims"]) == 1 and not manifest["uncertified"] and "groups" in manifest["claims"][0]["tree"]
    r = CliRunner().invoke(main, ["check", str(model), str(cert), "--spec", str(spec)])
    assert r.exit_code == 0, r.output


def test_certificate_serialises_trees(relu_tree) -> None:
    """A Certificate round-trips: the written tree and leaf count are the claim's."""
    _, cert = relu_tree
    manifest, arrays = _load(cert)
    claim = manifest["claims"][0]
    assert all(set(leaf) >= {"bounds", "slopes", "beta", "stops"} for leaf in claim["leaves"])
    assert isinstance(copy.deepcopy(Certificate("0" * 64, "m").to_bytes()), bytes)


def _vector_model(path: Path) -> Path:
    """y = W1·relu(W0·x + b0) + b1 on a 2-vector input without a batch axis, MatMul(weight, data) as some exporters
    write it."""
    from onnx import TensorProto, helper, numpy_helper, save

    inits = [numpy_helper.from_array(np.array([[1.0, -1.0], [0.5, 1.0], [-1.0, 0.25]], np.float32), "W0"),
             numpy_helper.from_array(np.array([0.1, -0.2, 0.3], np.float32), "b0"),
             numpy_helper.from_array(np.array([[1.0, 0.5, -1.0], [-0.5, 1.0, 0.5]], np.float32), "W1"),
             numpy_helper.from_array(np.array([0.0, 0.1], np.float32), "b1")]
    nodes = [helper.make_node("MatMul", ["W0", "x"], ["m0"]), helper.make_node("Add", ["m0", "b0"], ["h0"]),
             helper.make_node("Relu", ["h0"], ["r0"]), helper.make_node("MatMul", ["W1", "r0"], ["m1"]),
             helper.make_node("Add", ["m1", "b1"], ["y"])]
    g = helper.make_graph(nodes, "vec", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], inits)
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


TWO_BOXES = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (or (and (>= X_0 -1) (<= X_0 -0.5) (>= X_1 0.5) (<= X_1 1) (>= Y_0 20))
            (and (>= X_0 0.5) (<= X_0 1) (>= X_1 -1) (<= X_1 -0.5) (>= Y_1 20) (<= Y_0 Y_1))))
"""


def test_vector_model_and_a_spec_of_two_input_boxes(tmp_path: Path) -> None:
    """A model without a batch axis, and a VNN-LIB file whose disjuncts have their own input boxes: one claim per
    box, and the certificate checks against the file only while every box is covered."""
    model = _vector_model(tmp_path / "v.onnx")
    spec = tmp_path / "two.vnnlib"
    spec.write_text(TWO_BOXES)
    cert = tmp_path / "c.npz"
    r = CliRunner().invoke(main, ["verify", str(model), str(spec), "--timeout", "30", "--certificate", str(cert)])
    assert r.exit_code == 0 and r.output.startswith("unsat"), r.output
    r = CliRunner().invoke(main, ["check", str(model), str(cert), "--spec", str(spec)])
    assert r.exit_code == 0 and "2 of 2 claims check" in r.output, r.output
    manifest, arrays = _load(cert)
    manifest["claims"] = manifest["claims"][:1]
    r = CliRunner().invoke(main, ["check", str(model), str(_save(tmp_path / "one.npz", manifest, arrays)), "--spec", str(spec)])
    assert r.exit_code == 1 and "input box 1 of the spec file is covered by no claim" in r.output, r.output


@pytest.mark.parametrize("name", ["test_nano", "test_tiny", "test_small"])
def test_vnncomp_test_family_unbatched_models_are_certified(tmp_path: Path, name: str) -> None:
    model = shared_path("benchmarks", "vnncomp", "test", f"{name}.onnx")
    spec = VNNCOMP / "test" / f"{name}.vnnlib"
    cert = tmp_path / "c.npz"
    r = CliRunner().invoke(main, ["verify", str(model), str(spec), "--timeout", "30", "--certificate", str(cert)])
    assert r.exit_code == 0 and r.output.startswith("unsat"), r.output
    r = CliRunner().invoke(main, ["check", str(model), str(cert), "--spec", str(spec)])
    assert r.exit_code == 0 and "1 of 1 claims check; 0 verdicts uncertified" in r.output, r.output
