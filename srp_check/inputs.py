"""What a claim is about: its input box, built by the checker, and its spec rows, compared with what the user
asked (their data file, their VNN-LIB file). All comparisons are exact.

* `box`: the certificate's [lower, upper].
* `robustness`: [max(x − eps, lo), min(x + eps, hi)], each end rounded outward to the next float (nextafter),
  so it contains the exact real ball ∩ domain (for an L2/L1 ball its bounding box; the ball itself is used at the
  input of every backward pass: `ball`). The required spec is the margins y_label − y_j, one per j ≠ label.
* `--data`: sample i's pixels (uint8 k → lo + (hi − lo)·(float32(k) / float32(255)) in float32, as srp-audit
  reads them: on [0, 1] the float32 nearest to k/255; other numbers → float32) and label must equal the
  certificate's x and label.
* `--spec`: the certificate's box must contain the file's box, and its groups must imply the file's.

A group G' of the certificate implies a required group G when every row of G' is a positive multiple
(s > 0, rows and constants alike) of some row of G: then "some row of G' > 0" gives "some row of G > 0".
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from .certificate import Claim
from .errors import CertificateError, Rejected
from .fp import down, exact, up
from .vnnlib import VnnSpec

Row = tuple[list[Fraction], Fraction]


def claim_box(claim: Claim) -> tuple[np.ndarray, np.ndarray]:
    """The input box the claim is proven on (containing the claim's set; an L2/L1 ball's bounding box)."""
    s = claim.input_set
    if s["type"] == "box":
        return s["lower"], s["upper"]
    (lo, hi), x, eps = s["domain"], s["x"], s["eps"]
    return np.maximum(down(x - eps), lo), np.minimum(up(x + eps), hi)


def statement(claim: Claim) -> str:
    """A one-line description of what the claim says."""
    s = claim.input_set
    if s["type"] == "box":
        return f"{len(claim.groups)} group(s) of rows > 0 over a box of {s['lower'].size} inputs"
    norm = "L∞" if s["norm"] == "inf" else f"L{s['norm']}"
    return f"sample {s['sample']} (label {s['label']}) is robust at {norm} eps {s['eps']!r} within {list(s['domain'])}"


def margin_groups(label: int, K: int) -> list[list[Row]]:
    """The robustness spec: y_label − y_j > 0 for every j ≠ label, one group each."""
    rows = []
    for j in range(K):
        if j != label:
            c = [Fraction(0)] * K
            c[label], c[j] = Fraction(1), Fraction(-1)
            rows.append([(c, Fraction(0))])
    return rows


def _multiple(c: np.ndarray, d: float, row: Row) -> bool:
    """Is (c, d) = s·row for some rational s > 0? (exact)"""
    target = [*row[0], row[1]]
    mine = [exact(v) for v in c] + [exact(d)]
    pivot = next((i for i, t in enumerate(target) if t != 0), None)
    if pivot is None:
        return all(m == 0 for m in mine)
    s = mine[pivot] / target[pivot]
    return s > 0 and all(m == s * t for m, t in zip(mine, target))


def require_groups(claim: Claim, required: list[list[Row]], what: str) -> None:
    """Every required group must be implied by some group of the certificate."""
    for gi, G in enumerate(required):
        if not any(all(any(_multiple(claim.C[r], claim.d[r], q) for q in G) for r in Gc) for Gc in claim.groups):
            raise Rejected(f"the certificate's spec does not state {what}: no group implies required group {gi}")


def load_sample(path: str, i: int, n: int, domain: tuple[float, float]) -> tuple[np.ndarray, int]:
    """Sample i of the user's data file as float64 (float32 values) flattened, and its label. uint8 pixels k are
    mapped onto the domain as srp-audit reads them, in float32: lo + (hi − lo)·(float32(k) / float32(255)) —
    on [0, 1] the float32 nearest to k/255; other numbers are cast to float32."""
    try:
        with np.load(path, allow_pickle=False) as z:
            xs, ys = z["x"], z["y"]
    except FileNotFoundError:
        raise CertificateError(f"no such data file: {path}") from None
    except Exception as e:
        raise CertificateError(f"cannot read x and y from the data file {path} ({type(e).__name__}: {e})") from None
    if not isinstance(xs, np.ndarray) or not isinstance(ys, np.ndarray):  # a member not in .npy format: raw bytes
        raise CertificateError(f"the data file {path}: x and y must be .npy arrays")
    if xs.ndim < 1 or ys.ndim != 1 or i >= len(xs) or i >= len(ys) or ys.dtype.kind not in "iu":
        raise Rejected(f"the data file has no sample {i} with an integer label")
    x, (lo, hi) = xs[i], domain
    if x.dtype == np.uint8:
        x = np.float32(lo) + np.float32(hi - lo) * (x.astype(np.float32) / np.float32(255))
    elif x.dtype.kind in "fiu":
        x = x.astype(np.float32)
    else:
        raise CertificateError(f"the data file's x has dtype {x.dtype} (uint8 or numbers expected)")
    if x.size != n:
        raise Rejected(f"sample {i} of the data file has {x.size} values, the model takes {n}")
    return x.astype(np.float64).reshape(-1), int(ys[i])


def check_sample(claim: Claim, data: str) -> None:
    """With --data: the certificate's x and label must be the user's sample's."""
    s = claim.input_set
    if s["type"] != "robustness":
        raise Rejected("a box claim is not about a sample of the data file")
    x, y = load_sample(data, s["sample"], s["x"].size, s["domain"])
    if not np.array_equal(x, s["x"]) or y != s["label"]:
        diff = int(np.flatnonzero(x != s["x"])[0]) if not np.array_equal(x, s["x"]) else None
        raise Rejected(f"a certificate of another sample: sample {s['sample']} of the data file has label {y} "
                       f"(certificate: {s['label']})" + (f" and differs at input {diff}" if diff is not None else ""))


