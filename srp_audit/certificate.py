"""Proof certificates (docs/certificates.md): the data behind each "verified" / "unsat" verdict, written for the
independent checker `srp_check`, which re-derives every number instead of trusting it.

A certificate names what the checker can see in the ONNX file — ReLUs by the name of their output tensor, values
flattened in the tensor's C order without the batch axis — never srp-audit's own IR names. A verdict whose proof
the format cannot express (an operator the checker does not interpret, a fixed batch, a final softmax
that `certify` strips) is listed under `uncertified` with the reason instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch

from .atomic import write_bytes_atomic
from .bounds import BoundMethod, as_methods
from .ir.graph import Graph
from .kernel.relax import relu_adaptive_lower
from .ops.affine import Dense
from .ops.relu import Relu
from .spec import InputBox, LinearSpec, ball, margin_spec

FORMAT = "srp-audit certificate"
VERSION = 1
CHECKED_OPS = frozenset({"Gemm", "MatMul", "Conv", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Relu", "Flatten",
                         "Reshape", "Identity", "Dropout", "MaxPool", "AveragePool"})
"""Operators `srp_check` interprets on the model's data (version 1); others may only compute constants."""
VECTOR_OPS = frozenset({"MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Identity", "Dropout"})
"""What `srp_check` reads on a model whose input is a vector without a batch axis (it reads it as one row)."""
LOOSEN = 1e-7
"""Claimed intermediate bounds are widened by this (relative to max(1, |bound|)) so that the checker, whose rounding
allowances differ from ours, re-derives them; the final margins it recomputes move by as little."""


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Leaf:
    """One linear-relaxation proof: ReLU input bounds and lower slopes by ONNX tensor name (a ReLU's output), split
    multipliers, and where the final passes stop (None: at the input; a ReLU output: over its interval, as IBP)."""

    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    slopes: dict[str, np.ndarray] = field(default_factory=dict)
    beta: dict[str, np.ndarray] = field(default_factory=dict)
    stops: list[str | None] = field(default_factory=lambda: [None])
    islopes: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = field(default_factory=dict)  # per ReLU: (neurons
    # (k,) int64, {earlier ReLU: (2, k, n) slopes of their lower / upper bound's pass}): optimised intermediate bounds


@dataclass
class Claim:
    id: str
    input_set: dict  # JSON fields; numpy arrays are stored as members and named by key
    C: np.ndarray
    d: np.ndarray
    groups: list[list[int]]
    leaves: list[Leaf]
    tree: dict = field(default_factory=lambda: {"leaf": 0})


