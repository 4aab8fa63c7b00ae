"""DAG runs (Daggy) and container tasks (Drove) from files."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.live import Live
from rich.table import Table

from taskd.cli.client import Client, CliError, run
from taskd.cli.files import load_one
from taskd.cli.output import cell, console, emit, styled, when
from taskd.cli.root import main, output_option

POLL = 1.0
DAG_DONE = ("COMPLETED", "ERRORED", "KILLED")
TASK_DONE = ("STOPPED", "PROVISIONING_FAILED", "RUN_FAILED", "LOST")


def parse_params(values: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in values:
        key, eq, rest = raw.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{raw!r}: give KEY=V1,V2", param_hint="-p")
        out[key] = rest.split(",")
    return out


def dag_body(file: Path, params: tuple[str, ...]) -> dict[str, Any]:
    body = load_one(file)
    if not isinstance(body, dict):
        raise CliError(f"{file}: a DAG run is an object with tasks (and tag, parameters)")
    if params:
        body["parameters"] = {**(body.get("parameters") or {}), **parse_params(params)}
    return body


def dag_state(run_doc: dict[str, Any]) -> str:
    changes = run_doc.get("dagStateChanges") or []
    return changes[-1]["state"] if changes else "QUEUED"


def dag_table(run_doc: dict[str, Any]) -> Table:
    table = Table(title=f"DAG run {run_doc['runID']} {run_doc.get('tag', '')} "
                        f"({styled(dag_state(run_doc))})")  # fmt: skip
    table.add_column("TASK")
    table.add_column("STATE")
    table.add_column("ATTEMPTS")
    for name, state in run_doc["taskStates"].items():
        table.add_row(cell(name), styled(state), str(len(run_doc["taskAttempts"].get(name, []))))
    return table


@main.group("dag")
def dag() -> None:
    """Ad-hoc DAG runs (the Daggy API)."""


@dag.command("submit")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-p", "--param", "params", multiple=True, help="KEY=V1,V2 (repeatable).")
@click.option("--wait", is_flag=True, help="Follow the run; exit 0 only if it completed.")
@output_option
@click.pass_obj
def dag_submit(obj: dict[str, Any], file: Path, params: tuple[str, ...], wait: bool,
               output: str) -> None:  # fmt: skip
    """Submit a DAG run from a YAML or JSON file."""
    body = dag_body(file, params)

    async def work(client: Client) -> dict[str, Any]:
        created = await client.call("POST", "/v1/dagrun/", json=body)
        if not wait:
            return created
        path = f"/v1/dagrun/{created['runID']}"
        doc = await client.call("GET", path)
        if not sys.stderr.isatty():
            while dag_state(doc) not in DAG_DONE:
                await asyncio.sleep(POLL)
                doc = await client.call("GET", path)
            return doc
        with Live(dag_table(doc), console=console(err=True), refresh_per_second=4) as view:
            while dag_state(doc) not in DAG_DONE:
                await asyncio.sleep(POLL)
                doc = await client.call("GET", path)
                view.update(dag_table(doc))
        return doc

    result = run(obj, work)
    if not wait:
        if output == "table":
            click.echo(f"run {result['runID']}")
        else:
            emit(result, output)
        return
    state = dag_state(result)
    if output == "table":
        console().print(dag_table(result))
    else:
        emit(result, output)
    if state != "COMPLETED":
        raise CliError(f"DAG run {result['runID']} {state}")


@dag.command("validate")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-p", "--param", "params", multiple=True, help="KEY=V1,V2 (repeatable).")
@click.pass_obj
def dag_validate(obj: dict[str, Any], file: Path, params: tuple[str, ...]) -> None:
    """Check a DAG file with the server, without running it."""
    body = dag_body(file, params)
    run(obj, lambda c: c.call("POST", "/v1/dagrun/validate", json=body))
    click.echo(f"{file}: valid")


@main.group("task")
def task() -> None:
    """One-off container tasks (the Drove API)."""


def task_path(app: str, task_id: str) -> str:
    return f"/apis/v1/tasks/{quote(app, safe='')}/instances/{quote(task_id, safe='')}"


async def get_task(client: Client, app: str, task_id: str) -> dict[str, Any]:
    """A task's record; Drove answers an unknown one with 200 and status FAILED."""
    reply = await client.call("GET", task_path(app, task_id), what=f"no task {app}/{task_id}")
    if not isinstance(reply, dict) or reply.get("status") != "SUCCESS" or "data" not in reply:
        raise CliError(f"not found: no task {app}/{task_id}")
    return reply["data"]


