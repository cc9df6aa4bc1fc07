"""Certificates of proofs by branch and bound (docs/certificates.md, "the tree"): the tree of splits whose leaves
each carry a linear-relaxation proof of their part of the input box.

* ReLU splitting: `relu_bab` is run again with a trace, its root bounds widened as the writer's claims are (so
  the checker re-derives them) and the slopes of its optimised intermediate bounds recorded. The tree is
  {"bounds": 0, "groups": [one subtree per spec group]}: entry 0 holds the root bounds, verified once on the
  whole box, and each group's subtree is the trie of its proved domains' split paths; a leaf holds the α and β its
  domain's bound used (none: CROWN's slopes, as the checker's rule).
* Input splitting (low-dimensional inputs): sub-boxes are halved along their widest side until the bound cascade
  proves each; every leaf carries its own bounds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from .bab import BabProof, BabTrace, relu_bab
from .bounds import CASCADE_METHODS, CROWN, BoundMethod, get_method
from .certificate import Certificate, Claim, Leaf, ProofWriter, flat64, robustness_input_set
from .certify_bab import BAB_METHOD
from .ir.graph import Graph
from .spec import InputBox, LinearSpec, ball, margin_spec
from .verify import INPUT_SPLIT_MAX_DIMS

MAX_INPUT_LEAVES = 100_000


def _flat(t: torch.Tensor, rows: int | None = None) -> np.ndarray:
    """A parameter tensor flattened per row, exactly: float64 stays float64, float32 and float16 become float32."""
    t = t.detach().to(torch.float64 if t.dtype == torch.float64 else torch.float32).cpu()
    return (t.reshape(-1) if rows is None else t.reshape(rows, -1)).numpy().copy()


def _trie(items: list[tuple[tuple, int]], depth: int, name: dict[str, str]) -> dict:
    """The tree of the split paths `items` ((path, leaf index)) below `depth` steps, which share their first steps."""
    if len(items) == 1 and len(items[0][0]) == depth:
        return {"leaf": items[0][1]}
    if any(len(p) <= depth for p, _ in items):
        raise ValueError("a proved domain's path is a prefix of another's")
    pre, k, _ = items[0][0][depth]
    if any(p[depth][:2] != (pre, k) for p, _ in items):
        raise ValueError("domains that share a path split on different neurons after it")
    kids = [[it for it in items if it[0][depth][2] == sign] for sign in (1, -1)]
    if not all(kids):
        raise ValueError(f"only one side of the split of neuron {k} of {pre} was proved")
    return {"relu": name[pre], "neuron": int(k), "children": [_trie(c, depth + 1, name) for c in kids]}


def relu_split_claim(writer: ProofWriter, ident: str, box: InputBox, spec: LinearSpec, deadline: float) -> Claim | None:
    """Prove `spec` on `box` (one sample, float64) by ReLU branch and bound with a trace, and write its tree; None
    when the search does not prove it before `deadline`."""
    graph = writer.graph
    trace = BabTrace()
    if relu_bab(graph, box, spec, deadline, widen=writer.widen_claim, trace=trace).status != "unsat":
        return None
    relu_of_pre = {graph.inputs_of[r][0]: onnx for r, onnx in writer.relus.items()}
    anchor = Leaf()
    for pre, onnx in relu_of_pre.items():
        lo, hi = trace.root.bounds[pre]  # type: ignore[union-attr]  # not None: relu_bab records the root when given a trace
        anchor.bounds[onnx] = (lo[0].reshape(-1).cpu().numpy().copy(), hi[0].reshape(-1).cpu().numpy().copy())
    for pre, (idx, slopes) in trace.islopes.items():
        if pre in relu_of_pre:
            given = {writer.relus[r]: _flat(a).reshape(2, idx.numel(), -1) for r, a in slopes.items() if r in writer.relus}
            anchor.islopes[relu_of_pre[pre]] = (idx.cpu().numpy().astype(np.int64), given)
    leaves, subtrees = [anchor], []
    for g, rows in enumerate(spec.groups):
        order = np.argsort(rows, kind="stable")  # the checker reads a leaf's rows in ascending order
        items = []
        for proof in trace.proofs.get(g, []):
            items.append((proof.path, len(leaves)))
            leaves.append(_leaf(proof, order, writer, relu_of_pre))
        if not items:
            return None
        try:
            subtrees.append(_trie(items, 0, relu_of_pre))
        except ValueError:
            return None
    input_set = {"type": "box", "lower": flat64(box.lower), "upper": flat64(box.upper)}
    return Claim(ident, input_set, spec.C[0].double().numpy(), spec.d[0].double().numpy(), [list(g) for g in spec.groups],
                 leaves, {"bounds": 0, "groups": subtrees})


def _leaf(proof: BabProof, order: np.ndarray, writer: ProofWriter, relu_of_pre: dict[str, str]) -> Leaf:
    """A proved domain's leaf: its α per ReLU and β per split ReLU, rows in ascending spec-row order."""
    leaf = Leaf()
    if proof.empty:
        return leaf
    for node, a in proof.alpha.items():
        if node in writer.relus:
            leaf.slopes[writer.relus[node]] = _flat(a, a.shape[0])[order]
    for pre, b in proof.beta.items():
        if pre in relu_of_pre and bool((b > 0).any()):
            leaf.beta[relu_of_pre[pre]] = _flat(b, b.shape[0])[order]
    return leaf


