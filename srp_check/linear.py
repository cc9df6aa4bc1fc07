"""The affine operators the checker interprets, as maps between flattened per-sample tensors: y = W·x + b.

Each operator can apply W (forward, to rows of points), |W| (to magnitudes) and Wᵀ (backward, to rows of
coefficients A: A ↦ A·W), and says how many products its dot products sum (`n_fwd`, `n_bwd`) so the callers
can charge γ_n for the rounding. W and b are float64 copies of the model's constants: a float32 (or float16,
float64) weight is exact in float64, so these products are rounded but the operator itself is exact — except
for a `Scale` whose factor was derived (1/c of a Div, γ/√(var + ε) of a BatchNormalization): there `rad` bounds
|s_exact − s| elementwise and the callers charge ⟨|A|, rad·|x|⟩ for it.

Convolutions use torch's float64 conv2d / conv_transpose2d on the CPU: plain sums of products (im2col and a
matrix product), to which the γ_n bound applies whatever order they are summed in. An AveragePool is a `SumPool`
(a depthwise convolution with weights 1: n_fwd = n_bwd = kh·kw) followed by a `Scale` by fl(1/(kh·kw)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class Linear:
    """y = W·x + b over flattened tensors; subclasses define W. `bias` is (n_out,) or None; `rad` (Scale only)
    bounds the uncertainty of a derived diagonal W."""

    n_in: int
    n_out: int
    n_fwd: int
    n_bwd: int
    bias: np.ndarray | None = None
    rad: np.ndarray | None = None

    def apply(self, X: np.ndarray) -> np.ndarray:
        """Rows X (m, n_in) ↦ X·Wᵀ (m, n_out), without the bias."""
        raise NotImplementedError

    def apply_abs(self, X: np.ndarray) -> np.ndarray:
        """Rows X ↦ X·|W|ᵀ (for magnitudes, X ≥ 0)."""
        raise NotImplementedError

    def back(self, A: np.ndarray) -> np.ndarray:
        """Coefficient rows A (S, n_out) ↦ A·W (S, n_in)."""
        raise NotImplementedError


class Dense(Linear):
    """A matrix product: Gemm (transB as read) or MatMul with a constant weight; W is (n_out, n_in)."""

    def __init__(self, W: np.ndarray, bias: np.ndarray | None):
        self.W, self.absW, self.bias = W, np.abs(W), bias
        self.n_out, self.n_in = W.shape
        self.n_fwd, self.n_bwd = self.n_in, self.n_out

    def apply(self, X: np.ndarray) -> np.ndarray:
        return X @ self.W.T

    def apply_abs(self, X: np.ndarray) -> np.ndarray:
        return X @ self.absW.T

    def back(self, A: np.ndarray) -> np.ndarray:
        return A @ self.W


class Scale(Linear):
    """Elementwise y = s·x + t (Add/Sub/Mul/Div by constants, the parts of a BatchNormalization), s and t
    broadcast to the tensor's shape and flattened; |s_exact − s| ≤ rad where s was derived."""

    def __init__(self, s: np.ndarray, t: np.ndarray | None, rad: np.ndarray | None = None):
        self.s, self.bias, self.rad = s, t, rad
        self.n_in = self.n_out = s.size
        self.n_fwd = self.n_bwd = 1

    def apply(self, X: np.ndarray) -> np.ndarray:
        return X * self.s

    def apply_abs(self, X: np.ndarray) -> np.ndarray:
        return X * np.abs(self.s)

    def back(self, A: np.ndarray) -> np.ndarray:
        return A * self.s


DENSE_MAX = 1 << 24  # entries of a convolution's dense matrix kept for one-hot rows (128 MiB in float64)


class Conv(Linear):
    """A 2-D convolution: weight (C_out, C_in/g, kh, kw), input (C_in, H, W), pads (top, left, bottom, right)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, in_shape: tuple[int, int, int],
                 strides: tuple[int, int], pads: tuple[int, int, int, int], dilations: tuple[int, int], group: int):
        self.w = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float64))
        self.absw = self.w.abs()
        self.in_shape, self.strides, self.pads, self.dilations, self.group = in_shape, strides, pads, dilations, group
        c_out, c_in_g, kh, kw = weight.shape
        c, h, w = in_shape
        self.padded = (h + pads[0] + pads[2], w + pads[1] + pads[3])
        ho = (self.padded[0] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
        wo = (self.padded[1] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
        if ho < 1 or wo < 1:
            raise ValueError("the convolution's output is empty")
        self.out_shape = (c_out, ho, wo)
        self.n_in, self.n_out = c * h * w, c_out * ho * wo
        self.n_fwd, self.n_bwd = c_in_g * kh * kw, (c_out // group) * kh * kw
        self.bias = None if bias is None else np.repeat(bias.astype(np.float64), ho * wo)

    def _fwd(self, X: np.ndarray, w: torch.Tensor) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(X)).reshape(-1, *self.in_shape)
        p = self.pads
        t = F.pad(t, (p[1], p[3], p[0], p[2]))
        y = F.conv2d(t, w, stride=self.strides, dilation=self.dilations, groups=self.group)
        return y.reshape(X.shape[0], -1).numpy()

    def apply(self, X: np.ndarray) -> np.ndarray:
        return self._fwd(X, self.w)

    def apply_abs(self, X: np.ndarray) -> np.ndarray:
        return self._fwd(X, self.absw)

    def back(self, A: np.ndarray) -> np.ndarray:
        """A·W; rows with one nonzero (a derivation's first step) as that entry times a row of W, read from W's
        dense form (built once, when it is small enough): the same single products, without a transposed conv."""
        if A.shape[0] > 1 and self.n_out * self.n_in <= DENSE_MAX and np.all(np.count_nonzero(A, axis=1) <= 1):
            if getattr(self, "dense", None) is None:
                self.dense = np.concatenate([self._back(np.eye(self.n_out)[i:i + 1024]) for i in range(0, self.n_out, 1024)])
            j = np.abs(A).argmax(axis=1)
            return A[np.arange(A.shape[0]), j][:, None] * self.dense[j]
        return self._back(A)

    def _back(self, A: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(A)).reshape(-1, *self.out_shape)
        g = F.conv_transpose2d(t, self.w, stride=self.strides, dilation=self.dilations, groups=self.group)
        hp, wp = self.padded
        g = F.pad(g, (0, wp - g.shape[-1], 0, hp - g.shape[-2]))  # rows/columns no output window reaches
        p, (_, h, w) = self.pads, self.in_shape
        return g[..., p[0]:p[0] + h, p[1]:p[1] + w].reshape(A.shape[0], -1).numpy()


class SumPool(Conv):
    """The window sums of an AveragePool (count_include_pad, padding 0): a depthwise convolution whose weights
    are 1, exact; the reader follows it with a `Scale` by fl(1/(kh·kw)) (enclosed as Div's 1/c)."""

    def __init__(self, in_shape: tuple[int, int, int], kernel: tuple[int, int], strides: tuple[int, int],
                 pads: tuple[int, int, int, int], dilations: tuple[int, int]):
        super().__init__(np.ones((in_shape[0], 1, *kernel)), None, in_shape, strides, pads, dilations, in_shape[0])