@task.command("create")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@output_option
@click.pass_obj
def task_create(obj: dict[str, Any], file: Path, output: str) -> None:
    """Create a task from a file: a CREATE operation, or just its spec."""
    body = load_one(file)
    if not isinstance(body, dict):
        raise CliError(f"{file}: a task is an object (a spec, or a CREATE operation)")
    if "type" not in body:
        body = {"type": "CREATE", "spec": body, "opSpec": {"timeout": "5m"}}
    reply = run(obj, lambda c: c.call("POST", "/apis/v1/tasks/operations", json=body))
    if output == "table":
        click.echo(f"created {reply['data']['taskId']}")
    else:
        emit(reply["data"], output)


@task.command("kill")
@click.argument("app")
@click.argument("task_id")
@click.option("--timeout", default="1m", show_default=True, help="How long to wait for it.")
@click.pass_obj
def task_kill(obj: dict[str, Any], app: str, task_id: str, timeout: str) -> None:
    """Kill a running task and wait for it to stop."""
    body = {"type": "KILL", "sourceAppName": app, "taskId": task_id,
            "opSpec": {"timeout": timeout}}  # fmt: skip
    run(obj, lambda c: c.call("POST", "/apis/v1/tasks/operations", json=body))
    click.echo(f"killed {app}/{task_id}")


@task.command("show")
@click.argument("app")
@click.argument("task_id")
@output_option
@click.pass_obj
def task_show(obj: dict[str, Any], app: str, task_id: str, output: str) -> None:
    """One task: state, result, times."""
    data = run(obj, lambda c: get_task(c, app, task_id))
    if output != "table":
        emit(data, output)
        return
    result = data.get("taskResult") or {}
    emit({"task": f"{app}/{task_id}", "state": styled(data.get("state")),
          "result": result.get("status"), "exit code": result.get("exitCode"),
          "image": (data.get("executable") or {}).get("url"),
          "created": when(data.get("created")), "updated": when(data.get("updated")),
          "error": data.get("errorMessage") or None}, "table")  # fmt: skip


@task.command("logs")
@click.argument("app")
@click.argument("task_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the task ends.")
@click.option("--file", "file_name", default="output.log", show_default=True,
              type=click.Choice(["output.log", "stderr.log", "executor.log"]))  # fmt: skip
@click.pass_obj
def task_logs(obj: dict[str, Any], app: str, task_id: str, follow: bool, file_name: str) -> None:
    """A task's log file (output.log is its stdout)."""
    base = f"/apis/v1/logfiles/tasks/{quote(app, safe='')}/{quote(task_id, safe='')}"

    async def work(client: Client) -> None:
        offset = 0
        while True:
            done = (await get_task(client, app, task_id)).get("state") in TASK_DONE
            while True:  # everything written so far
                files = await client.call("GET", f"{base}/list")
                if file_name not in files.get("files", []):
                    break
                piece = await client.call(
                    "GET",
                    f"{base}/read/{file_name}",
                    params={"offset": str(offset), "length": "65536"},
                )
                if not piece["data"] and piece["offset"] == offset:
                    break
                sys.stdout.write(piece["data"])
                sys.stdout.flush()
                offset = piece["offset"]
            if done or not follow:
                return
            await asyncio.sleep(POLL)

    run(obj, work)
