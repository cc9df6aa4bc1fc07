"""Throughput of `certify` on one process vs torchrun with 2 processes × 1 thread (CPU, gloo), and on a GPU
when there is one.

Samples/s are taken from the reports' own wall time (the certification itself; for torchrun, rank 0's time
from start to gathered results), so process start-up does not count. Target on CPU: 2 processes ≥ 1.7× one
single-threaded process. On a GPU: IBP radius search on 10 000 MNIST samples in under 2 s.
Run: python benchmarks/bench_scale.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import FIXTURES, ROOT, machine, setup_threads
from docs_results import recorded
from tabulate import tabulate

BIN = Path(sys.executable).parent
SRP = shutil.which("srp-audit") or str(BIN / "srp-audit")
TORCHRUN = shutil.which("torchrun") or str(BIN / "torchrun")


def _certify(args: list[str], nproc: int, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = ([SRP] if nproc == 1 else [TORCHRUN, "--nproc-per-node", str(nproc), "--no-python", SRP]) + args + ["-o", str(out), "-q"]
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        doc = json.loads(out.read_text())
    return doc["summary"]["samples"] / doc["summary"]["wall_time_s"]


def main() -> None:
    setup_threads()
    print(f"bench_scale: {machine()}")
    train = FIXTURES / "mnist_train_4k.npz"
    jobs = [
        ("IBP + radius search, MLP, 4 000 samples", ["certify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(train), "--eps", "0.01",
                                                    "--method", "ibp", "--batch-size", "250"]),
        ("CROWN verdicts, MLP, 1 000 samples", ["certify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(train), "--eps", "0.01",
                                               "--method", "crown", "--no-radius", "--limit", "1000", "--batch-size", "125"]),
    ]
    rows = []
    for name, args in jobs:
        one = _certify(args, 1, 1)
        one2 = _certify(args, 1, 2)
        two = _certify(args, 2, 1)
        rows.append([name, f"{one:.0f}", f"{one2:.0f}", f"{two:.0f}", f"{two / one:.2f}×"])
    print(tabulate(rows, headers=["job", "1 proc × 1 thread (samples/s)", "1 proc × 2 threads", "2 procs × 1 thread",
                                  "2 procs ÷ 1 proc×1 thread"], tablefmt="github"))
    print("target: 2 processes ≥ 1.7× one single-threaded process")
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            x = np.load(train)
            with tempfile.TemporaryDirectory() as tmp:
                big = Path(tmp) / "10k.npz"
                reps = (10_000 + len(x["y"]) - 1) // len(x["y"])
                np.savez(big, x=np.concatenate([x["x"]] * reps)[:10_000], y=np.concatenate([x["y"]] * reps)[:10_000])
                rate = _certify(["certify", str(FIXTURES / "mnist_cnn.onnx"), "--data", str(big), "--eps", "0.01", "--method", "ibp",
                                 "--batch-size", "auto", "--device", "cuda"], 1, 4)
            print(f"GPU {gpu}: IBP radius search, CNN, 10 000 samples: {10_000 / rate:.2f} s ({rate:.0f} samples/s); target < 2 s")
        else:
            print("no GPU on this machine: the GPU measurement was not taken")
    except Exception as e:  # report, do not hide
        print(f"GPU measurement failed: {e}")


if __name__ == "__main__":
    with recorded("bench_scale.py"):
        main()
