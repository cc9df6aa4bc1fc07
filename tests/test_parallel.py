"""Scale: shards, torchrun with 2 CPU processes (gloo) giving the same rows as 1 process, a failing rank named
with the work it held, distributed robustify matching one process, sharded verify, and out-of-memory recovery."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, VNNCOMP

from srp_audit.certify import CertifyOptions, certify
from srp_audit.data import load_samples
from srp_audit.formats import load_model
from srp_audit.parallel import shard

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
SRP = shutil.which("srp-audit") or str(Path(sys.executable).parent / "srp-audit")
# one thread per process: two processes with two threads each on two cores slow torch down enormously
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run(args: list[str], nproc: int, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [SRP] + args if nproc == 1 else [TORCHRUN, "--nproc-per-node", str(nproc), "--no-python", SRP] + args
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_shards_are_whole_batches_covering_everything() -> None:
    for n, batch, world in [(100, 32, 2), (10, 4, 3), (7, 100, 2), (256, 256, 4)]:
        ranges = [shard(n, batch, r, world) for r in range(world)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        for (a, b), (c, _) in zip(ranges, ranges[1:]):
            assert b == c and (a == b or a % batch == 0)


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["samples"]


def test_two_processes_give_the_same_rows_as_one(tmp_path: Path) -> None:
    args = ["certify", str(FIXTURES / "mnist_mlp.onnx"), "--eps", "0.01", "--method", "auto", "--limit", "40",
            "--batch-size", "8", "--format", "json", "-q", "--alpha-iters", "5"]
    one = _run(args + ["-o", str(tmp_path / "one.json")], 1, tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run(args + ["-o", str(tmp_path / "two.json")], 2, tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    assert _rows(tmp_path / "one.json") == _rows(tmp_path / "two.json")
    assert json.loads((tmp_path / "two.json").read_text())["summary"]["device"].startswith("2 ranks")


def _failing_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    from srp_audit.parallel import Dist, RankFailed, run_and_gather

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)

    def work():
        if rank == 1:
            raise ValueError("disk on fire")
        return rank

    try:
        run_and_gather(Dist(rank, world, rank, torch.device("cpu")), work, f"samples {rank * 50}–{rank * 50 + 49}")
        queue.put((rank, "ok"))
    except RankFailed as e:
        queue.put((rank, str(e)))
    finally:
        dist.destroy_process_group()


def test_a_failing_rank_reports_the_samples_it_held() -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_failing_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    out = dict(queue.get(timeout=10) for _ in range(2))
    assert "rank 1 (samples 50–99) failed: ValueError: disk on fire" in out[0]
    assert out[1] == "ok"  # only rank 0 raises; the failing rank's own process ends normally


def test_distributed_robustify_matches_one_process(tmp_path: Path) -> None:
    args = ["robustify", str(FIXTURES / "mnist_mlp.onnx"), "--data", str(FIXTURES / "mnist_train_4k.npz"), "--eps", "0.02",
            "--epochs", "1", "--method", "ibp", "--audit-samples", "20", "--no-audit-radius", "-q"]
    one = _run(args + ["-o", str(tmp_path / "one.onnx")], 1, tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run(args + ["-o", str(tmp_path / "two.onnx")], 2, tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_model(str(tmp_path / "one.onnx")), load_model(str(tmp_path / "two.onnx"))
    s = load_samples(str(FIXTURES / "mnist_train_4k.npz"), a.input_shape, 10)
    with torch.no_grad():
        la, lb = a(s.x[:500]), b(s.x[:500])
    assert float((la - lb).abs().max() / la.abs().max()) < 1e-2  # gradient sums in another order, amplified by Adam
    assert torch.equal(la.argmax(1), lb.argmax(1))
    assert "wrote" in two.stdout and two.stdout.count("wrote") == 1  # only rank 0 writes


@pytest.mark.skipif(not (VNNCOMP / "test").exists(), reason="../shared/benchmarks/vnncomp is absent")
def test_sharded_verify_benchmark(tmp_path: Path) -> None:
    args = ["verify", "--instances", str(VNNCOMP / "test" / "instances.csv"), "--known", str(VNNCOMP / "known_results.csv"),
            "--timeout-cap", "20", "--format", "json"]
    one, two = _run(args, 1, tmp_path), _run(args, 2, tmp_path)
    assert one.returncode == two.returncode == 0, two.stderr[-2000:]
    strip = lambda out: [(r["vnnlib"], r["result"]) for r in json.loads(out[: out.rindex("}") + 1])["instances"]]  # noqa: E731
    assert strip(one.stdout) == strip(two.stdout)


def test_out_of_memory_halves_the_batch_and_says_so(fixture_models, monkeypatch) -> None:
    import srp_audit.certify as C

    g = fixture_models["mnist_mlp"]
    s = load_samples(str(FIXTURES / "mnist_mlp.samples.npz"), g.input_shape, 10)
    real = C._certify_batch
    sizes = []

    def flaky(native, wide, x, y, opt, offset):
        sizes.append(x.shape[0])
        if x.shape[0] > 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(native, wide, x, y, opt, offset)

    monkeypatch.setattr(C, "_certify_batch", flaky)
    res = certify(g, s.x[:20], s.y[:20], CertifyOptions(eps=0.01, method="ibp", batch_size=32, device="cpu"))
    assert [r.index for r in res.samples] == list(range(20))
    assert sizes[:3] == [20, 16, 8] and len(res.notes) == 1 and "out of memory at batch" in res.notes[0]
