"""Work queue administration: projects, workers, access requests (admin token)."""

from __future__ import annotations

from typing import Any

import click

from taskd.cli.client import Client, CliError, run
from taskd.cli.files import load_one
from taskd.cli.output import emit, when
from taskd.cli.root import main, output_option


async def content(client: Client, method: str, path: str, **kw: Any) -> Any:
    reply = await client.call(method, path, **kw)
    return reply.get("content") if isinstance(reply, dict) else reply


async def project_id(client: Client, ref: str) -> int:
    """A project by id or by name."""
    if ref.isdigit():
        return int(ref)
    projects = (await content(client, "GET", "/project/list"))["projects"]
    for p in projects:
        if p["name"] == ref:
            return int(p["id"])
    raise CliError(f"not found: no project named {ref!r}")


@main.group("queue")
def queue() -> None:
    """The work queue: projects, workers, access requests."""


@queue.group("project")
def project() -> None:
    """Work queue projects."""


@project.command("create")
@click.argument("name")
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False),
              help="Project settings (YAML/JSON: priority, public, assign_rate, ...).")  # fmt: skip
@click.option("--priority", type=int)
@click.option("--public", is_flag=True, default=None, help="Any worker may take its tasks.")
@click.pass_obj
def project_create(obj: dict[str, Any], name: str, file: str | None, priority: int | None,
                   public: bool | None) -> None:  # fmt: skip
    """Create a project; prints its id."""
    from pathlib import Path

    body: dict[str, Any] = dict(load_one(Path(file))) if file else {}
    body["name"] = name
    if priority is not None:
        body["priority"] = priority
    if public is not None:
        body["public"] = public
    created = run(obj, lambda c: content(c, "POST", "/project/create", json=body))
    click.echo(f"created project {name}: id {created['id']}")


@project.command("list")
@output_option
@click.pass_obj
def project_list(obj: dict[str, Any], output: str) -> None:
    """Every project."""
    found = run(obj, lambda c: content(c, "GET", "/project/list"))["projects"]
    emit(
        found,
        output,
        ["ID", "NAME", "PRIORITY", "PUBLIC", "PAUSED"],
        lambda p: [p["id"], p["name"], p.get("priority"), p.get("public"), p.get("paused")],
    )


@project.command("show")
@click.argument("project_ref", metavar="PROJECT")
@output_option
@click.pass_obj
def project_show(obj: dict[str, Any], project_ref: str, output: str) -> None:
    """A project and its task counts now (PROJECT: id or name)."""

    async def work(client: Client) -> dict[str, Any]:
        pid = await project_id(client, project_ref)
        info = await content(client, "GET", f"/project/get/{pid}", what=f"no project {pid}")
        snaps = await content(client, "GET", f"/project/monitoring/{pid}", params={"count": "1"})
        info = dict(info.get("project", info))
        counts = (snaps.get("snapshots") or [{}])[0]
        info["counts"] = {k: v for k, v in counts.items() if k not in ("timestamp", "project")}
        return info

    info = run(obj, work)
    if output != "table":
        emit(info, output)
        return
    emit({k: v for k, v in info.items() if k != "counts"}, "table")
    emit(info["counts"], "table", title="tasks")


def project_action(path: str, done: str, body: dict[str, Any] | None = None):
    def command(obj: dict[str, Any], project_ref: str) -> None:
        async def work(client: Client) -> Any:
            pid = await project_id(client, project_ref)
            return await content(client, "POST", path.format(pid=pid), json=body,
                                 what=f"no project {pid}")  # fmt: skip

        result = run(obj, work) or {}
        extra = f" ({result['affected_tasks']} tasks)" if "affected_tasks" in result else ""
        click.echo(f"{done} {project_ref}{extra}")

    return command


@project.command("pause")
@click.argument("project_ref", metavar="PROJECT")
@click.pass_obj
def project_pause(obj: dict[str, Any], project_ref: str) -> None:
    """Stop handing out the project's tasks."""
    project_action("/project/update/{pid}", "paused", {"paused": True})(obj, project_ref)


@project.command("resume")
@click.argument("project_ref", metavar="PROJECT")
@click.pass_obj
def project_resume(obj: dict[str, Any], project_ref: str) -> None:
    """Hand out the project's tasks again."""
    project_action("/project/update/{pid}", "resumed", {"paused": False})(obj, project_ref)


