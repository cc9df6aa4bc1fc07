"""`srp-audit compare`: the change between two JSON reports, exit 1 on a regression (a CI gate for PRs)."""

from __future__ import annotations

import click

from srp_audit.report.compare import compare, load_report

from .errors import EXIT_GATE, debug_option
from .params import FRACTION


@click.command()
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--tolerance", type=FRACTION, default=0.0, show_default=True,
              help="Allowed drop in certified accuracy (fraction) and median certified radius before failing.")
@debug_option
def compare_cmd(old, new, tolerance) -> None:
    """Compare two `certify --format json` reports; exit 1 when NEW is less robust than OLD beyond --tolerance.

    \b
    Example:
      srp-audit compare main.json pr.json --tolerance 0.01
    """
    result = compare(load_report(old), load_report(new), tolerance)
    click.echo("\n".join(result.lines))
    if result.regressed:
        click.get_current_context().exit(EXIT_GATE)
