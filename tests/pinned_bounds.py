"""Bounds pinned bit for bit on the fixtures: restructuring the code must not change a single bit.

`python tests/pinned_bounds.py` rewrites `tests/data/pinned_bounds.npz` from the current code; do that only
when a change is *meant* to move bounds, and say so in the commit. `test_pinned_bounds.py` compares.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PIN_FILE = os.path.join(HERE, "data", "pinned_bounds.npz")
CASES = (("mnist_mlp", 0.02, 16), ("mnist_cnn", 0.005, 8), ("mnist_resnet", 0.005, 8))
METHODS = ("ibp", "crown-ibp", "crown", "alpha-crown")


def compute() -> dict[str, np.ndarray]:
    """Lower bounds of every margin for each fixture × method, and SingleProp's radius per variant."""
    from srp_audit.bounds import get_method
    from srp_audit.bounds.singleprop import VARIANTS, singleprop
    from srp_audit.formats import load_model
    from srp_audit.spec import linf_ball, margin_spec

    torch.set_num_threads(1)
    out: dict[str, np.ndarray] = {}
    for name, eps, n in CASES:
        graph = load_model(os.path.join(ROOT, "fixtures", f"{name}.onnx")).double().eval()
        graph.requires_grad_(False)
        data = np.load(os.path.join(ROOT, "fixtures", f"{name}.samples.npz"))
        x = torch.from_numpy(data["x"][:n]).double() / 255.0
        y = torch.from_numpy(data["y"][:n]).long()
        box = linf_ball(x, eps, (0.0, 1.0))
        spec = margin_spec(y, graph.num_classes)
        for method in METHODS:
            kw = {"alpha_iters": 5} if method == "alpha-crown" else {}
            out[f"{name}/{method}"] = get_method(method)(graph, box, spec, **kw).lower.numpy()
        for variant in VARIANTS:
            c, v = singleprop(graph, x, eps, variant)
            out[f"{name}/singleprop-{variant}"] = np.stack([c.numpy(), v.numpy()])
    return out


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    arrays = compute()
    np.savez_compressed(PIN_FILE, **arrays)
    print(f"wrote {len(arrays)} arrays to {PIN_FILE}")