@project.command("reset-failed")
@click.argument("project_ref", metavar="PROJECT")
@click.pass_obj
def project_reset_failed(obj: dict[str, Any], project_ref: str) -> None:
    """Make the project's failed tasks new again."""
    project_action("/project/reset_failed_tasks/{pid}", "reset failed tasks of")(obj, project_ref)


@queue.group("worker")
def worker() -> None:
    """Work queue workers."""


@worker.command("create")
@click.option("--alias", default="", help="A name for people.")
@output_option
@click.pass_obj
def worker_create(obj: dict[str, Any], alias: str, output: str) -> None:
    """Register a worker; its secret is shown this once."""
    made = run(obj, lambda c: content(c, "POST", "/worker/create", json={"alias": alias}))
    made = made["worker"]
    if output != "table":
        emit(made, output)
        return
    click.echo(f"WORKER_ID={made['id']}\nWORKER_SECRET={made['secret']}")


@worker.command("list")
@output_option
@click.pass_obj
def worker_list(obj: dict[str, Any], output: str) -> None:
    """Workers with the number of tasks each closed."""
    found = run(obj, lambda c: content(c, "GET", "/worker/stats"))["stats"]
    emit(found, output, ["ID", "ALIAS", "CLOSED", "PAUSED"],
         lambda w: [w.get("worker", w.get("id")), w.get("alias"), w.get("closed_task_count",
                    w.get("closed")), w.get("paused")])  # fmt: skip


def set_worker(obj: dict[str, Any], worker_id: int, paused: bool) -> None:
    body = {"worker": worker_id, "paused": paused}
    run(obj, lambda c: content(c, "POST", "/worker/set_paused", json=body,
                               what=f"no worker {worker_id}"))  # fmt: skip
    click.echo(f"{'paused' if paused else 'resumed'} worker {worker_id}")


@worker.command("pause")
@click.argument("worker_id", type=int)
@click.pass_obj
def worker_pause(obj: dict[str, Any], worker_id: int) -> None:
    """Give a worker no more tasks."""
    set_worker(obj, worker_id, True)


@worker.command("resume")
@click.argument("worker_id", type=int)
@click.pass_obj
def worker_resume(obj: dict[str, Any], worker_id: int) -> None:
    """Let a paused worker work again."""
    set_worker(obj, worker_id, False)


@queue.group("access")
def access() -> None:
    """Workers' access requests to projects."""


@access.command("list")
@click.argument("project_ref", metavar="PROJECT")
@output_option
@click.pass_obj
def access_list(obj: dict[str, Any], project_ref: str, output: str) -> None:
    """Requests (pending first) and grants on a project."""

    async def work(client: Client) -> list[dict[str, Any]]:
        pid = await project_id(client, project_ref)
        return (await content(client, "GET", f"/project/access_list/{pid}",
                              what=f"no project {pid}"))["accesses"]  # fmt: skip

    found = run(obj, work)
    emit(
        found,
        output,
        ["WORKER", "ALIAS", "ASSIGN", "SUBMIT", "PENDING", "SINCE"],
        lambda a: [
            a.get("worker", a.get("id")),
            a.get("alias"),
            a.get("assign"),
            a.get("submit"),
            a.get("request"),
            when((a.get("created_at") or 0) * 1000),
        ],
    )


def decide(obj: dict[str, Any], project_ref: str, worker_id: int, verb: str) -> None:
    async def work(client: Client) -> None:
        pid = await project_id(client, project_ref)
        await content(client, "POST", f"/project/{verb}_request/{pid}/{worker_id}",
                      what=f"no request of worker {worker_id} on project {pid}")  # fmt: skip

    run(obj, work)
    click.echo(f"{verb}ed worker {worker_id} on {project_ref}")


@access.command("accept")
@click.argument("project_ref", metavar="PROJECT")
@click.argument("worker_id", type=int)
@click.pass_obj
def access_accept(obj: dict[str, Any], project_ref: str, worker_id: int) -> None:
    """Grant a worker's pending request."""
    decide(obj, project_ref, worker_id, "accept")


@access.command("reject")
@click.argument("project_ref", metavar="PROJECT")
@click.argument("worker_id", type=int)
@click.pass_obj
def access_reject(obj: dict[str, Any], project_ref: str, worker_id: int) -> None:
    """Refuse a pending request, or revoke a grant."""
    decide(obj, project_ref, worker_id, "reject")
