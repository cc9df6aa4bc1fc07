"""srp_check: an independent checker of srp-audit's proof certificates (docs/certificates.md, format 1).

It imports nothing of `srp_audit`: it reads the ONNX file itself (`network`), interprets its operators itself
(`linear`), and re-derives every number of a proof with rigorous float64 error bounds (`fp`, `bounds`), exact
rational checks where a check compares a few numbers (`relax`, `leaf`, `inputs`), and a tree walk that gives
each leaf its own part of the input set (`tree`). A certificate can make it reject a true claim, never accept a
false one. The semantics checked is the real-number network with the file's (float) constants.

    report = check("model.onnx", "model.cert.npz", data=None, spec=None)
    report.ok; [(c.id, c.ok, c.reason) for c in report.claims]

Exact or bounded, per operator (u = 2^-53; γ_n ≥ n·u/(1 − n·u); every bound rounded up):
  Gemm, MatMul, Conv   constants exact; intervals and A·W products charged γ_n·|A|·|W|·|x| (+ underflow)
  Add/Sub/Mul const    constants exact; products charged γ_1, the constant's dot product γ_n
  Div const            1/c enclosed: fl(1/c) ± 2u·|fl(1/c)|, the radius charged against |x|
  BatchNormalization   γ/√(var + ε) enclosed: ± 4u·|s|; mean and B exact
  Add of two tensors   intervals rounded outward; coefficients meeting at a tensor charged 2u·|sum|·|x|
  Relu                 chords checked exactly (integers) at l and u; λ·A products charged u
  MaxPool              interval exact; srp-audit's lines (input j with the largest l; y = x_j where j dominates,
                       else y ≤ max u) chosen by exact comparisons; A·max u charged γ_n, overlaps' sums γ_m
  AveragePool          window sums exact (weights 1), then 1/(kh·kw) as Div's 1/c (exact for powers of two)
  Flatten, Reshape, Identity, Dropout   renames, exact
Exact checks: chords; slopes in [0, 1]; β ≥ 0 and only on split neurons; the final margins' sign (rationals);
claimed vs derived bounds (a comparison of floats that are rigorous bounds); the data sample and label; a
VNN-LIB box's containment and rows' positive multiples (rationals).

Modules: `checker` (entry point, report), `certificate` (reading and validation), `network` (ONNX reading),
`linear` (affine operators), `pool` (max pooling), `fp` (rounding primitives), `bounds` (interval and backward
passes), `relax` (ReLU chords, exact), `leaf` (one leaf's proof), `tree` (the tree walk), `inputs` (input sets,
data and spec comparison), `vnnlib` (VNN-LIB reading).
"""

from __future__ import annotations

from .checker import ClaimResult, Report, check
from .errors import CertificateError, Rejected, UnsupportedModel
from .network import Network, read_network

__all__ = ["CertificateError", "ClaimResult", "Network", "Rejected", "Report", "UnsupportedModel", "check", "read_network"]
