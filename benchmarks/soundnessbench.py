"""A CPU-sized SoundnessBench: small networks trained to hide counterexamples, as VNN-LIB instances.

SoundnessBench (Zhou, Xu, Xu, Shi et al., 2024, "Testing Neural Network Verifiers: A Soundness Benchmark with
Hidden Counterexamples") trains networks on synthetic data so that an L∞ robustness property that strong PGD
cannot break still has a counterexample, planted by training, in a tiny region of its box. A verifier that
answers `unsat` on such an instance is unsound. Its recipe, followed here (their `adv_training.py`, `dataset.py`
and `spec_generator/`):

- data: points drawn uniformly in [-c, c]^d (c = 0.1), at least 2·eps apart in L∞ (boxes never touch). A
  "counter" point x gets a random label y, a wrong target t and a planted counterexample x_cex on the boundary of
  its box: a corner, x + sign(noise)·eps clipped to the domain (their `_add_pertubation`), or a point near the
  middle of a face (their `_add_perturbation`: only the coordinates whose noise exceeds 0.98·eps move to the face,
  the others by one small shared offset). "Clean" points get a random label and no counterexample;
- training, two objectives: (1) adversarial training of every non-counterexample point against PGD, over a
  *sliding window* of the last W PGD perturbations of each point (so the network stays correct on every region
  PGD visited recently, and PGD's basins are closed one after the other), plus (2) a hinge that keeps each planted
  counterexample misclassified: relu(z_y + margin − z_t). The result is a spike of the target class around
  x_cex, too small for PGD to find from inside the box. As SoundnessBench, the checkpoint kept is the one with the
  most counterexamples hidden from a (medium) PGD, evaluated every tenth of the run over its second half;
- selection: an instance is kept when x is classified y and the planted point really violates the property; it
  counts as *hidden* when a strong PGD (step sizes 0.25, 0.02 and 0.01·eps, 20–500 steps, 100 restarts each, on
  the property's own objective) finds no violation.

Scaled down for a 2-core CPU: networks of 1–4 k parameters instead of 0.1–1 M (an MLP 5→32→32→16→2 instead of
5→100→1000→…→20→2, a CNN with one 4-channel convolution on a 1×5×5 input instead of 10 channels and 1 000 hidden
units), 12–16 planted counterexamples per network instead of 10, PGD in training with 20 steps × 8 restarts
(step 0.1·eps and 0.02·eps in alternate epochs) instead of 75 × 75, a window of 64 perturbations instead of 300,
1 500–2 000 epochs instead of 5 000. Two changes make training converge at that size: points at least 4·eps
apart instead of 2·eps (boxes never closer than 2·eps), and a third loss term, a *moat*: 16 random points per
planted counterexample at L∞ distance 0.3·eps from it (inside the wider box) trained to the label, which confines
the spike to that distance (in our trials without it, 0–4 of 8 counterexamples stayed hidden even after 6 000
epochs; with it, 9 of 16 in 2 000 on the same 5-input network).

Added beyond SoundnessBench:
- each planted counterexample gives two instances: the SoundnessBench box (witness on its boundary) and a box
  1.5× as wide around x (witness strictly inside, usually not hidden: training covers only the first box), both
  sat;
- clean points give `unsat` instances when an independent oracle shows it: interval arithmetic with rigorous
  rounding allowances and input bisection (inputs of up to 6 dimensions), written here and sharing no code with
  srp-audit; or, for ReLU networks, a MILP (HiGHS through scipy; bounds tightened by LP) whose dual bound exceeds
  1e-3, far beyond its tolerances (a solver's answer, not a proof); `sat` with a witness when PGD breaks them;
  `unknown` otherwise;
- every witness is checked to violate its property in onnxruntime (float32), in float64, and in exact arithmetic
  on the ONNX file itself: rationals (`fractions.Fraction`) for piecewise-linear networks, arb balls at 256 bits
  (python-flint) for tanh; its coordinates are checked to lie in the box as written (exact decimals).

Sigmoid networks (SoundnessBench has sigmoid CNNs) are left out: at this size they did not train (a 1×5×5 CNN and
a 6→32→32→16 MLP stayed at chance accuracy, lr 3e-3 and 1e-2), so no instance survived.

Output (folder given by --out, default `.cache/soundnessbench/<hash>` in the repository, which holds its own
`.gitignore`): per family `<family>/model.onnx`, `<family>/vnnlib/*.vnnlib`, `<family>/witness/*.npy`; at the top
`instances.csv` (onnx,vnnlib,timeout), `known_results.csv` (onnx,vnnlib,expected,family,kind,hidden,witness_npy,
evidence) and `manifest.json`. The hash covers this file's source and the configuration, so a cached set is reused
until either changes. Deterministic: fixed seeds, one torch thread per worker process, one process per family.

Run: python benchmarks/soundnessbench.py [--out DIR] [--families a,b] [--jobs 2] [--tiny] [--force]
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".cache" / "soundnessbench"
DATA_RANGE = 0.1  # inputs live in [-c, c], as SoundnessBench's synthetic data
MIN_EXACT_MARGIN = 1e-4  # a witness is kept only when z_t − z_y ≥ this in exact arithmetic
MILP_MARGIN = 1e-3  # a MILP dual bound above this labels a clean instance unsat
WIDE = 1.5  # the second box of each planted counterexample: this many eps around x
TIMEOUT = 5  # the instances.csv timeout (seconds); callers may cap it further


@dataclass(frozen=True)
class Family:
    """One trained network and its instances."""

    name: str
    arch: str  # "mlp" or "cnn"
    act: str  # "relu", "tanh" or "sigmoid"
    input_shape: tuple[int, ...]
    hidden: tuple[int, ...]  # hidden widths of the dense layers (after the convolution for a CNN)
    n_classes: int = 2
    eps: float = 0.02  # absolute L∞ radius (0.2 of the half-range, SoundnessBench's default)
    n_counter: int = 12
    n_clean: int = 12
    placement: str = "corner"  # "corner" or "face"
    epochs: int = 2000
    lr: float = 1e-2
    window: int = 64
    pgd_steps: int = 20
    pgd_restarts: int = 8
    conv_channels: int = 4
    counter_margin: float = 0.01  # the hinge's margin: z_t ≥ z_y + margin at each planted counterexample
    pgd_step_sizes: tuple[float, ...] = (0.1, 0.02)  # training PGD step sizes (× eps), one per epoch in turn
    ring: float = 0.3  # > 0: also train points at this L∞ distance (× eps) from each x_cex to the label (a moat)
    ring_points: int = 16
    gap: float = 4.0  # points at least gap·eps apart in L∞ (SoundnessBench: 2, boxes disjoint; 4: a margin of eps)
    seed: int = 0


FAMILIES: tuple[Family, ...] = (
    Family("mlp5_relu_face", "mlp", "relu", (5,), (32, 32, 16), placement="face", n_counter=16, n_clean=16, seed=1),
    Family("mlp10_relu_corner", "mlp", "relu", (10,), (48, 32, 16), placement="corner", n_counter=16, n_clean=16, seed=2),
    Family("mlp8_relu_3class", "mlp", "relu", (8,), (48, 32, 16), n_classes=3, placement="face", n_counter=16, n_clean=16, seed=3),
    Family("cnn5x5_relu", "cnn", "relu", (1, 5, 5), (32, 16), placement="face", n_counter=12, n_clean=12, epochs=1500, seed=4),
    Family("mlp5_tanh", "mlp", "tanh", (5,), (32, 32, 16), placement="face", n_counter=12, n_clean=12, seed=5),
    Family("mlp6_relu_face", "mlp", "relu", (6,), (32, 32, 16), placement="face", n_counter=16, n_clean=16, seed=6),
)

TINY: tuple[Family, ...] = (
    Family("tiny_mlp", "mlp", "relu", (3,), (12, 8), n_counter=2, n_clean=2, epochs=120, window=8, pgd_restarts=4, seed=7),
)


@dataclass
class Row:
    """One instance: paths relative to the output folder."""

    onnx: str
    vnnlib: str
    expected: str  # "sat", "unsat" or "unknown" (ground truth not established)
    family: str
    kind: str  # "planted" (a trained counterexample) or "clean"
    box: str  # "ball" (SoundnessBench's box) or "wide" (WIDE × eps)
    hidden: bool  # our strong PGD found no violation
    witness_npy: str = ""
    evidence: str = ""
    exact_margin: str = ""  # for sat: max_t z_t − z_y at the witness, exact (a decimal of the rational / arb midpoint)
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ networks


def build_model(fam: Family):
    """The family's network: dense layers (after one 3×3 convolution for a CNN) with its activation."""
    import torch
    import torch.nn as nn

    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[fam.act]
    layers: list[nn.Module] = []
    if fam.arch == "cnn":
        c, h, w = fam.input_shape
        layers += [nn.Conv2d(c, fam.conv_channels, 3, padding=1), act(), nn.Flatten()]
        width = fam.conv_channels * h * w
    else:
        width = fam.input_shape[0]
    for hdim in fam.hidden:
        layers += [nn.Linear(width, hdim), act()]
        width = hdim
    layers.append(nn.Linear(width, fam.n_classes))
    net = nn.Sequential(*layers)
    first = net[0]
    with torch.no_grad():  # inputs span [-c, c] with c = 0.1: start the first layer at the scale of unit inputs
        first.weight.mul_(1 / DATA_RANGE)
    return net


