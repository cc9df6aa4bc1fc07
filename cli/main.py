"""The `srp-audit` command group. Commands live in their own modules and only map options to library calls."""

from __future__ import annotations

import click

from srp_audit import __version__
from srp_audit.perf import tune_process

from .certify_cmd import certify
from .check_cmd import check_cmd
from .compare_cmd import compare_cmd
from .errors import AuditGroup, debug_option
from .inspect_cmd import inspect_cmd
from .robustify_cmd import robustify_cmd
from .verify_cmd import verify_cmd


@click.group(cls=AuditGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="srp-audit")
@debug_option
def main() -> None:
    """Sound robustness audits of neural networks, and SingleProp fine-tuning to improve them.

    \b
    Examples:
      srp-audit certify model.onnx --eps 0.1
      srp-audit certify model.onnx --eps 0.02 --data test.npz --per-sample --format json -o report.json
      srp-audit robustify model.onnx --data train.npz --eps 0.1 --max-time 180 -o robust.onnx
      srp-audit verify model.onnx property.vnnlib --timeout 120
      srp-audit inspect model.onnx
      srp-audit compare main.json pr.json --tolerance 0.01
      srp-audit check model.onnx proofs.npz

    Shell completion (bash): eval "$(_SRP_AUDIT_COMPLETE=bash_source srp-audit)"
    """
    tune_process()


main.add_command(certify)
main.add_command(robustify_cmd, name="robustify")
main.add_command(verify_cmd, name="verify")
main.add_command(inspect_cmd, name="inspect")
main.add_command(compare_cmd, name="compare")
main.add_command(check_cmd, name="check")


if __name__ == "__main__":  # pragma: no cover
    main()
