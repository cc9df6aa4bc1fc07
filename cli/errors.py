"""One place that turns exceptions into a single stderr line and an exit code (never a traceback).

Exit codes: 0 success, 1 a CI gate failed, 2 usage or load error, 3 internal error (a bug: please report it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from srp_audit.errors import SrpAuditError

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def debug_enabled(ctx: click.Context) -> bool:
    """`ctx.meta` is shared by nested contexts, so a --debug on the group or the command shows here."""
    return bool(ctx.meta.get("srp_audit.debug"))


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta["srp_audit.debug"] = True
    return value


debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
    help="Show the full traceback when something fails.",
)


class AuditGroup(click.Group):
    """A click group whose commands report errors as one line with the documented exit codes."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> NoReturn:
        """Click's own usage errors (bad option values, unknown commands) as one line, exit 2; the rest as click does.
        Always standalone: `standalone_mode` is accepted for click's signature and ignored."""
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "srp-audit"
            click.echo(f"error: {e.format_message()} (see '{where} --help')", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except SrpAuditError as e:
            if debug_enabled(ctx):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug: say so in one line, keep the traceback behind --debug
            if debug_enabled(ctx):
                raise
            click.echo(
                f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback and please report it)",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)