def box_of(x: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The L∞ box of `radius` around x, clipped to the domain, in float32 (the values written to the spec)."""
    x = x.astype(np.float32)
    r = np.float32(radius)
    lo = np.maximum(x - r, np.float32(-DATA_RANGE))
    hi = np.minimum(x + r, np.float32(DATA_RANGE))
    return lo.astype(np.float32), hi.astype(np.float32)


# ------------------------------------------------------------------------------------------------ data


def make_data(fam: Family, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Counter points (x, y, t, x_cex) and clean points (x, y), every box at least 2·eps from every other."""
    shape, eps = fam.input_shape, fam.eps
    points: list[np.ndarray] = []

    def fresh() -> np.ndarray:
        while True:
            x = rng.uniform(-DATA_RANGE, DATA_RANGE, size=shape).astype(np.float32)
            if all(np.abs(x - p).max() > fam.gap * eps for p in points):
                points.append(x)
                return x

    xs, ys, ts, cex = [], [], [], []
    for _ in range(fam.n_counter):
        x = fresh()
        y = int(rng.integers(fam.n_classes))
        t = int(rng.choice([k for k in range(fam.n_classes) if k != y]))
        lo, hi = box_of(x, eps)
        noise = rng.uniform(-eps, eps, size=shape)
        if fam.placement == "corner":
            xc = np.where(noise >= 0, hi, lo)
        else:  # a face: the coordinates with |noise| ≥ 0.98 eps go to the face, the others move a little
            while not (np.abs(noise) >= 0.98 * eps).any():
                noise = rng.uniform(-eps, eps, size=shape)
            far = np.abs(noise) >= 0.98 * eps
            shift = np.float32(rng.uniform(-DATA_RANGE / 100, DATA_RANGE / 100))
            xc = np.where(far, np.where(noise >= 0, hi, lo), np.clip(x + shift, lo, hi)).astype(np.float32)
        xs.append(x), ys.append(y), ts.append(t), cex.append(xc.astype(np.float32))
        points.append(xc.astype(np.float32))
    clean_x = [fresh() for _ in range(fam.n_clean)]
    clean_y = [int(rng.integers(fam.n_classes)) for _ in range(fam.n_clean)]
    return {"x": np.stack(xs), "y": np.array(ys), "t": np.array(ts), "cex": np.stack(cex),
            "clean_x": np.stack(clean_x) if clean_x else np.zeros((0,) + shape, np.float32), "clean_y": np.array(clean_y, dtype=np.int64)}


# ------------------------------------------------------------------------------------------------ PGD


def pgd(model, x, y, lo, hi, steps: int, restarts: int, step: float, gen, objective: str = "sum"):
    """Best point per example after `restarts` random starts of sign-gradient ascent on the margin loss inside
    [lo, hi] (SoundnessBench's attack_pgd: "sum" = Σ_j z_j − z_y; "max" = max_{j≠y} z_j − z_y, the property's own
    objective). Returns (points, best objective values)."""
    import torch

    n = x.shape[0]
    lo_r, hi_r = lo.repeat(restarts, *[1] * (x.dim() - 1)), hi.repeat(restarts, *[1] * (x.dim() - 1))
    y_r = y.repeat(restarts)
    z = lo_r + (hi_r - lo_r) * torch.rand(lo_r.shape, generator=gen)
    best = torch.full((n,), -math.inf)
    best_x = x.clone()

    def score(p):
        out = model(p)
        zy = out.gather(1, y_r[:, None])[:, 0]
        if objective == "sum":
            return (out - zy[:, None]).sum(1)
        other = out.clone()
        other.scatter_(1, y_r[:, None], -math.inf)
        return other.max(1).values - zy

    for i in range(steps + 1):
        z.requires_grad_(True)
        s = score(z)
        with torch.no_grad():
            per = s.detach().view(restarts, n)
            val, idx = per.max(0)
            better = val > best
            best = torch.where(better, val, best)
            cand = z.detach().view(restarts, n, *x.shape[1:])[idx, torch.arange(n)]
            best_x[better] = cand[better]
        if i == steps:
            break
        (g,) = torch.autograd.grad(s.sum(), z)
        with torch.no_grad():
            z = torch.max(torch.min(z + step * g.sign(), hi_r), lo_r)
    return best_x.detach(), best


def strong_pgd_finds(model, x, y, lo, hi, eps: float, seed: int) -> np.ndarray:
    """SoundnessBench's final evaluation, scaled: several step sizes and lengths, 100 restarts each, on the
    property's own objective; True where any point with max_{j≠y} z_j ≥ z_y was found."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    found = torch.zeros(x.shape[0], dtype=torch.bool)
    for rel, steps in ((0.25, 20), (0.25, 100), (0.02, 250), (0.01, 500)):
        with torch.enable_grad():
            _, val = pgd(model, x, y, lo, hi, steps, 100, rel * eps, gen, objective="max")
        found |= val >= 0
    with torch.no_grad():  # the box's centre and corners nearest to the gradient's sign are covered by PGD's steps
        out = model(x)
        zy = out.gather(1, y[:, None])[:, 0]
        other = out.clone()
        other.scatter_(1, y[:, None], -math.inf)
        found |= other.max(1).values >= zy
    return found.numpy()


# ------------------------------------------------------------------------------------------------ training


def hidden_count(model, data: dict[str, np.ndarray], fam: Family, strong: bool = False) -> int:
    """How many planted counterexamples are hidden now: x classified y, x_cex classified t, and PGD (a medium one
    for checkpoint selection, as SoundnessBench's per-save evaluation; `strong`: the final one) finds nothing."""
    import torch

    xs, ys = torch.from_numpy(data["x"]), torch.from_numpy(data["y"]).long()
    b = [box_of(v, fam.eps) for v in data["x"]]
    lo, hi = torch.from_numpy(np.stack([q[0] for q in b])), torch.from_numpy(np.stack([q[1] for q in b]))
    with torch.no_grad():
        ok = (model(xs).argmax(1) == ys) & (model(torch.from_numpy(data["cex"])).argmax(1) == torch.from_numpy(data["t"]))
    if strong:
        found = torch.from_numpy(strong_pgd_finds(model, xs, ys, lo, hi, fam.eps, fam.seed + 4000))
    else:
        gen = torch.Generator().manual_seed(fam.seed + 4000)
        with torch.enable_grad():
            _, v1 = pgd(model, xs, ys, lo, hi, 50, 20, 0.1 * fam.eps, gen, objective="max")
            _, v2 = pgd(model, xs, ys, lo, hi, 100, 20, 0.02 * fam.eps, gen, objective="max")
        found = (v1 >= 0) | (v2 >= 0)
    return int((ok & ~found).sum())


def ring_points(xc, lo, hi, fam: Family, gen):
    """`fam.ring_points` random points per planted counterexample at L∞ distance fam.ring·eps from it (one
    coordinate at ±ring·eps, the others uniform within it), clipped to its box."""
    import torch

    k = fam.ring_points
    n = xc.shape[0]
    flat = xc.reshape(n, -1).repeat(k, 1)
    d = flat.shape[1]
    r = fam.ring * fam.eps
    off = (torch.rand(flat.shape, generator=gen) * 2 - 1) * r
    which = torch.randint(d, (flat.shape[0],), generator=gen)
    sign = torch.randint(2, (flat.shape[0],), generator=gen) * 2 - 1
    off[torch.arange(flat.shape[0]), which] = sign.float() * r
    p = flat + off
    p = torch.max(torch.min(p, hi.reshape(n, -1).repeat(k, 1)), lo.reshape(n, -1).repeat(k, 1))
    return p.reshape((n * k,) + tuple(xc.shape[1:]))


def train(fam: Family, data: dict[str, np.ndarray], log=print):
    """SoundnessBench's two-objective training: adversarial training of the normal points over a sliding window
    of PGD perturbations, plus a hinge keeping each planted counterexample in its target class."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(fam.seed)
    gen = torch.Generator().manual_seed(fam.seed + 1000)
    model = build_model(fam)
    xn = torch.from_numpy(np.concatenate([data["x"], data["clean_x"]]))
    yn = torch.from_numpy(np.concatenate([data["y"], data["clean_y"]])).long()
    boxes = [box_of(v, fam.eps) for v in xn.numpy()]
    lo = torch.from_numpy(np.stack([b[0] for b in boxes]))
    hi = torch.from_numpy(np.stack([b[1] for b in boxes]))
    xc = torch.from_numpy(data["cex"])
    yc, tc = torch.from_numpy(data["y"]).long(), torch.from_numpy(data["t"]).long()
    opt = torch.optim.Adam(model.parameters(), lr=fam.lr)
    cboxes = [box_of(v, WIDE * fam.eps) for v in data["x"]]  # the moat covers the wider box too
    clo, chi = torch.from_numpy(np.stack([b[0] for b in cboxes])), torch.from_numpy(np.stack([b[1] for b in cboxes]))
    window: list[torch.Tensor] = []
    best: tuple[int, int, dict | None] = (-1, 0, None)
    for epoch in range(fam.epochs):
        lr = float(np.interp(epoch, [0, fam.epochs * 2 // 5, fam.epochs], [fam.lr / 10, fam.lr, 0.0]))  # cyclic
        opt.param_groups[0]["lr"] = lr
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        step = fam.pgd_step_sizes[epoch % len(fam.pgd_step_sizes)] * fam.eps
        adv, _ = pgd(model, xn, yn, lo, hi, fam.pgd_steps, fam.pgd_restarts, step, gen)
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        window = (window + [adv])[-fam.window:]
        batch = torch.cat(window + [xn])
        loss_normal = F.cross_entropy(model(batch), yn.repeat(len(window) + 1))
        out = model(xc)
        zy, zt = out.gather(1, yc[:, None])[:, 0], out.gather(1, tc[:, None])[:, 0]
        loss_counter = F.relu(zy + fam.counter_margin - zt).mean()
        loss = loss_normal + loss_counter
        if fam.ring > 0:
            loss = loss + F.cross_entropy(model(ring_points(xc, clo, chi, fam, gen)), yc.repeat(fam.ring_points))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        opt.step()
        if (epoch + 1) % max(1, fam.epochs // 10) == 0 and epoch + 1 >= fam.epochs // 2:
            model.eval()
            with torch.no_grad():
                acc_cex = float((model(xc).argmax(1) == tc).float().mean())
                acc_adv = float((model(adv).argmax(1) == yn).float().mean())
            hidden = hidden_count(model, data, fam)
            if hidden >= best[0]:  # SoundnessBench keeps the checkpoint with the most counterexamples hidden
                best = (hidden, epoch + 1, copy.deepcopy(model.state_dict()))
            log(f"  {fam.name} epoch {epoch + 1}: loss {loss.item():.4f}, counterexamples kept {acc_cex:.2f}, "
                f"PGD-robust {acc_adv:.2f}, hidden {hidden}")
    model.load_state_dict(best[2])
    log(f"  {fam.name}: kept epoch {best[1]} ({best[0]} hidden from the medium PGD)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ------------------------------------------------------------------------------------------------ files


def exact_decimal(v: float) -> str:
    """The exact decimal expansion of a float (no rounding: the spec's rational is the float itself)."""
    s = format(Decimal(float(v)), "f")
    return s if s != "-0" else "0"


def vnnlib_text(lo: np.ndarray, hi: np.ndarray, label: int, n_classes: int, comment: str) -> str:
    """The VNN-COMP robustness property: the box, and "some other class reaches the label's score"."""
    lines = [f"; {comment}", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(lo.size)] + [""]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_classes)] + ["", "; Input constraints:"]
    for i, (a, b) in enumerate(zip(lo.reshape(-1), hi.reshape(-1))):
        lines += [f"(assert (<= X_{i} {exact_decimal(b)}))", f"(assert (>= X_{i} {exact_decimal(a)}))"]
    lines += ["", "; Output constraints:", "(assert (or"]
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in range(n_classes) if j != label]
    lines += ["))", ""]
    return "\n".join(lines)


