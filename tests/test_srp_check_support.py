"""Helpers for the srp_check tests (no tests here): tiny ONNX models, a plain CROWN in float64 computed by the
test itself, and a certificate writer that follows docs/certificates.md."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp_onnx(path: Path, weights: list[tuple[np.ndarray, np.ndarray]], in_shape: tuple[int, ...] | None = None) -> Path:
    """A Gemm/Relu MLP (float32), ReLU outputs named relu0, relu1, ...; input 'x' of shape (batch, n) or in_shape."""
    n_in = weights[0][0].shape[1]
    shape = in_shape or (n_in,)
    nodes, inits, cur = [], [], "x"
    if in_shape is not None:
        inits.append(numpy_helper.from_array(np.array([-1, n_in], np.int64), "flat_shape"))
        nodes.append(helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]))
        cur = "flat"
    for i, (W, b) in enumerate(weights):
        inits += [numpy_helper.from_array(W.astype(np.float32), f"W{i}"), numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        out = f"lin{i}" if i < len(weights) - 1 else "y"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [out], transB=1))
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
            cur = f"relu{i}"
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", weights[-1][0].shape[0]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_cert(path: Path, model: Path, claims: list[dict], arrays: dict[str, np.ndarray], uncertified: list | None = None,
               sha: str | None = None) -> Path:
    """Write a certificate: the manifest as uint8 JSON plus the arrays."""
    manifest = {"format": "srp-audit certificate", "version": 1, "model": {"sha256": sha or sha256(model), "file": Path(model).name},
                "claims": claims, "uncertified": uncertified or []}
    np.savez(path, **{"manifest.json": np.frombuffer(json.dumps(manifest).encode(), np.uint8)}, **arrays)
    return Path(path)


def crown_mlp(weights: list[tuple[np.ndarray, np.ndarray]], lo: np.ndarray, hi: np.ndarray, C: np.ndarray | None = None,
              d: np.ndarray | None = None):
    """Plain CROWN (float64, no rounding care) for a Gemm/Relu MLP over the box: the pre-activation bounds of
    every hidden layer (CROWN for each layer, CROWN's slope rule), and the final lower bounds of C·y + d."""
    Ws = [(W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for W, b in weights]
    bounds: list[tuple[np.ndarray, np.ndarray]] = []

    def lower(k: int, A: np.ndarray, c: np.ndarray) -> np.ndarray:
        """min over the box of A·z_k + c, z_k the pre-activation of layer k (CROWN)."""
        for j in range(k, -1, -1):
            W, b = Ws[j]
            c = c + A @ b
            A = A @ W
            if j == 0:
                break
            l, u = bounds[j - 1]
            act, uns = l >= 0, (l < 0) & (u > 0)
            k_ = np.where(uns, u / np.where(uns, u - l, 1), 0.0)
            lam = (u >= -l).astype(float)
            c = c + np.minimum(A, 0) @ np.where(uns, -k_ * l, 0.0)
            A = np.where(act, A, 0.0) + np.where(uns, np.where(A >= 0, A * lam, A * k_), 0.0)
        return c + np.maximum(A, 0) @ lo + np.minimum(A, 0) @ hi

    for k in range(len(Ws) - 1):
        n = Ws[k][0].shape[0]
        I = np.eye(n)
        bounds.append((lower(k, I, np.zeros(n)), -lower(k, -I, np.zeros(n))))
    final = None if C is None else lower(len(Ws) - 1, C, np.zeros(len(C)) if d is None else d)
    return bounds, final


def loosen(l: np.ndarray, u: np.ndarray, rel: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Widen claimed bounds a little, as a writer does to absorb the checker's own rounding charges."""
    pad = rel * (np.abs(l) + np.abs(u)) + 1e-12
    return l - pad, u + pad


def robustness_claim(cid: str, x_key: str, eps: float, label: int, K: int, sample: int = 0, domain=(0.0, 1.0),
                     leaves: list[dict] | None = None, tree: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """A robustness claim with the margin rows y_label − y_j (one group each); returns (claim, arrays to add)."""
    rows = [j for j in range(K) if j != label]
    C = np.zeros((len(rows), K))
    for r, j in enumerate(rows):
        C[r, label], C[r, j] = 1.0, -1.0
    claim = {"id": cid, "set": {"type": "robustness", "sample": sample, "x": x_key, "eps": eps, "norm": "inf",
                                "domain": list(domain), "label": label, "classes": K},
             "spec": {"C": f"{cid}/C", "d": f"{cid}/d", "groups": [[r] for r in range(len(rows))]},
             "tree": tree or {"leaf": 0}, "leaves": leaves or [{}]}
    return claim, {f"{cid}/C": C, f"{cid}/d": np.zeros(len(rows))}
