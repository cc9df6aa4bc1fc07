"""`srp-audit verify`: VNN-LIB properties, one instance or a whole VNN-COMP benchmark folder."""

from __future__ import annotations

import json
import os

import click
from tabulate import tabulate

from srp_audit.atomic import prepare_output
from srp_audit.certificate_trees import verify_certificate
from srp_audit.errors import UsageError
from srp_audit.verify import VerifyOptions, benchmark_problems, read_instances, read_known, run_instances_sharded, verify, write_result
from srp_audit.vnnlib import read_vnnlib

from .errors import debug_option
from .model_options import load, model_options
from .params import SECONDS


@click.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--timeout", type=SECONDS, default=60.0, show_default=True, help="Seconds for the instance.")
@click.option("--result-file", type=click.Path(dir_okay=False), default=None, help="Write the VNN-COMP result file here.")
@click.option("--certificate", "certificate_path", type=click.Path(dir_okay=False), default=None,
              help="For an unsat answer, write its proof certificate here (.npz); check it with 'srp-audit check'.")
@click.option("--instances", type=click.Path(dir_okay=False), default=None, help="Run a benchmark: its instances.csv.")
@click.option("--known", type=click.Path(dir_okay=False), default=None,
              help="Expected answers (known_results.csv); prints a soundness line and exits 1 on an unsound answer.")
@click.option("--timeout-cap", type=SECONDS, default=None, help="With --instances: cap every instance's timeout.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="With --instances: only the first N.")
@click.option("--no-complete", is_flag=True, help="Stop after the bound cascade (no branch and bound).")
@click.option("--allow-errors", is_flag=True, help="With --instances: instances that fail to load or run do not fail the run.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("-q", "--quiet", is_flag=True)
@model_options
@debug_option
def verify_cmd(model, spec, timeout, result_file, certificate_path, instances, known, timeout_cap, limit, no_complete, allow_errors, fmt,
               seed, device, quiet, model_opts) -> None:
    """Decide a VNN-LIB property of MODEL: sat (counterexample found and re-checked), unsat (proved), unknown or
    timeout. With --instances, run a VNN-COMP benchmark folder instead.

    \b
    Examples:
      srp-audit verify net.onnx prop.vnnlib --timeout 120 --result-file out.txt
      srp-audit verify net.onnx prop.vnnlib --certificate proof.npz && srp-audit check net.onnx proof.npz --spec prop.vnnlib
      srp-audit verify --instances vnncomp/mnist_fc/instances.csv --known vnncomp/known_results.csv
    """
    opts = VerifyOptions(timeout=timeout, complete=not no_complete, seed=seed, device=device)
    if instances and certificate_path:
        raise UsageError("--certificate is for one MODEL SPEC instance, not --instances")
    if instances:
        if model or spec:
            raise UsageError("give either MODEL SPEC or --instances, not both")
        _run_benchmark(instances, known, opts, timeout_cap, limit, fmt, quiet, allow_errors)
        return
    if not (model and spec):
        raise UsageError("verify needs MODEL and SPEC (or --instances BENCH/instances.csv)")
    if result_file:
        prepare_output(result_file, "result file", (model, spec))
    if certificate_path:
        prepare_output(certificate_path, "certificate", (model, spec))
    graph = load(model, model_opts)
    if graph.meta.note:
        click.echo(f"note: {graph.meta.note}", err=True)
    prop = read_vnnlib(spec)
    res = verify(graph, prop, opts)
    if fmt == "json":
        click.echo(json.dumps({"model": model, "spec": spec, "result": res.status, "method": res.method,
                               "seconds": res.seconds, "detail": res.detail}))
    else:
        how = f" by {res.method}" if res.method else ""
        click.echo(f"{res.status}{how}  ({res.seconds:.2f} s){'  ' + res.detail if res.detail else ''}")
    if result_file:
        write_result(result_file, res)
    if certificate_path:
        if res.status != "unsat":
            click.echo(f"note: no certificate written: the answer is {res.status}, and certificates carry proofs of unsat answers", err=True)
            return
        cert = verify_certificate(model, graph, prop, timeout=2 * timeout)  # the search again, with a record: room for its variance
        cert.write(certificate_path)
        click.echo(f"certificate: {len(cert.claims)} claims, {len(cert.uncertified)} uncertified → {certificate_path}", err=True)


def _run_benchmark(instances_csv, known_csv, opts, timeout_cap, limit, fmt, quiet, allow_errors) -> None:
    insts = read_instances(instances_csv)[:limit]
    known = read_known(known_csv) if known_csv else None
    if known is not None and not any((i.onnx, i.vnnlib) in known for i in insts):
        raise UsageError(f"none of the instances appears in the known-results file '{known_csv}': check that both name "
                         "the same onnx/vnnlib paths (relative to each file's folder)")
    root = os.path.dirname(os.path.abspath(instances_csv))

    def show(row) -> None:
        if quiet or fmt != "table":
            return
        r = row.result
        name = f"{os.path.relpath(row.instance.onnx, root)} {os.path.relpath(row.instance.vnnlib, root)}"
        status = r.status if r else f"error: {row.error}"
        exp = f"  (expected {row.expected})" if row.expected else ""
        click.echo(f"{name:70s} {status:8s} {(r.method or '') if r else '':12s} {r.seconds if r else 0:7.1f} s{exp}")

    summary = run_instances_sharded(insts, opts, known, timeout_cap, show)  # under torchrun: rank 0 reports
    if summary is None:
        return
    counts = summary.counts()
    if fmt == "json":
        click.echo(json.dumps({
            "instances": [{"onnx": r.instance.onnx, "vnnlib": r.instance.vnnlib, "result": r.result.status if r.result else "error",
                           "method": r.result.method if r.result else None, "seconds": r.result.seconds if r.result else None,
                           "expected": r.expected, "error": r.error} for r in summary.rows],
            "counts": counts}, indent=2))
    else:
        click.echo(tabulate([[k, v] for k, v in counts.items()], headers=["result", "instances"], tablefmt="simple"))
    if known is not None:
        bad = summary.unsound()
        proved, n_unsat = summary.proved_of_expected_unsat()
        found, n_sat = summary.falsified_of_expected_sat()
        click.echo(f"soundness: {len(bad)} unsat answers on instances known to be sat (must be 0); "
                   f"proved {proved}/{n_unsat} expected-unsat; falsified {found}/{n_sat} expected-sat")
    code, reason = benchmark_problems(summary, known, allow_errors)
    if code:
        click.echo(f"{'error' if code == 2 else 'gate failed'}: {reason}", err=True)
        click.get_current_context().exit(code)