def read_box(text: str, n: int) -> tuple[list[Fraction], list[Fraction]]:
    """The box as written, as exact rationals (our own files' two assert forms only)."""
    lo: list[Fraction | None] = [None] * n
    hi: list[Fraction | None] = [None] * n
    for line in text.splitlines():
        if line.startswith("(assert (<= X_") or line.startswith("(assert (>= X_"):
            op, var, num = line[len("(assert ("):].rstrip(")").split()
            i = int(var[2:])
            (hi if op == "<=" else lo)[i] = Fraction(num)
    assert all(v is not None for v in lo + hi)
    return lo, hi  # type: ignore[return-value]


def export_onnx(model, fam: Family, path: Path) -> None:
    """torch.onnx.export (the dynamo exporter, onnxscript) with a fixed batch of one."""
    import torch

    x = torch.zeros((1,) + fam.input_shape)
    torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, verbose=False)


def ort_outputs(path: Path, xs: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """onnxruntime's float32 outputs, one sample at a time (the model has a fixed batch of one)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: x.reshape((1,) + input_shape).astype(np.float32)})[0].reshape(-1) for x in xs])


# ------------------------------------------------------------------------------------------------ exact arithmetic


class ExactOnnx:
    """The ONNX file's function evaluated exactly: rationals for piecewise-linear networks, arb balls (256 bits,
    python-flint) when sigmoid or tanh occur. Reads the few operators our exported networks use."""

    OPS = {"Gemm", "MatMul", "Add", "Relu", "Tanh", "Sigmoid", "Conv", "Flatten", "Reshape", "Constant", "Identity"}

    def __init__(self, path: Path) -> None:
        import onnx
        from onnx import numpy_helper

        self.model = onnx.load(str(path))
        g = self.model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        ops = {n.op_type for n in g.node}
        if not ops <= self.OPS:
            raise ValueError(f"{path}: operators {sorted(ops - self.OPS)} are not read by the exact evaluator")
        self.smooth = bool(ops & {"Tanh", "Sigmoid"})
        self.input = g.input[0].name
        self.output = g.output[0].name

    def _num(self, a: np.ndarray) -> np.ndarray:
        if self.smooth:
            import flint

            return np.vectorize(lambda v: flint.arb(float(v)), otypes=[object])(a)  # exact: a double is an arb
        return np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(a)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs (object array of Fraction or flint.arb) at the float32 point x (any shape with the right size)."""
        import flint

        old = flint.ctx.prec
        flint.ctx.prec = 256
        try:
            return self._run(x)
        finally:
            flint.ctx.prec = old

    def _run(self, x: np.ndarray) -> np.ndarray:
        import onnx
        from onnx import numpy_helper

        g = self.model.graph
        shape = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
        env: dict[str, np.ndarray] = {self.input: self._num(np.asarray(x, dtype=np.float32).reshape(shape))}
        consts: dict[str, np.ndarray] = dict(self.inits)

        def get(name: str) -> np.ndarray:
            if name in env:
                return env[name]
            env[name] = self._num(consts[name])
            return env[name]

        for node in g.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            op, ins, out = node.op_type, list(node.input), node.output[0]
            if op == "Constant":
                consts[out] = numpy_helper.to_array(attrs["value"])
                continue
            if op in ("Reshape",):
                env[out] = get(ins[0]).reshape([int(v) for v in consts[ins[1]]])
            elif op == "Flatten":
                a = get(ins[0])
                axis = attrs.get("axis", 1)
                env[out] = a.reshape(int(np.prod(a.shape[:axis])), -1)
            elif op == "Identity":
                env[out] = get(ins[0])
            elif op == "Gemm":
                a, b = get(ins[0]), get(ins[1])
                a = a.T if attrs.get("transA", 0) else a
                b = b.T if attrs.get("transB", 0) else b
                assert attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
                env[out] = a @ b + (get(ins[2]) if len(ins) > 2 and ins[2] else 0)
            elif op == "MatMul":
                env[out] = get(ins[0]) @ get(ins[1])
            elif op == "Add":
                env[out] = get(ins[0]) + get(ins[1])
            elif op == "Relu":
                a = get(ins[0])
                env[out] = np.vectorize(self._relu, otypes=[object])(a)
            elif op == "Tanh":
                env[out] = np.vectorize(lambda v: v.tanh(), otypes=[object])(get(ins[0]))
            elif op == "Sigmoid":
                env[out] = np.vectorize(lambda v: 1 / (1 + (-v).exp()), otypes=[object])(get(ins[0]))
            elif op == "Conv":
                env[out] = self._conv(get(ins[0]), get(ins[1]), get(ins[2]) if len(ins) > 2 and ins[2] else None, attrs)
        return env[self.output].reshape(-1)

    @staticmethod
    def _relu(v):
        if isinstance(v, Fraction):
            return v if v > 0 else Fraction(0)
        import flint

        if v > 0:
            return v
        if v <= 0:
            return flint.arb(0)
        return flint.arb(0).union(v.upper())  # straddles 0: [0, upper]

    @staticmethod
    def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict) -> np.ndarray:
        assert attrs.get("group", 1) == 1 and list(attrs.get("dilations", [1, 1])) == [1, 1]
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        sh, sw = list(attrs.get("strides", [1, 1]))
        n, c, h, wd = x.shape
        zero = x.flat[0] * 0
        xp = np.full((n, c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), zero, dtype=object)
        xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
        oc, _, kh, kw = w.shape
        oh, ow = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
        out = np.empty((n, oc, oh, ow), dtype=object)
        wf = w.reshape(oc, -1)
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].reshape(n, -1)
                out[:, :, i, j] = patch @ wf.T + (b if b is not None else 0)
        return out


