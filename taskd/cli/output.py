"""Printing results: rich tables that fit the terminal, or JSON/YAML for scripts.

Colour and styles only reach a terminal; piped output is plain text.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def console(err: bool = False) -> Console:
    """A console that colours only a TTY (and honours NO_COLOR, as rich does)."""
    stream = sys.stderr if err else sys.stdout
    return Console(file=stream, highlight=False, soft_wrap=False)


def dump_yaml(data: Any) -> str:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def emit(
    data: Any,
    output: str,
    columns: Sequence[str] = (),
    row: Callable[[Any], Sequence[Any]] | None = None,
    *,
    title: str | None = None,
) -> None:
    """Print ``data`` as JSON or YAML verbatim, or as a table of ``row(item)`` per item."""
    if output == "json":
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    if output == "yaml":
        click.echo(dump_yaml(data), nl=False)
        return
    if row is None:  # one object: a two-column table of its fields
        table = Table(show_header=False, box=None, title=title)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in data.items():
            table.add_row(str(key), cell(value))
        console().print(table)
        return
    table = Table(title=title, header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    for item in data:
        table.add_row(*(cell(v) for v in row(item)))
    console().print(table)


class Markup(str):
    """Text that carries rich markup on purpose (every other cell is escaped)."""


def cell(value: Any) -> str:
    """A table cell: data is escaped, so a ``[`` in a script or message prints as itself."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return escape(orjson.dumps(value).decode())
    return escape(str(value))


STATE_STYLES = {
    "succeeded": "green", "COMPLETED": "green", "SUCCESSFUL": "green", "RUN_COMPLETED": "green",
    "failed": "red", "ERRORED": "red", "FAILED": "red", "killed": "magenta", "KILLED": "magenta",
    "running": "cyan", "RUNNING": "cyan", "queued": "yellow", "QUEUED": "yellow",
}  # fmt: skip


def styled(state: str | None) -> str:
    """A state word in its colour (rich markup; plain when not on a terminal)."""
    if not state:
        return Markup("-")
    style = STATE_STYLES.get(state)
    return Markup(f"[{style}]{escape(state)}[/{style}]" if style else escape(state))


def when(ms_or_iso: Any) -> str:
    """A short local-free UTC time for tables."""
    if ms_or_iso in (None, "", 0):
        return "-"
    if isinstance(ms_or_iso, (int, float)):
        dt = datetime.fromtimestamp(ms_or_iso / 1000, UTC)
        return dt.strftime("%Y-%m-%d %H:%M:%S")
    return str(ms_or_iso).replace("T", " ").removesuffix("Z")[:19]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
