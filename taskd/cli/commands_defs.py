"""Process definitions: list, show, upcoming fire times, pause, resume, delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from taskd.cli import schedwords
from taskd.cli.client import Client, CliError, run
from taskd.cli.output import emit, styled, when
from taskd.cli.root import main, output_option


def def_path(name: str, suffix: str = "") -> str:
    return f"/api/process_definitions/{quote(name, safe='')}{suffix}"


async def get_definition(client: Client, name: str) -> dict[str, Any]:
    return await client.call("GET", def_path(name), what=f"no definition named {name!r}")


def next_fire(doc: dict[str, Any], now: datetime) -> str:
    if doc.get("paused"):
        return "paused"
    try:
        fires = [f for f in schedwords.upcoming(doc.get("schedule"), now, 1) if f.at]
    except Exception:  # a schedule this client cannot read: show the server's words only
        return "?"
    return when(fires[0].at.isoformat()) + " UTC" if fires else "-"


@main.group("defs", invoke_without_command=True)
@output_option
@click.pass_context
def defs(ctx: click.Context, output: str) -> None:
    """Process definitions: list them (no subcommand), or show, next."""
    if ctx.invoked_subcommand is not None:
        return

    async def work(client: Client) -> list[dict[str, Any]]:
        found = await client.call("GET", "/api/process_definitions")

        async def last(d: dict[str, Any]) -> None:
            runs = await client.call(
                "GET", "/api/processes",
                params={"process_definition_name": d["process_definition_name"],
                        "max_records": "1"},
            )  # fmt: skip
            d["last_result"] = runs[0]["status"] if runs else None

        await asyncio.gather(*(last(d) for d in found))
        return found

    found = run(ctx.obj, work)
    now = datetime.now(UTC)
    for d in found:
        d["next_fire"] = next_fire(d, now)
        d["schedule_words"] = schedwords.words(d.get("schedule"))
    emit(
        found, output, ["NAME", "SCHEDULE", "NEXT", "PAUSED", "LAST", "FILE"],
        lambda d: [d["process_definition_name"], d["schedule_words"], d["next_fire"],
                   d["paused"], styled(d["last_result"]), d.get("managed_by_file")],
    )  # fmt: skip


@defs.command("show")
@click.argument("name")
@output_option
@click.pass_obj
def defs_show(obj: dict[str, Any], name: str, output: str) -> None:
    """One definition, as the server stores it."""
    d = run(obj, lambda c: get_definition(c, name))
    if output != "table":
        emit(d, output)
        return
    from taskd.cli.defform import to_file_form

    summary = {
        "name": d["process_definition_name"],
        "schedule": schedwords.words(d.get("schedule")),
        "next fire": next_fire(d, datetime.now(UTC)),
        "paused": d["paused"],
        "version": d.get("version"),
        "managed by file": d.get("managed_by_file"),
        "updated": when(d.get("updated_at")),
    }
    emit(summary, "table")
    emit(to_file_form(d), "yaml")


@defs.command("next")
@click.argument("name")
@click.option("-n", "--count", default=10, show_default=True, type=click.IntRange(1, 1000))
@output_option
@click.pass_obj
def defs_next(obj: dict[str, Any], name: str, count: int, output: str) -> None:
    """Upcoming fire times in the definition's time zone; DST gaps and repeats flagged."""
    d = run(obj, lambda c: get_definition(c, name))
    schedule = d.get("schedule")
    if not schedule or "cron_schedule" not in schedule:
        raise CliError(f"{name} has no cron schedule ({schedwords.words(schedule)})")
    tz = schedule["cron_schedule"].get("timezone", "UTC")
    fires = schedwords.upcoming(schedule, datetime.now(UTC), count)
    rows = [
        {"local": f.wall.isoformat(sep=" "), "timezone": tz,
         "utc": f.at.isoformat().replace("+00:00", "Z") if f.at else None, "note": f.note}
        for f in fires
    ]  # fmt: skip
    emit(rows, output, [f"LOCAL ({tz})", "UTC", "NOTE"],
         lambda r: [r["local"], r["utc"], r["note"]])  # fmt: skip


def simple(method: str, suffix: str, done: str):
    def command(obj: dict[str, Any], name: str, force: bool = False) -> None:
        params = {"force": "true"} if force else None
        run(obj, lambda c: c.call(method, def_path(name, suffix), params=params,
                                  what=f"no definition named {name!r}"))  # fmt: skip
        click.echo(f"{done} {name}")

    return command


@main.command("pause")
@click.argument("name")
@click.pass_obj
def pause(obj: dict[str, Any], name: str) -> None:
    """Pause a definition's schedule (manual triggers still run)."""
    simple("POST", "/pause", "paused")(obj, name)


@main.command("resume")
@click.argument("name")
@click.pass_obj
def resume(obj: dict[str, Any], name: str) -> None:
    """Resume a paused definition's schedule."""
    simple("POST", "/resume", "resumed")(obj, name)


@main.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete even when a file manages it.")
@click.pass_obj
def delete(obj: dict[str, Any], name: str, force: bool) -> None:
    """Delete a definition (its runs stay as history)."""
    simple("DELETE", "", "deleted")(obj, name, force)