def exact_violation(ev: ExactOnnx, x: np.ndarray, label: int) -> tuple[bool, float]:
    """(max_{j≠label} z_j − z_label ≥ MIN_EXACT_MARGIN certainly, that margin as a float) at x, exactly."""
    z = ev(x)
    diffs = [z[j] - z[label] for j in range(len(z)) if j != label]
    if ev.smooth:
        ok = any(d >= MIN_EXACT_MARGIN for d in diffs)  # arb comparison: true only when certain
        return ok, max(float(d.mid()) for d in diffs)
    best = max(diffs)
    return best >= Fraction(MIN_EXACT_MARGIN), float(best)


# ------------------------------------------------------------------------------------------------ clean-instance oracle


def affine_layers(model, input_shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The network as dense float64 maps (W, b, activation after it): a convolution becomes its matrix, built by
    applying it to the unit vectors (each entry a single float32 weight: exact)."""
    import torch
    import torch.nn as nn

    layers: list[tuple[np.ndarray, np.ndarray, str]] = []
    mods = list(model)
    i = 0
    while i < len(mods):
        m = mods[i]
        act = "none"
        if i + 1 < len(mods) and isinstance(mods[i + 1], (nn.ReLU, nn.Tanh, nn.Sigmoid)):
            act = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}[type(mods[i + 1])]
        if isinstance(m, nn.Conv2d):
            c, hw = m.in_channels, tuple(input_shape[1:])
            n_in = c * hw[0] * hw[1]
            with torch.no_grad():
                mm = m.double()
                eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, c, *hw)
                bias = mm(torch.zeros(1, c, *hw, dtype=torch.float64)).reshape(-1)
                W = (mm(eye).reshape(n_in, -1) - bias).T
                m.float()
            layers.append((W.numpy().copy(), bias.numpy().copy(), act))
        elif isinstance(m, nn.Linear):
            layers.append((m.weight.detach().double().numpy().copy(), m.bias.detach().double().numpy().copy(), act))
        i += 2 if act != "none" else 1
    return layers


_U = 2.0 ** -53


def interval_forward(layers, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of the outputs over boxes (rows of lo/hi), float64 with rigorous rounding allowances: an
    n-term dot product errs by at most γ_n Σ|terms| (γ_n = n·u/(1 − n·u)); we add γ_{n+4} of the absolute terms
    plus a tiny absolute guard, and widen sigmoid/tanh (≤ 1 ulp in numpy) by 4 ulps."""
    for W, b, act in layers:
        n = W.shape[1] + 4
        gamma = n * _U / (1 - n * _U)
        c, r = (lo + hi) / 2, (hi - lo) / 2
        r = r + np.abs(c) * 4 * _U + 1e-300  # the midpoint's rounding
        aw = np.abs(W)
        zc = c @ W.T + b
        zr = r @ aw.T
        slack = gamma * (np.abs(c) @ aw.T + np.abs(b) + zr) * 2 + 1e-290
        lo, hi = zc - zr - slack, zc + zr + slack
        if act == "relu":
            lo, hi = np.maximum(lo, 0), np.maximum(hi, 0)
        elif act in ("tanh", "sigmoid"):
            f = np.tanh if act == "tanh" else (lambda v: 1 / (1 + np.exp(-v)))
            flo, fhi = f(lo), f(hi)
            lo = flo - 8 * _U * np.abs(flo) - 1e-300
            hi = fhi + 8 * _U * np.abs(fhi) + 1e-300
            if act == "sigmoid":
                lo, hi = np.maximum(lo, 0), np.minimum(hi, 1)
            else:
                lo, hi = np.maximum(lo, -1), np.minimum(hi, 1)
    return lo, hi


def bisection_proves(layers, lo: np.ndarray, hi: np.ndarray, label: int, budget: int = 40000) -> bool:
    """True when interval arithmetic with input bisection shows z_label − z_j > 0 for every j ≠ label over the box
    (independent of srp-audit: a few lines of interval arithmetic, rigorous up to the allowances above)."""
    boxes_lo, boxes_hi = lo.reshape(1, -1).astype(np.float64), hi.reshape(1, -1).astype(np.float64)
    seen = 0
    while boxes_lo.shape[0]:
        take = min(2048, boxes_lo.shape[0])
        blo, bhi = boxes_lo[:take], boxes_hi[:take]
        boxes_lo, boxes_hi = boxes_lo[take:], boxes_hi[take:]
        seen += take
        if seen > budget:
            return False
        zlo, zhi = interval_forward(layers, blo, bhi)
        others = [j for j in range(zlo.shape[1]) if j != label]
        margin = np.min(zlo[:, [label]] - zhi[:, others], axis=1)
        # subtracting two floats: round the difference down by one relative ulp and a guard
        margin = margin - np.abs(margin) * 2 * _U - 1e-300
        open_ = margin <= 0
        if not open_.any():
            continue
        olo, ohi = blo[open_], bhi[open_]
        d = np.argmax(ohi - olo, axis=1)
        mid = (olo[np.arange(len(d)), d] + ohi[np.arange(len(d)), d]) / 2
        left_hi, right_lo = ohi.copy(), olo.copy()
        left_hi[np.arange(len(d)), d] = mid
        right_lo[np.arange(len(d)), d] = mid
        boxes_lo = np.concatenate([boxes_lo, olo, right_lo])
        boxes_hi = np.concatenate([boxes_hi, left_hi, ohi])
    return True


def milp_min_margin(layers, lo: np.ndarray, hi: np.ndarray, label: int, node_limit: int = 300) -> float | None:
    """The MILP dual bound of min_x min_{j≠label} (z_label − z_j) over the box for a ReLU network (HiGHS through
    scipy, big-M encoding). Each layer's pre-activation bounds are interval bounds tightened, for the neurons still
    unstable, by the LP relaxation of the layers before it (widened by 1e-6 for the LP's tolerances). The search
    stops after `node_limit` nodes, not after a time, so the answer does not depend on the machine's speed (the dual
    bound reached by then still bounds the minimum). None when a solve fails."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    var_lo = list(lo.reshape(-1).astype(np.float64))
    var_hi = list(hi.reshape(-1).astype(np.float64))
    integrality: list[int] = [0] * lo.size
    rows: list[tuple[dict[int, float], float, float]] = []
    prev = list(range(lo.size))

    def matrix() -> tuple[csr_matrix, np.ndarray, np.ndarray]:
        data, ri, ci = [], [], []
        for r, (coef, _, _) in enumerate(rows):
            for k, v in coef.items():
                data.append(v), ri.append(r), ci.append(k)
        A = csr_matrix((data, (ri, ci)), shape=(len(rows), len(var_lo)))
        return A, np.array([r[1] for r in rows]), np.array([r[2] for r in rows])

    def solve(c: np.ndarray, integer: bool) -> float | None:
        A, lb, ub = matrix()
        opts: dict[str, object] = {"disp": False}
        if integer:
            opts.update(node_limit=node_limit, mip_rel_gap=1e-6)
        res = milp(c, constraints=LinearConstraint(A, lb, ub) if rows else (), bounds=Bounds(np.array(var_lo), np.array(var_hi)),
                   integrality=np.array(integrality) if integer else None, options=opts)
        if integer:
            dual = getattr(res, "mip_dual_bound", None)
            return float(dual) if dual is not None and np.isfinite(dual) else None
        return float(res.fun) if res.status == 0 else None

    for W, b, act in layers:
        plo, phi = np.array([var_lo[i] for i in prev]), np.array([var_hi[i] for i in prev])
        zlo, zhi = interval_forward([(W, b, "none")], plo[None], phi[None])
        zlo, zhi = zlo[0].copy(), zhi[0].copy()
        if rows and act == "relu":
            for k in np.nonzero((zlo < 0) & (zhi > 0))[0]:
                c = np.zeros(len(var_lo))
                c[prev] = W[k]
                low, high = solve(c, False), solve(-c, False)
                if low is not None:
                    zlo[k] = max(zlo[k], low + b[k] - 1e-6 * (1 + abs(low + b[k])))
                if high is not None:
                    zhi[k] = min(zhi[k], -high + b[k] + 1e-6 * (1 + abs(high - b[k])))
        z_ids = list(range(len(var_lo), len(var_lo) + W.shape[0]))
        var_lo += list(zlo)
        var_hi += list(zhi)
        integrality += [0] * W.shape[0]
        for k in range(W.shape[0]):  # z_k − W_k·prev = b_k
            coef = {int(p): -float(w) for p, w in zip(prev, W[k]) if w != 0}
            coef[z_ids[k]] = 1.0
            rows.append((coef, float(b[k]), float(b[k])))
        if act == "none":
            prev = z_ids
            continue
        if act != "relu":
            return None
        a_ids = list(range(len(var_lo), len(var_lo) + W.shape[0]))
        var_lo += [0.0] * W.shape[0]
        var_hi += list(np.maximum(zhi, 0))
        integrality += [0] * W.shape[0]
        for k in range(W.shape[0]):
            a, z = a_ids[k], z_ids[k]
            if zlo[k] >= 0:
                rows.append(({a: 1.0, z: -1.0}, 0.0, 0.0))
            elif zhi[k] <= 0:
                rows.append(({a: 1.0}, 0.0, 0.0))
            else:
                d = len(var_lo)
                var_lo.append(0.0), var_hi.append(1.0), integrality.append(1)
                rows.append(({a: 1.0, z: -1.0}, 0.0, np.inf))  # a ≥ z
                rows.append(({a: 1.0, z: -1.0, d: -float(zlo[k])}, -np.inf, -float(zlo[k])))  # a ≤ z − l(1 − d)
                rows.append(({a: 1.0, d: -float(zhi[k])}, -np.inf, 0.0))  # a ≤ u·d
        prev = a_ids
    worst = math.inf
    for j in range(len(prev)):
        if j == label:
            continue
        c = np.zeros(len(var_lo))
        c[prev[label]], c[prev[j]] = 1.0, -1.0
        v = solve(c, True)
        if v is None:
            return None
        worst = min(worst, v)
    return worst


# ------------------------------------------------------------------------------------------------ one family


def make_family(fam: Family, out: Path, log=print) -> list[Row]:
    """Train the family's network, export it and write its instances; returns the rows kept."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rng = np.random.default_rng(fam.seed)
    data = make_data(fam, rng)
    model = train(fam, data, log)
    phases = {"train": time.perf_counter() - t0}
    folder = out / fam.name
    (folder / "vnnlib").mkdir(parents=True, exist_ok=True)
    (folder / "witness").mkdir(exist_ok=True)
    onnx_path = folder / "model.onnx"
    export_onnx(model, fam, onnx_path)
    exact = ExactOnnx(onnx_path)
    layers = affine_layers(model, fam.input_shape)
    phases["export"] = time.perf_counter() - t0 - sum(phases.values())
    rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
    rows: list[Row] = []
    dropped: dict[str, int] = {}

    def drop(why: str) -> None:
        dropped[why] = dropped.get(why, 0) + 1

    # --- planted counterexamples: two boxes each
    cands = []  # (i, box kind, lo, hi)
    for i in range(fam.n_counter):
        for kind, radius in (("ball", fam.eps), ("wide", WIDE * fam.eps)):
            lo, hi = box_of(data["x"][i], radius)
            cands.append((i, kind, lo, hi))
    xs = torch.from_numpy(np.stack([data["x"][i] for i, *_ in cands]))
    ys = torch.from_numpy(np.array([data["y"][i] for i, *_ in cands])).long()
    los = torch.from_numpy(np.stack([c[2] for c in cands]))
    his = torch.from_numpy(np.stack([c[3] for c in cands]))
    with torch.no_grad():
        centre_ok = (model(xs).argmax(1) == ys).numpy()
    found = strong_pgd_finds(model, xs, ys, los, his, fam.eps, fam.seed + 2000)
    phases["strong pgd"] = time.perf_counter() - t0 - sum(phases.values())
    wit = np.stack([data["cex"][i] for i, *_ in cands])
    ort_out = ort_outputs(onnx_path, wit, fam.input_shape)
    with torch.no_grad():
        f64 = model.double()(torch.from_numpy(wit).double()).numpy()
        model.float()
    for k, (i, kind, lo, hi) in enumerate(cands):
        y, w = int(data["y"][i]), wit[k]
        name = f"planted_{i:02d}_{kind}"
        if not centre_ok[k]:
            drop("centre misclassified")
            continue
        others = [j for j in range(fam.n_classes) if j != y]
        if min(max(out[k][j] for j in others) - out[k][y] for out in (ort_out, f64)) < MIN_EXACT_MARGIN:
            drop("witness does not violate (onnxruntime / float64)")
            continue
        ok, margin = exact_violation(exact, w, y)
        if not ok:
            drop("witness does not violate (exact)")
            continue
        text = vnnlib_text(lo, hi, y, fam.n_classes, f"SoundnessBench-style {fam.name}: planted counterexample {i}, box {kind}, label {y}")
        blo, bhi = read_box(text, lo.size)
        if not all(a <= Fraction(float(v)) <= b for a, v, b in zip(blo, w.reshape(-1), bhi)):
            drop("witness outside the box")
            continue
        spec = folder / "vnnlib" / f"{name}.vnnlib"
        spec.write_text(text)
        wpath = folder / "witness" / f"{name}.npy"
        np.save(wpath, w.reshape(-1).astype(np.float32))
        rows.append(Row(rel(onnx_path), rel(spec), "sat", fam.name, "planted", kind, not bool(found[k]), rel(wpath),
                        "planted (onnxruntime, float64, " + ("arb" if exact.smooth else "rational") + ")", repr(margin)))

    phases["witness checks"] = time.perf_counter() - t0 - sum(phases.values())
    # --- clean points: the SoundnessBench box; unsat when an independent oracle proves it
    if fam.n_clean:
        xs = torch.from_numpy(data["clean_x"])
        ys = torch.from_numpy(data["clean_y"]).long()
        boxes = [box_of(v, fam.eps) for v in data["clean_x"]]
        los = torch.from_numpy(np.stack([b[0] for b in boxes]))
        his = torch.from_numpy(np.stack([b[1] for b in boxes]))
        with torch.no_grad():
            centre_ok = (model(xs).argmax(1) == ys).numpy()
        gen = torch.Generator().manual_seed(fam.seed + 3000)
        with torch.enable_grad():
            best_x, best_v = pgd(model, xs, ys, los, his, 500, 100, 0.01 * fam.eps, gen, objective="max")
        for i in range(fam.n_clean):
            y = int(data["clean_y"][i])
            lo, hi = boxes[i]
            name = f"clean_{i:02d}_ball"
            if not centre_ok[i]:
                drop("centre misclassified")
                continue
            text = vnnlib_text(lo, hi, y, fam.n_classes, f"SoundnessBench-style {fam.name}: clean point {i}, label {y}")
            spec = folder / "vnnlib" / f"{name}.vnnlib"
            if float(best_v[i]) >= 0:
                w = best_x[i].numpy().astype(np.float32)
                ok, margin = exact_violation(exact, w, y)
                blo, bhi = read_box(text, lo.size)
                inside = all(a <= Fraction(float(v)) <= b for a, v, b in zip(blo, w.reshape(-1), bhi))
                if not (ok and inside):
                    drop("clean: PGD point not an exact violation")
                    continue
                spec.write_text(text)
                wpath = folder / "witness" / f"{name}.npy"
                np.save(wpath, w.reshape(-1))
                rows.append(Row(rel(onnx_path), rel(spec), "sat", fam.name, "clean", "ball", False, rel(wpath), "pgd", repr(margin)))
                continue
            expected, evidence = "unknown", ""
            if lo.size <= 6 and bisection_proves(layers, lo, hi, y):
                expected, evidence = "unsat", "interval bisection"
            elif fam.act == "relu":
                m = milp_min_margin(layers, lo, hi, y)
                if m is not None and m > MILP_MARGIN:
                    expected, evidence = "unsat", f"milp dual bound {m:.4g}"
                else:
                    evidence = f"milp dual bound {m:.4g}" if m is not None else "milp unfinished"
            spec.write_text(text)
            rows.append(Row(rel(onnx_path), rel(spec), expected, fam.name, "clean", "ball", True, "", evidence))
    phases["clean"] = time.perf_counter() - t0 - sum(phases.values())
    n_hidden = sum(1 for r in rows if r.kind == "planted" and r.hidden)
    log(f"  {fam.name}: {len(rows)} instances ({sum(r.kind == 'planted' for r in rows)} planted, {n_hidden} hidden from "
        f"PGD; {sum(r.expected == 'unsat' for r in rows)} clean proved unsat), dropped {dropped}, {time.perf_counter() - t0:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + ")")
    return rows


def _family_job(args: tuple[dict, str]) -> list[dict]:
    fam_dict, out = args
    fam = Family(**{**fam_dict, "input_shape": tuple(fam_dict["input_shape"]), "hidden": tuple(fam_dict["hidden"])})
    return [asdict(r) for r in make_family(fam, Path(out), log=lambda s: print(s, flush=True))]


# ------------------------------------------------------------------------------------------------ the whole set


def config_hash(families: tuple[Family, ...]) -> str:
    """Hash of this file's source and the configuration: a cached set is reused while both are unchanged."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(json.dumps([asdict(f) for f in families], sort_keys=True).encode())
    return h.hexdigest()[:16]


def generate(out: Path, families: tuple[Family, ...] = FAMILIES, jobs: int = 2, log=print) -> dict:
    """Generate every family into `out` (created; must not already hold files) and write the index files."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    payload = [(asdict(f), str(out)) for f in families]
    if jobs > 1 and len(families) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(jobs, len(families))) as pool:
            results = pool.map(_family_job, payload, chunksize=1)
    else:
        results = [_family_job(p) for p in payload]
    rows = [r for part in results for r in part]
    with open(out / "instances.csv", "w", newline="") as f:
        w = csv.writer(f)
        for r in rows:
            w.writerow([r["onnx"], r["vnnlib"], TIMEOUT])
    cols = ["onnx", "vnnlib", "expected", "family", "kind", "box", "hidden", "witness_npy", "evidence", "exact_margin"]
    with open(out / "known_results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    manifest = {"hash": config_hash(families), "families": [f.name for f in families], "instances": len(rows),
                "seconds": round(time.perf_counter() - t0, 1), "torch_threads_per_family": 1}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"soundnessbench: {len(rows)} instances in {out} ({manifest['seconds']} s)")
    return manifest