def input_split_claim(writer: ProofWriter, ident: str, box: InputBox, spec: LinearSpec, methods: Sequence[BoundMethod | str],
                      deadline: float, alpha_iters: int = 20) -> Claim | None:
    """Prove `spec` on `box` by halving sub-boxes along their widest side until `methods` prove each (each leaf its
    own proof); None past `deadline` or `MAX_INPUT_LEAVES` leaves."""
    leaves: list[Leaf] = []
    root: dict = {}
    todo = [(box.lower, box.upper, root)]
    while todo:
        if time.perf_counter() > deadline or len(leaves) > MAX_INPUT_LEAVES:
            return None
        lo, hi, node = todo.pop()
        leaf = writer.first_proof(InputBox(lo, hi), spec, methods, alpha_iters)
        if leaf is not None:
            node["leaf"] = len(leaves)
            leaves.append(leaf)
            continue
        width = (hi - lo).reshape(-1)
        j = int(width.argmax())
        if float(width[j]) <= 0:
            return None
        mid = float((lo.reshape(-1)[j] + hi.reshape(-1)[j]) / 2)
        left_hi, right_lo = hi.clone(), lo.clone()
        left_hi.view(-1)[j], right_lo.view(-1)[j] = mid, mid
        kids: list[dict] = [{}, {}]
        node.update({"input": j, "at": mid, "children": kids})
        todo += [(right_lo, hi, kids[1]), (lo, left_hi, kids[0])]
    input_set = {"type": "box", "lower": flat64(box.lower), "upper": flat64(box.upper)}
    return Claim(ident, input_set, spec.C[0].double().numpy(), spec.d[0].double().numpy(), [list(g) for g in spec.groups],
                 leaves, root)


