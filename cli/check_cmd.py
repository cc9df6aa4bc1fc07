"""`srp-audit check`: re-check a certificate with the independent checker `srp_check` (which trusts nothing of
srp-audit's engine)."""

from __future__ import annotations

import click

from srp_audit.errors import UsageError
from srp_audit.perf import denormals_kept
from srp_check import CertificateError, check

from .errors import EXIT_GATE, debug_option


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("certificate", type=click.Path(dir_okay=False))
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="Check robustness claims against your own samples (.npz with x and y) instead of those stored.")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), default=None,
              help="Check box claims against your own VNN-LIB property instead of the box and rows stored.")
@click.option("-q", "--quiet", is_flag=True, help="Only the summary line.")
@debug_option
def check_cmd(model, certificate, data_path, spec_path, quiet) -> None:
    """Re-check every claim of CERTIFICATE (written by certify/verify --certificate) against the ONNX MODEL.

    Prints, per claim, ok or the first step that fails and why; exit 0 when every claim checks, 1 when one does
    not, 2 for bad input (a model whose SHA-256 differs from the certificate's, a malformed certificate).

    \b
    Examples:
      srp-audit certify model.onnx --eps 0.02 --no-radius --certificate proofs.npz
      srp-audit check model.onnx proofs.npz
      srp-audit check model.onnx proofs.npz --data test.npz
      srp-audit check model.onnx property.npz --spec property.vnnlib
    """
    try:
        with denormals_kept():  # the checker's arithmetic is IEEE's, subnormals included: never the process's flush mode
            report = check(model, certificate, data=data_path, spec=spec_path)
    except CertificateError as e:
        raise UsageError(str(e)) from None
    if not quiet:
        for line in report.lines():
            click.echo(line)
    passed = sum(c.ok for c in report.claims)
    click.echo(f"{passed} of {len(report.claims)} claims check; {len(report.uncertified)} verdicts uncertified")
    if not report.ok:
        click.get_current_context().exit(EXIT_GATE)