def _inside_ball(claim: Claim, case) -> bool:
    """Is the case's box inside the claim's L2/L1 ball (exact; always for boxes and L∞ balls, whose box is checked)?"""
    s = claim.input_set
    if s["type"] != "robustness" or s["norm"] == "inf":
        return True
    far = [max(abs(a - exact(c)), abs(b - exact(c))) for a, b, c in zip(case.lower, case.upper, s["x"])]
    eps = exact(s["eps"])
    return sum(far) <= eps if s["norm"] == "1" else sum(f * f for f in far) <= eps * eps


def covered_cases(claim: Claim, spec: VnnSpec, lo: np.ndarray, hi: np.ndarray, K: int) -> list[int]:
    """With --spec: the cases (input boxes) of the file whose box the claim's contains and whose groups its imply;
    `Rejected` when there are none."""
    if spec.n_x != lo.size or spec.n_y != K:
        raise Rejected(f"the spec file has {spec.n_x} inputs and {spec.n_y} outputs, the model {lo.size} and {K}")
    out, why = [], ""
    for k, case in enumerate(spec.cases):
        outside = next((i for i, (a, b) in enumerate(zip(case.lower, case.upper)) if exact(lo[i]) > a or exact(hi[i]) < b), None)
        if outside is not None:
            why = why or (f"the claim's box does not contain the spec's at input {outside}: [{float(lo[outside])!r}, "
                          f"{float(hi[outside])!r}] vs [{case.lower[outside]}, {case.upper[outside]}]")
            continue
        if not _inside_ball(claim, case):
            why = why or f"the spec's input box {k} is not inside the claim's L{claim.input_set['norm']} ball"
            continue
        try:
            require_groups(claim, case.groups, "the spec file's property")
        except Rejected as e:
            why = why or str(e)
            continue
        out.append(k)
    if not out:
        raise Rejected(why)
    return out
