"""Runs of definitions (Sundial processes): trigger, list, show, logs, kill, retry."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from taskd.cli.client import Client, CliError, lines, run
from taskd.cli.commands_defs import def_path
from taskd.cli.output import console, duration, emit, styled, when
from taskd.cli.root import main, output_option

FINISHED = ("succeeded", "failed")
POLL = 1.0  # seconds between looks at a run being waited for


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start:
        return None
    a = datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(UTC)
    return max((b - a).total_seconds(), 0.0)


def task_rows(process: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task (its latest attempt), in the order the tasks first appear."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for attempt in process.get("task", []):
        by_name.setdefault(attempt["task_definition_name"], []).append(attempt)
    rows = []
    for name, attempts in by_name.items():
        attempts.sort(key=lambda a: a["previous_attempt_count"])
        last = attempts[-1]
        rows.append({
            "task": name, "status": last["status"], "attempts": len(attempts),
            "task_id": last["task_id"], "exit_code": last.get("exit_code"),
            "reason": last.get("reason"),
            "seconds": seconds_between(last["start_time"], last["end_time"]),
            "history": attempts,
        })  # fmt: skip
    return rows


def run_table(process: dict[str, Any], expected: list[str] = ()) -> Table:
    """The live view of a run: its tasks, and (``expected``) those that have not started."""
    table = Table(title=f"process {process['process_id']} ({styled(process['status'])})")
    for col in ("TASK", "STATUS", "ATTEMPTS", "DURATION", "TASK ID"):
        table.add_column(col)
    rows = task_rows(process)
    for r in rows:
        table.add_row(r["task"], styled(r["status"]), str(r["attempts"]),
                      duration(r["seconds"]), r["task_id"])  # fmt: skip
    started = {r["task"] for r in rows}
    for name in expected:
        if name not in started:
            table.add_row(name, "waiting", "0", "-", "-")
    return table


async def get_process(client: Client, process_id: str) -> dict[str, Any]:
    return await client.call("GET", f"/api/processes/{quote(process_id, safe='')}",
                             what=f"no process {process_id!r}")  # fmt: skip


async def process_ids(client: Client, name: str) -> set[str]:
    found = await client.call(
        "GET", "/api/processes", params={"process_definition_name": name, "max_records": "100"}
    )
    return {p["process_id"] for p in found}


async def started_later(client: Client, name: str, known: set[str]) -> dict[str, Any]:
    """The first manual process of ``name`` not in ``known`` (a trigger that waited its turn)."""
    while True:
        found = await client.call(
            "GET", "/api/processes", params={"process_definition_name": name, "max_records": "20"}
        )
        fresh = [p for p in found if p["process_id"] not in known and p.get("trigger") == "manual"]
        if fresh:
            return min(fresh, key=lambda p: p["start_time"])
        await asyncio.sleep(POLL)


async def wait_for(
    client: Client, process_id: str, live: bool, expected: list[str] = ()
) -> dict[str, Any]:
    """Follow a process to its end, with a live table of its tasks on a terminal."""
    process = await get_process(client, process_id)
    if not live:
        while process["status"] not in FINISHED:
            await asyncio.sleep(POLL)
            process = await get_process(client, process_id)
        return process
    view_of = lambda p: run_table(p, expected)  # noqa: E731
    with Live(view_of(process), console=console(err=True), refresh_per_second=4) as view:
        while process["status"] not in FINISHED:
            await asyncio.sleep(POLL)
            process = await get_process(client, process_id)
            view.update(view_of(process))
    return process


@main.command("trigger")
@click.argument("name")
@click.option("--task", help="Run only this task of the definition.")
@click.option("--wait", is_flag=True, help="Follow the run; exit 0 only if it succeeded.")
@output_option
@click.pass_obj
def trigger(obj: dict[str, Any], name: str, task: str | None, wait: bool, output: str) -> None:
    """Start a run of a definition now."""

    async def work(client: Client) -> dict[str, Any] | None:
        params = {"task_definition_name": task} if task else None
        known = await process_ids(client, name) if wait else set()
        async with client.open("POST", def_path(name, "/trigger"), params=params,
                               what=f"no definition named {name!r}") as resp:  # fmt: skip
            process_id = resp.headers.get("X-Taskd-Process-Id")
        if not wait:
            return {"process_id": process_id, "process_definition_name": name}
        if process_id is None:
            click.echo(f"{name}: waiting for the running process to end first", err=True)
            process_id = (await started_later(client, name, known))["process_id"]
        live = sys.stderr.isatty()
        expected: list[str] = [task] if task else []
        if live and not task:
            found = await client.call("GET", def_path(name))
            expected = [t["task_definition_name"] for t in found["task_definitions"]]
        return await wait_for(client, process_id, live, expected)

    result = run(obj, work)
    if not wait:
        if output == "table":
            click.echo(
                f"triggered {name}"
                + (f": process {result['process_id']}" if result["process_id"] else " (queued)")
            )
        else:
            emit(result, output)
        return
    show_process(result, output)
    if result["status"] != "succeeded":
        raise CliError(f"process {result['process_id']} of {name} {result['status']}")


SINCE = re.compile(r"^(\d+)([smhd])$")


def parse_since(value: str) -> str:
    """``30m``, ``2h``, ``1d`` ago, or an ISO-8601 time, as the API's ISO form."""
    m = SINCE.match(value)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        at = datetime.now(UTC) - timedelta(**{unit: int(m.group(1))})
    else:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                "give 30m, 2h, 1d or an ISO-8601 time", param_hint="--since"
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@main.command("runs")
@click.option("--name", help="Only runs of this definition.")
@click.option("--state", type=click.Choice(["running", "succeeded", "failed"]), multiple=True)
@click.option("--since", help="Only runs started since: 30m, 2h, 1d or an ISO-8601 time.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@output_option
@click.pass_obj
def runs(obj: dict[str, Any], name: str | None, state: tuple[str, ...], since: str | None,
         limit: int, output: str) -> None:  # fmt: skip
    """Recent runs (processes), newest first."""
    params: dict[str, str] = {"max_records": str(limit)}
    if name:
        params["process_definition_name"] = name
    if state:
        params["allowed_statuses"] = ",".join(state)
    if since:
        params["start_time"] = parse_since(since)
    found = run(obj, lambda c: c.call("GET", "/api/processes", params=params))
    emit(found, output, ["PROCESS ID", "NAME", "STATUS", "TRIGGER", "STARTED", "DURATION"],
         lambda p: [p["process_id"], p["process_definition_name"], styled(p["status"]),
                    p.get("trigger"), when(p["start_time"]),
                    duration(seconds_between(p["start_time"], p["end_time"]))])  # fmt: skip


def show_process(process: dict[str, Any], output: str) -> None:
    if output != "table":
        emit(process, output)
        return
    took = duration(seconds_between(process["start_time"], process["end_time"]))
    tree = Tree(f"[bold]{process['process_definition_name']}[/bold] {process['process_id']} "
                f"{styled(process['status'])} {took}")  # fmt: skip
    for r in task_rows(process):
        node = tree.add(f"{r['task']}  {styled(r['status'])}  attempts {r['attempts']}  "
                        f"{duration(r['seconds'])}  {r['task_id']}")  # fmt: skip
        if r["attempts"] > 1 or r["status"] == "failed":
            for a in r["history"]:
                extra = f" exit {a['exit_code']}" if a.get("exit_code") is not None else ""
                extra += f" ({escape(a['reason'])})" if a.get("reason") else ""
                node.add(
                    f"attempt {a['previous_attempt_count'] + 1}: {styled(a['status'])}"
                    f"{extra}  {duration(seconds_between(a['start_time'], a['end_time']))}"
                )
    console().print(tree)


@main.group("run")
def run_group() -> None:
    """One run (process)."""


@run_group.command("show")
@click.argument("process_id")
@output_option
@click.pass_obj
def run_show(obj: dict[str, Any], process_id: str, output: str) -> None:
    """A run's tasks as a tree: states, attempts, durations."""
    show_process(run(obj, lambda c: get_process(c, process_id)), output)


@main.command("logs")
@click.argument("task_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the task ends.")
@click.option("--stream", type=click.Choice(["all", "stdout", "stderr", "executor"]),
              default="all", show_default=True)  # fmt: skip
@click.pass_obj
def logs(obj: dict[str, Any], task_id: str, follow: bool, stream: str) -> None:
    """What a task (an attempt's TASK_ID, see `run show`) printed."""
    params = {"stream": stream, "follow": "true" if follow else "false"}

    async def work(client: Client) -> None:
        async with client.open("GET", f"/api/tasks/{quote(task_id, safe='')}/logs",
                               params=params, what=f"no task {task_id!r}") as resp:  # fmt: skip
            async for text in lines(resp):
                sys.stdout.write(text)
                sys.stdout.flush()

    run(obj, work)


@main.command("kill")
@click.argument("process_id")
@click.pass_obj
def kill(obj: dict[str, Any], process_id: str) -> None:
    """Kill a running process."""
    run(obj, lambda c: c.call("POST", f"/api/processes/{quote(process_id, safe='')}/kill",
                              what=f"no process {process_id!r}"))  # fmt: skip
    click.echo(f"killed {process_id}")


@main.command("retry")
@click.argument("process_id")
@click.pass_obj
def retry(obj: dict[str, Any], process_id: str) -> None:
    """Give each failed task of a process one more attempt."""
    run(obj, lambda c: c.call("POST", f"/api/processes/{quote(process_id, safe='')}/retry",
                              what=f"no process {process_id!r}"))  # fmt: skip
    click.echo(f"retrying {process_id}")