@dataclass
class Certificate:
    sha256: str
    file: str
    claims: list[Claim] = field(default_factory=list)
    uncertified: list[tuple[str, str]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """The `.npz` archive: `manifest.json` (UTF-8 JSON as uint8) and the arrays it names."""
        arrays: dict[str, np.ndarray] = {}

        def put(key: str, a: np.ndarray) -> str:
            arrays[key] = np.ascontiguousarray(a)
            return key

        claims = []
        for i, c in enumerate(self.claims):
            p = f"c{i}"
            fields = {k: (put(f"{p}/set/{k}", v) if isinstance(v, np.ndarray) else v) for k, v in c.input_set.items()}
            leaves = []
            for j, leaf in enumerate(c.leaves):
                q = f"{p}/leaf{j}"
                entry: dict = {
                    "bounds": {t: {"lower": put(f"{q}/lower/{t}", lo), "upper": put(f"{q}/upper/{t}", hi)} for t, (lo, hi) in leaf.bounds.items()},
                    "slopes": {t: put(f"{q}/slopes/{t}", s) for t, s in leaf.slopes.items()},
                    "beta": {t: put(f"{q}/beta/{t}", b) for t, b in leaf.beta.items()},
                }
                entry["stops"] = leaf.stops
                if leaf.islopes:
                    entry["islopes"] = {t: {"neurons": put(f"{q}/islopes/{t}/neurons", idx),
                                            "slopes": {r: put(f"{q}/islopes/{t}/{r}", a) for r, a in sl.items()}}
                                        for t, (idx, sl) in leaf.islopes.items()}
                leaves.append(entry)
            claims.append({"id": c.id, "set": fields, "spec": {"C": put(f"{p}/C", c.C), "d": put(f"{p}/d", c.d), "groups": c.groups},
                           "tree": c.tree, "leaves": leaves})
        manifest = {"format": FORMAT, "version": VERSION, "model": {"sha256": self.sha256, "file": self.file},
                    "claims": claims, "uncertified": [{"id": i, "reason": r} for i, r in self.uncertified]}
        arrays["manifest.json"] = np.frombuffer(json.dumps(manifest, indent=1).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # array names: never the `allow_pickle` keyword
        return buf.getvalue()

    def write(self, path: str) -> None:
        write_bytes_atomic(path, self.to_bytes())


def _data_ops(model: onnx.ModelProto) -> set[str]:
    """Operator types of the nodes that read (directly or not) the model's data values (not just their shape)."""
    inits = {t.name for t in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in inits}
    ops: set[str] = set()
    for node in model.graph.node:
        ins = node.input[:1] if node.op_type == "CastLike" else node.input  # CastLike reads its target's type only
        if node.op_type != "Shape" and any(i in live for i in ins):  # a shape is a constant here
            ops.add(node.op_type)
            live.update(o for o in node.output if o)
    return ops


def robustness_input_set(sample: int, x: torch.Tensor, label: int, classes: int, eps: float, domain: tuple[float, float],
                         norm: str) -> dict:
    """A robustness claim's input set: sample `x` (float32, as the data holds it) keeps `label` on the ball ∩ domain."""
    return {"type": "robustness", "sample": int(sample), "x": x.detach().to(torch.float32).reshape(-1).numpy(),
            "eps": float(eps), "norm": norm, "domain": [float(domain[0]), float(domain[1])], "label": int(label), "classes": classes}


def flat64(a: np.ndarray | torch.Tensor) -> np.ndarray:
    """`a` as a flat float64 array (a box's bounds in a claim's input set)."""
    return np.asarray(a, dtype=np.float64).reshape(-1)


class ProofWriter:
    """Turns srp-audit's proofs of one ONNX model into certificate claims: knows the model's ReLUs by ONNX name, or
    why its proofs cannot be certified (`reason`)."""

    def __init__(self, model_path: str, graph: Graph) -> None:
        self.path = model_path
        self.sha256 = sha256_of(model_path)
        self.graph = graph.copy(dtype=torch.float64).eval()
        self.graph.requires_grad_(False)
        self.relus: dict[str, str] = {}
        self.reason = self._why_not(model_path)

    def certificate(self) -> Certificate:
        return Certificate(self.sha256, os.path.basename(self.path))

    def _why_not(self, path: str) -> str | None:
        if not path.lower().endswith(".onnx"):
            return "certificates are written for ONNX models (the checker reads the ONNX file itself)"
        if not self.graph.meta.batched and len(self.graph.input_shape) != 1:
            return "the checker reads models whose input has a leading batch axis (1 or symbolic), or is a vector"
        model = onnx.load(path)
        inits = {t.name for t in model.graph.initializer}
        if len([i for i in model.graph.input if i.name not in inits]) != 1 or len(model.graph.output) != 1:
            return "the checker reads models with one data input and one output"
        other = sorted(_data_ops(model) - (CHECKED_OPS if self.graph.meta.batched else VECTOR_OPS))
        if other:
            where = "" if self.graph.meta.batched else " on a model whose input is a vector without a batch axis"
            return f"the checker does not interpret {', '.join(other)}{where} yet"
        for node in model.graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Gemm" and (attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0)):
                return "the checker reads Gemm with alpha = beta = 1 and no transposed input only"
            explicit = attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID", "NOTSET", "VALID")
            if node.op_type == "Conv" and not explicit:
                return "the checker reads Conv with explicit padding only (auto_pad NOTSET or VALID)"
            if node.op_type in ("MaxPool", "AveragePool") and (attrs.get("ceil_mode", 0) or not explicit or len(attrs.get("kernel_shape", ())) != 2):
                return f"the checker reads 2-D {node.op_type} with ceil_mode 0 and explicit padding only"
            if node.op_type == "AveragePool" and not attrs.get("count_include_pad", 0) and any(attrs.get("pads", ())):
                return "the checker reads AveragePool with padding only where the padding counts (count_include_pad 1)"
        producers = {o: n.op_type for n in model.graph.node for o in n.output}
        for name in self.graph.order:
            node = self.graph.node(name)
            if node.kinked_at_zero:
                onnx_name = self.graph.meta.values.get(name)
                if not isinstance(node, Relu) or onnx_name is None or producers.get(onnx_name) != "Relu":
                    return f"the ReLU-like node {name} has no ONNX Relu the checker could name"
                self.relus[name] = onnx_name
        return None

    # ------------------------------------------------------------------------------------------ proofs

    def robustness_claim(self, sample: int, x: torch.Tensor, label: int, eps: float, domain: tuple[float, float],
                         methods: Sequence[BoundMethod | str], alpha_iters: int = 20, norm: str = "inf") -> Claim | None:
        """The claim that sample `x` (float32, its own shape) keeps `label` on the `norm` ball of radius `eps` ∩ domain,
        with the first of `methods` whose proof the format can carry; None when none proves it. Methods that do not
        declare `norm` among their certificate `norms` are skipped (IBP over an L2/L1 ball: its ball rule bounds a
        first layer the checker's interval pass, over the bounding box, does not)."""
        x64 = x.detach().to(torch.float64).reshape((1,) + tuple(self.graph.input_shape))
        box = ball(x64, float(eps), domain, norm)
        methods = tuple(m for m in as_methods(methods) if norm in m.norms)
        k = self.graph.num_classes
        spec = margin_spec(torch.tensor([int(label)]), k)
        leaf = self.first_proof(box, spec, methods, alpha_iters)
        if leaf is None:
            return None
        input_set = robustness_input_set(sample, x, label, k, eps, domain, norm)
        return Claim(f"sample {sample} at eps {eps:g}", input_set, spec.C[0].numpy(), spec.d[0].numpy(), [list(g) for g in spec.groups], [leaf])

    def box_claim(self, ident: str, lower: np.ndarray, upper: np.ndarray, spec: LinearSpec, methods: Sequence[BoundMethod | str],
                  alpha_iters: int = 20) -> Claim | None:
        """The claim that `spec` holds on the box [lower, upper] (flattened input), or None."""
        shape = (1,) + tuple(self.graph.input_shape)
        box = InputBox(torch.from_numpy(np.asarray(lower, dtype=np.float64)).reshape(shape),
                       torch.from_numpy(np.asarray(upper, dtype=np.float64)).reshape(shape))
        leaf = self.first_proof(box, spec.to(torch.float64), methods, alpha_iters)
        if leaf is None:
            return None
        input_set = {"type": "box", "lower": flat64(lower), "upper": flat64(upper)}
        return Claim(ident, input_set, spec.C[0].double().numpy(), spec.d[0].double().numpy(), [list(g) for g in spec.groups], [leaf])

    def first_proof(self, box: InputBox, spec: LinearSpec, methods: Sequence[BoundMethod | str], alpha_iters: int) -> Leaf | None:
        """The leaf of the first of `methods` (objects or names) that proves `spec` on `box`, or None."""
        for method in as_methods(methods):
            leaf = self._proof(box, spec, method, alpha_iters)
            if leaf is not None:
                return leaf
        return None

    def _proof(self, box: InputBox, spec: LinearSpec, method: BoundMethod, alpha_iters: int) -> Leaf | None:
        """The leaf of `method`'s proof on one sample, or None when the method does not prove the spec.

        The checker re-derives every claimed ReLU input bound from the claims before it, with CROWN's slope rule,
        so the bounds are recomputed here layer by layer from the *claimed* (widened) earlier bounds, each widened
        by `LOOSEN` before the next layer uses it (`BoundMethod.claim_bounds`); alpha-CROWN keeps CROWN's intermediate
        bounds and optimises the final pass's slopes only. The final passes go to the input and, where the last layer
        is a Dense after a ReLU, stop at that ReLU's interval too (IBP's bound of the margins): each row takes its best.
        A method that is not `linear` (IBP) proves by that interval stop alone."""
        last = self.graph.node(self.graph.output)
        ibp_stop = self.relus.get(self.graph.inputs_of[self.graph.output][0]) if isinstance(last, Dense) else None
        claimed = method.claim_bounds(self.graph, box, spec, self.widen_claim, alpha_iters)
        if not method.linear:
            return Leaf(stops=[ibp_stop]) if ibp_stop is not None and bool(spec.proved(claimed.lower)[0]) else None
        ctx, state = claimed.ctx, claimed.slopes
        assert ctx is not None, f"the linear method {method.name} returned no relaxation"
        if not bool(spec.proved(claimed.lower.detach())[0]):
            return None
        leaf = Leaf(stops=[None] + ([ibp_stop] if ibp_stop is not None else []))
        for name, onnx_name in self.relus.items():
            lo, hi = (t.detach()[0].reshape(-1) for t in ctx.bounds[self.graph.inputs_of[name][0]])
            leaf.bounds[onnx_name] = (lo.numpy().copy(), hi.numpy().copy())
            alpha = (state or {}).get("alpha:" + name)
            slopes = alpha.detach()[0].reshape(alpha.shape[1], -1) if alpha is not None else relu_adaptive_lower(lo, hi)
            leaf.slopes[onnx_name] = slopes.clamp(0.0, 1.0).to(torch.float64).numpy()
        return leaf

    def widen_claim(self, name: str, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A ReLU input's bounds as claimed: moved outward by LOOSEN relative to max(1, |bound|)."""
        if not any(self.graph.inputs_of[r][0] == name for r in self.relus):
            return None
        return _widen(lo, -1.0), _widen(hi, 1.0)


def _widen(t: torch.Tensor, direction: float) -> torch.Tensor:
    """A claimed bound moved outward by LOOSEN relative to max(1, |t|) (infinite bounds stay)."""
    out = t + direction * LOOSEN * torch.clamp(t.abs(), min=1.0)
    return torch.where(torch.isfinite(t), out, t)


__all__ = ["Certificate", "Claim", "Leaf", "ProofWriter", "sha256_of", "FORMAT", "VERSION", "CHECKED_OPS"]
