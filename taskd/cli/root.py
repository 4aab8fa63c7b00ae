"""The ``taskd`` command group and the options every client command shares."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from taskd import __version__


class TaskdGroup(click.Group):
    """Errors as one line (``taskd: ...``) for the user and for scripts, usage errors too.

    The client commands are imported when one is named or listed (``loader``): ``taskd serve``
    runs for months without them and the libraries they print with.
    """

    loader: Callable[[], None] | None = None

    def load_all(self) -> None:
        if self.loader is not None:
            loader, self.loader = self.loader, None
            loader()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and self.loader is not None:
            self.load_all()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_all()
        return super().list_commands(ctx)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
            click.echo(f"taskd: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("taskd: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=TaskdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="TASKD_URL", help="The taskd server [context, or the local server].")
@click.option("--token", envvar="TASKD_TOKEN", help="An API token [context, or the token file].")
@click.option("--context", "context_name", envvar="TASKD_CONTEXT", help="A saved context.")
@click.version_option(__version__, prog_name="taskd")
@click.pass_context
def main(ctx: click.Context, url: str | None, token: str | None, context_name: str | None) -> None:
    """taskd: a self-hosted job scheduler for small teams.

    `serve` runs the server; every other command is a client of a running server over its
    HTTP API, local or remote (see `taskd context`).
    """
    ctx.obj = {"url": url, "token": token, "context": context_name}


def output_option(func):
    """``-o/--output table|json|yaml`` on a command that prints data."""
    return click.option(
        "-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table",
        show_default=True, help="How to print the result.",
    )(func)  # fmt: skip
