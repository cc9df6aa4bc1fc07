"""Proof certificates: their size, what checking them costs against proving, and the share of verdicts they cover.

Per fixture (`certify --no-radius` on the first N samples at the demo's eps) and per VNN-COMP family (`verify`'s
complete search on its expected-unsat instances, branch and bound included): the certificate's size per claim, the independent
checker's time ÷ the proving time (both measured in this run, on this machine), and how many verified / unsat
verdicts got a certificate the checker accepts (the rest are listed in the certificate with the reason).
Targets: check ÷ certify ≤ 5 on the MLP and ≤ 10 on the CNN and ResNet; ≤ 1 MB per claim on the CNN.
Run: python benchmarks/bench_certificates.py [--quick] [--families=mnist_fc,oval21 | --no-families] (the full run: every
expected-unsat instance of each family, 60 s per search; --quick: the first two, 30 s)
"""

from __future__ import annotations

import csv
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import FIXTURES, SHARED, machine, setup_threads
from docs_results import recorded
from tabulate import tabulate

from srp_audit.certificate import certify_certificate
from srp_audit.certificate_trees import verify_certificate
from srp_audit.certify import CertifyOptions, certify
from srp_audit.formats import load_model
from srp_audit.verify import VerifyOptions, verify
from srp_audit.vnnlib import read_vnnlib
from srp_check import check

FIXTURE_CASES = (("mnist_mlp", 0.02), ("mnist_cnn", 0.02), ("mnist_resnet", 0.005))
FAMILIES = ("mnist_fc", "eran", "oval21", "cifar10_resnet")


def _row(name: str, prove_s: float, cert, path: Path, verdicts: int, check_s: float, ok: int) -> list:
    size = path.stat().st_size
    per_claim = f"{size / max(1, len(cert.claims)) / 1024:.0f} KiB" if cert.claims else "—"
    ratio = f"{check_s / prove_s:.2f}" if cert.claims else "—"
    reason = cert.uncertified[0][1] if cert.uncertified else ""
    return [name, verdicts, f"{ok}/{verdicts}", per_claim, f"{prove_s:.2f}", f"{check_s:.2f}", ratio, reason[:60]]


def fixtures(n: int, tmp: Path) -> list[list]:
    rows = []
    for name, eps in FIXTURE_CASES:
        path = str(FIXTURES / f"{name}.onnx")
        graph = load_model(path)
        data = np.load(FIXTURES / f"{name}.samples.npz")
        x, y = torch.from_numpy(data["x"][:n]).float() / 255.0, torch.from_numpy(data["y"][:n]).long()
        opts = CertifyOptions(eps=eps, radius=False)
        t = time.perf_counter()
        result = certify(graph, x, y, opts)
        prove_s = time.perf_counter() - t
        cert = certify_certificate(path, graph, x, result.samples, opts)
        out = tmp / f"{name}.npz"
        cert.write(str(out))
        t = time.perf_counter()
        report = check(path, str(out))
        check_s = time.perf_counter() - t
        verified = sum(s.verdict == "verified" for s in result.samples)
        rows.append(_row(f"{name} (eps {eps})", prove_s, cert, out, verified, check_s, sum(c.ok for c in report.claims)))
    return rows


def families(per_family: int | None, timeout: float, tmp: Path, names: tuple[str, ...] = FAMILIES) -> list[list]:
    """Per family: `verify` (complete: branch and bound included) on its expected-unsat instances, then the
    certificate of every unsat answer (the cascade's proof again, or the branch-and-bound search again with its
    tree) and the check against the VNN-LIB file. 'prove s' is verify's time plus the certificate's."""
    root = SHARED / "benchmarks" / "vnncomp"
    known = {(r["benchmark"], r["onnx"].split("/", 1)[1], r["vnnlib"].split("/", 1)[1]): r["expected"]
             for r in csv.DictReader(open(root / "known_results.csv"))}
    rows = []
    for fam in names:
        insts = [r for r in csv.reader(open(root / fam / "instances.csv")) if known.get((fam, r[0], r[1])) == "unsat"][:per_family]
        prove_s = check_s = 0.0
        unsat = ok = 0
        size, claims, reasons = 0, 0, []
        for onnx_rel, spec_rel, _ in insts:
            spec_path = tmp / "p.vnnlib"
            opener = gzip.open if spec_rel.endswith(".gz") else open
            with opener(root / fam / spec_rel, "rb") as f:
                spec_path.write_bytes(f.read())
            model = str(root / fam / onnx_rel)
            graph, spec = load_model(model), read_vnnlib(str(spec_path))
            t = time.perf_counter()
            res = verify(graph, spec, VerifyOptions(timeout=timeout))
            if res.status != "unsat":
                continue
            cert = verify_certificate(model, graph, spec, timeout=timeout)
            prove_s += time.perf_counter() - t
            unsat += 1
            out = tmp / f"{fam}.npz"
            cert.write(str(out))
            t = time.perf_counter()
            report = check(model, str(out), spec=str(spec_path))
            check_s += time.perf_counter() - t
            good = bool(report.claims) and report.ok and not report.uncertified
            ok += int(good)
            if not good:
                print(f"  not certified: {fam} {spec_rel}: {[c.reason for c in report.claims if not c.ok] or cert.uncertified}", flush=True)
            size += out.stat().st_size
            claims += len(cert.claims)
            reasons += [r for _, r in cert.uncertified]
        per_claim = f"{size / claims / 1024:.0f} KiB" if claims else "—"
        ratio = f"{check_s / prove_s:.2f}" if claims else "—"
        rows.append([f"{fam} ({len(insts)} expected unsat)", unsat, f"{ok}/{unsat}", per_claim, f"{prove_s:.2f}", f"{check_s:.2f}", ratio,
                     (reasons[0] if reasons else "")[:60]])
        print("  " + " | ".join(map(str, rows[-1])), flush=True)  # a long run's families as they finish
    return rows


def main() -> None:
    quick = "--quick" in sys.argv
    only = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--families=")), None)
    setup_threads()
    print(f"bench_certificates: {machine()}")
    headers = ["model", "verdicts", "certified", "size / claim", "prove s", "check s", "check ÷ prove", "first reason not certified"]
    with tempfile.TemporaryDirectory() as d:
        rows = [] if only else fixtures(8 if quick else 32, Path(d))
        if (SHARED / "benchmarks" / "vnncomp").exists() and "--no-families" not in sys.argv:
            names = tuple(only.split(",")) if only else FAMILIES
            rows += families(2 if quick else None, 30.0 if quick else 60.0, Path(d), names)
    print(tabulate(rows, headers=headers, tablefmt="github"))


if __name__ == "__main__":
    with recorded("bench_certificates.py"):
        main()