def verify_certificate(model_path: str, graph: Graph, spec, alpha_iters: int = 20, timeout: float = 60.0) -> Certificate:
    """A claim per disjunct box of an unsat VNN-LIB property (`spec`: a VnnlibSpec): proved again by the bound
    cascade, else by branch and bound with its tree (input splitting for low-dimensional inputs, as `verify`; ReLU
    splitting otherwise), each search given `timeout` seconds."""
    writer = ProofWriter(model_path, graph)
    cert = writer.certificate()
    name = os.path.basename(spec.path)
    for i, clause in enumerate(spec.clauses):
        ident = f"{name}, input box {i}"
        if writer.reason:
            cert.uncertified.append((ident, writer.reason))
            continue
        s = clause.spec(torch.float64)
        claim = writer.box_claim(ident, clause.lower, clause.upper, s, CASCADE_METHODS, alpha_iters)
        if claim is None:
            shape = (1,) + tuple(writer.graph.input_shape)
            box = InputBox(torch.from_numpy(np.asarray(clause.lower, dtype=np.float64)).reshape(shape),
                           torch.from_numpy(np.asarray(clause.upper, dtype=np.float64)).reshape(shape))
            deadline = time.perf_counter() + timeout
            if box.lower.numel() <= INPUT_SPLIT_MAX_DIMS:
                claim = input_split_claim(writer, ident, box, s, (CROWN,), deadline, alpha_iters)
            else:
                claim = relu_split_claim(writer, ident, box, s, deadline)
        if claim is None:
            cert.uncertified.append((ident, f"branch and bound did not prove it again within {timeout:g} s for the certificate"))
        else:
            cert.claims.append(claim)
    return cert


def certify_certificate(model_path: str, graph: Graph, x: torch.Tensor, samples: list, options, reason: str | None = None) -> Certificate:
    """A claim for every verified verdict of a `certify` run: each sample at --eps and at every swept eps it is
    verified at, and at its certified radius (the radius search's proof). `samples` are its `SampleResult`s, `x`
    the data they were computed on (float32, in order); `reason`: why none can be certified, if known already. A
    verdict that branch and bound proved is proved again with its tree, given `BAB_REPROOF` × --bab-time."""
    writer = ProofWriter(model_path, graph)
    writer.reason = reason or writer.reason
    cert = writer.certificate()
    for pos, s in enumerate(samples):
        targets: list[float] = []
        if s.verdict == "verified":
            targets.append(float(options.eps))
        for e, v in zip(sorted(options.sweep), s.sweep_verdicts):
            if v == "verified" and float(e) not in targets:
                targets.append(float(e))
        if options.radius and s.certified_radius > 0 and float(s.certified_radius) not in targets:
            targets.append(float(s.certified_radius))
        for eps in targets:
            ident = f"sample {s.index} at eps {eps:g}"
            if writer.reason:
                cert.uncertified.append((ident, writer.reason))
                continue
            at_eps = eps == float(options.eps)
            by_bab = s.method == BAB_METHOD and eps <= float(options.eps)  # and the swept radii inside its ball
            first = (get_method(s.method),) if s.method and s.method != BAB_METHOD and at_eps else ()
            methods = first + tuple(m for m in CASCADE_METHODS if m not in first)
            claim = None
            if not (by_bab and at_eps):  # at --eps the cascade already failed where branch and bound proved
                claim = writer.robustness_claim(s.index, x[pos], s.label, eps, options.domain, methods, options.alpha_iters, options.norm)
            if claim is None and by_bab:
                claim = _robustness_tree_claim(writer, ident, s, x[pos], eps, options)
            if claim is None:
                cert.uncertified.append((ident, "re-running its proof for the certificate did not prove it again"))
            else:
                cert.claims.append(claim)
    return cert


BAB_REPROOF = 4  # the re-proof's time allowance, in units of the search's own (tracing and widened bounds cost more)


def _robustness_tree_claim(writer: ProofWriter, ident: str, s, x: torch.Tensor, eps: float, options) -> Claim | None:
    """Sample `s` (its `SampleResult`) proved again by ReLU branch and bound on its L∞ ball, as a robustness claim."""
    x64 = x.detach().to(torch.float64).reshape((1,) + tuple(writer.graph.input_shape))
    spec = margin_spec(torch.tensor([int(s.label)]), writer.graph.num_classes)
    claim = relu_split_claim(writer, ident, ball(x64, eps, options.domain, options.norm), spec,
                             time.perf_counter() + BAB_REPROOF * options.bab_time)
    if claim is not None:
        claim.input_set = robustness_input_set(s.index, x, s.label, writer.graph.num_classes, eps, options.domain, options.norm)
    return claim
