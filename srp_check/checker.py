"""`check(model, certificate)`: the checker's one entry point, and its report.

Order of work: read the certificate's manifest; hash the model file's bytes and refuse a certificate of another
model; read the model (only if there are claims); validate every claim against it; then, claim by claim, build
the input box, compare it and the spec with the user's data / spec file, walk the tree and prove every leaf.
Bad input raises `CertificateError`; a claim that does not check is reported with its first failing step.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from .certificate import Claim, parse_claims, read_manifest
from .errors import CertificateError, Rejected
from .inputs import check_sample, claim_box, covered_cases, margin_groups, require_groups, statement
from .leaf import anchor_bounds, prove_leaf
from .network import Network, read_network
from .tree import walk
from .vnnlib import VnnSpec, read_vnnlib


@dataclass(frozen=True)
class ClaimResult:
    """One claim: `ok`, or `reason`, the first failing step (which leaf, tensor, neuron, numbers)."""

    id: str
    ok: bool
    reason: str
    statement: str
    leaves: int


@dataclass(frozen=True)
class Report:
    """Every claim's result, the verdicts the certificate lists as uncertified (id, reason) and, when checked
    against a spec file, its input boxes no checked claim covers."""

    model_sha256: str
    claims: tuple[ClaimResult, ...]
    uncertified: tuple[tuple[str, str], ...]
    uncovered: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every claim checks (vacuously so for a certificate without claims) and covers the spec file."""
        return all(c.ok for c in self.claims) and not self.uncovered

    def lines(self) -> list[str]:
        """A human-readable summary, one line per claim, per uncertified verdict and per uncovered input box."""
        out = [f"{'ok  ' if c.ok else 'FAIL'} {c.id}: {c.statement}" + ("" if c.ok else f" — {c.reason}") for c in self.claims]
        return out + [f"uncertified {i}: {r}" for i, r in self.uncertified] + [f"FAIL {u}" for u in self.uncovered]


def _check_claim(net: Network, claim: Claim, data: str | None, spec: VnnSpec | None, covers: set[int]) -> ClaimResult:
    """Check one claim; with `spec`, the cases of the file it covers are added to `covers` when it checks."""
    where = f"claim {claim.id!r}"
    count, cases = 0, []
    try:
        K = net.sizes[net.output]
        lo, hi = claim_box(claim)
        if claim.input_set["type"] == "robustness":
            if data is not None:
                check_sample(claim, data)
            require_groups(claim, margin_groups(claim.input_set["label"], K), "the margins of its label")
        elif data is not None:
            check_sample(claim, data)
        if spec is not None:
            cases = covered_cases(claim, spec, lo, hi, K)
        verified: list = []  # per walk item: an anchor's verified bounds (None: empty region), else None
        for ctx in walk(claim.tree, lo, hi, net, len(claim.leaves), len(claim.groups), where):
            above = [verified[a] for a in ctx.anchors]
            verified.append(None)
            if any(b is None for b in above):
                continue  # an anchor above found its region empty: nothing left to prove here
            base = above[-1] if above else None
            if ctx.anchor:
                verified[-1] = anchor_bounds(net, claim, ctx, f"{where}, bounds {ctx.index} at {ctx.path}", base)
                continue
            prove_leaf(net, claim, ctx, f"{where}, leaf {ctx.index} ({ctx.path})", base)
            count += 1
    except Rejected as e:
        msg = str(e)
        return ClaimResult(claim.id, False, msg if msg.startswith(where) else f"{where}: {msg}", statement(claim), count)
    covers.update(cases)
    return ClaimResult(claim.id, True, "", statement(claim), count)


def check(model_path: str | os.PathLike, cert_path: str | os.PathLike, data: str | os.PathLike | None = None,
          spec: str | os.PathLike | None = None) -> Report:
    """Re-check every claim of the certificate at `cert_path` against the ONNX model at `model_path`.

    `data`: an .npz with `x` (uint8 or float) and `y`; robustness claims must then be about its samples.
    `spec`: a VNN-LIB file; every claim must then cover its input box and imply its property.
    Raises `CertificateError` for bad input (unreadable files, a certificate of another model, malformed fields,
    an operator outside format version 1)."""
    man = read_manifest(str(cert_path))
    try:
        with open(model_path, "rb") as fh:
            model_bytes = fh.read()
    except OSError as e:
        raise CertificateError(f"cannot read the model {model_path}: {e}") from None
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != man.sha256:
        raise CertificateError(f"a certificate of another model: the model's SHA-256 is {digest}, the certificate's "
                               f"{man.sha256} ({man.model_file or 'no file name'})")
    vnn = read_vnnlib(str(spec)) if spec is not None else None
    results: list[ClaimResult] = []
    covers: set[int] = set()
    if man.raw_claims:
        net = read_network(model_bytes)
        results = [_check_claim(net, c, None if data is None else str(data), vnn, covers) for c in parse_claims(man, net)]
    uncovered = [] if vnn is None else [f"input box {k} of the spec file is covered by no claim that checks"
                                        for k in range(len(vnn.cases)) if k not in covers]
    return Report(digest, tuple(results), tuple(man.uncertified), tuple(uncovered))