def ensure_generated(root: Path = DEFAULT_CACHE, families: tuple[Family, ...] = FAMILIES, jobs: int = 2, force: bool = False,
                     log=print) -> Path:
    """The folder of the set for this source and configuration under `root`, generated when absent (or `force`)."""
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# generated by benchmarks/soundnessbench.py: never committed\n*\n")
    out = root / config_hash(families)
    manifest = out / "manifest.json"
    if manifest.exists() and not force:
        return out
    if out.exists():
        shutil.rmtree(out)  # a hash folder of ours, half written or forced
    tmp = root / (out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    generate(tmp, families, jobs, log)
    tmp.rename(out)
    return out


def read_rows(folder: Path) -> list[dict[str, str]]:
    """known_results.csv of a generated set."""
    with open(folder / "known_results.csv", newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="folder to write (default: the cache folder .cache/soundnessbench/<hash>)")
    p.add_argument("--families", help="comma-separated subset of: " + ", ".join(f.name for f in FAMILIES))
    p.add_argument("--jobs", type=int, default=2, help="worker processes, one family each (one torch thread each)")
    p.add_argument("--tiny", action="store_true", help="the tiny configuration of the default test")
    p.add_argument("--force", action="store_true", help="regenerate even when a cached set exists")
    a = p.parse_args()
    fams = TINY if a.tiny else FAMILIES
    if a.families:
        wanted = a.families.split(",")
        unknown = set(wanted) - {f.name for f in fams}
        if unknown:
            sys.exit(f"unknown families: {sorted(unknown)}")
        fams = tuple(f for f in fams if f.name in wanted)
    if a.out:
        if a.out.exists() and any(a.out.iterdir()):
            sys.exit(f"{a.out} is not empty")
        generate(a.out, fams, a.jobs)
    else:
        print(ensure_generated(families=fams, jobs=a.jobs, force=a.force))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
