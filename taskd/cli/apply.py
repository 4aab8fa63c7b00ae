"""``taskd apply`` (definitions from YAML/JSON files) and ``taskd export`` (back to YAML).

Apply shows a diff against the server and asks before it changes anything. Definitions it
writes carry ``managed_by_file``; the server then refuses API edits of them that do not come
from that file unless forced, and ``--prune`` removes those whose file no longer holds them.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from taskd.cli.client import Client, CliError, run
from taskd.cli.defform import MANAGED, comparable, fail, to_api, to_file_form
from taskd.cli.files import load_documents
from taskd.cli.output import console, dump_yaml
from taskd.cli.root import main

SUFFIXES = (".yaml", ".yml", ".json")


def files_of(paths: tuple[Path, ...], recursive: bool) -> list[Path]:
    """The files to read: each file given, and the definition files of each directory."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            walk = path.rglob("*") if recursive else path.glob("*")
            found += sorted(p for p in walk if p.suffix in SUFFIXES and p.is_file())
        elif path.exists():
            found.append(path)
        else:
            raise CliError(f"{path}: no such file or directory")
    return found


def mark_of(path: Path) -> str:
    """How a file is named in ``managed_by_file``: relative to here when below it."""
    rel = os.path.relpath(path.resolve(), Path.cwd())
    return str(path.resolve()) if rel.startswith("..") else rel


def covered(mark: str, paths: tuple[Path, ...], recursive: bool) -> bool:
    """Whether the file named by ``mark`` is one this apply reads (or would, had it stayed)."""
    for path in paths:
        if not path.is_dir():
            if mark == mark_of(path):
                return True
            continue
        root = mark_of(path)
        parent = os.path.dirname(mark) or "."
        inside = root == "." or mark.startswith(root.rstrip("/") + "/")
        if Path(mark).suffix in SUFFIXES and (parent == root or (recursive and inside)):
            return True
    return False


@dataclass
class Planned:
    name: str
    action: str  # create | update | delete
    file: str | None
    body: dict[str, Any] | None = None
    diff: list[str] = field(default_factory=list)


@dataclass
class Source:
    file: Path
    node: Any
    body: dict[str, Any]


def read_sources(paths: tuple[Path, ...], recursive: bool) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for file in files_of(paths, recursive):
        for node in load_documents(file):
            body = to_api(node, file)
            name = body["process_definition_name"]
            if name in sources:
                first = sources[name].file
                raise fail(file, node, None, f"definition {name!r} is also defined in {first}")
            sources[name] = Source(file, node, body)
    return sources


TASK_AT = re.compile(r"task_definitions\[(\d+)\]")


def server_problem(src: Source, message: str) -> CliError:
    """A refusal of the server, placed at the task or schedule it names (else the document)."""
    node = src.node
    tasks_key = "tasks" if "tasks" in node else "task_definitions"
    found = TASK_AT.search(message)
    tasks = node.get(tasks_key)
    if found and isinstance(tasks, list) and int(found.group(1)) < len(tasks):
        return fail(src.file, tasks, int(found.group(1)), message)
    if "schedule" in message and "schedule" in node:
        return fail(src.file, node, "schedule", message, value=True)
    return fail(src.file, node, None, message)


def yaml_lines(form: dict[str, Any]) -> list[str]:
    return dump_yaml(form).splitlines(keepends=True)


def plan(sources: dict[str, Source], server: list[dict[str, Any]],
         prune: Callable[[str], bool] | None) -> list[Planned]:  # fmt: skip
    existing = {d["process_definition_name"]: d for d in server}
    out: list[Planned] = []
    for name, src in sources.items():
        mark = mark_of(src.file)
        body = {**src.body, MANAGED: mark}
        current = existing.get(name)
        if current is None:
            out.append(Planned(name, "create", mark, body,
                               yaml_lines(comparable(src.body))))  # fmt: skip
            continue
        if "paused" not in src.body:
            body["paused"] = current["paused"]  # the file does not say: keep the server's
        new = comparable(src.body)
        old = comparable({k: v for k, v in current.items() if k != "paused"} if "paused"
                         not in src.body else current)  # fmt: skip
        if new != old:
            diff = list(
                difflib.unified_diff(
                    yaml_lines(old), yaml_lines(new), f"{name} (server)", f"{name} ({mark})"
                )
            )
            if current.get(MANAGED) not in (None, mark):
                diff.insert(0, f"# now managed by {mark}, was {current[MANAGED]}\n")
            out.append(Planned(name, "update", mark, body, diff))
    if prune is not None:  # covered(mark) for the paths of this apply
        for name, current in existing.items():
            mark = current.get(MANAGED)
            if mark and name not in sources and prune(mark):
                out.append(Planned(name, "delete", mark))
    return out


def show(planned: list[Planned], unchanged: int) -> None:
    out = console()
    for p in planned:
        if p.action == "create":
            out.print(f"[green]+ create {p.name}[/green] (from {p.file})", highlight=False)
            for line in p.diff:
                out.print(f"[green]+ {escape(line.rstrip())}[/green]", highlight=False)
        elif p.action == "update":
            out.print(f"[yellow]~ update {p.name}[/yellow] (from {p.file})", highlight=False)
            for line in p.diff:
                style = ("green" if line.startswith("+") else "red" if line.startswith("-")
                         else "dim")  # fmt: skip
                out.print(f"[{style}]{escape(line.rstrip())}[/{style}]", highlight=False)
        else:
            out.print(f"[red]- delete {p.name}[/red] (was in {p.file})", highlight=False)
    counts = {a: sum(p.action == a for p in planned) for a in ("create", "update", "delete")}
    click.echo(f"{counts['create']} to create, {counts['update']} to update, "
               f"{counts['delete']} to delete, {unchanged} unchanged")  # fmt: skip


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


@main.command("apply")
@click.option(
    "-f",
    "--file",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A file or directory (repeatable).",
)
@click.option("-R", "--recursive", is_flag=True, help="Read directories' subdirectories too.")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking.")
@click.option("--dry-run", is_flag=True, help="Show what would change, change nothing.")
@click.option(
    "--prune",
    is_flag=True,
    help="Delete definitions from these files/dirs that they no longer hold.",
)
@click.pass_obj
def apply(obj: dict[str, Any], paths: tuple[Path, ...], recursive: bool, yes: bool,
          dry_run: bool, prune: bool) -> None:  # fmt: skip
    """Create or update definitions from YAML/JSON files (one definition per document).

    A directory means its *.yaml, *.yml and *.json files (with -R, those below it too).
    """
    sources = read_sources(paths, recursive)
    roots = (lambda mark: covered(mark, paths, recursive)) if prune else None

    async def work(client: Client) -> None:
        server = await client.call("GET", "/api/process_definitions")
        planned = plan(sources, server, roots)
        show(planned, len(sources) - sum(p.action != "delete" for p in planned))
        if not planned or dry_run:
            return
        if not yes:
            if not sys.stdin.isatty():
                raise CliError("not applied: confirm on a terminal, or pass --yes")
            if not click.confirm("Apply these changes?", default=False):
                raise CliError("not applied")
        for p in planned:
            path = f"/api/process_definitions/{quote(p.name, safe='')}"
            if p.action == "delete":
                await client.call("DELETE", path, params={"force": "true"})
                continue
            try:
                await client.call("PUT", path, json=p.body, params={"force": "true"})
            except CliError as exc:
                raise server_problem(sources[p.name], exc.format_message()) from None
        click.echo("applied")

    run(obj, work)


@main.command("export")
@click.argument("names", nargs=-1)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write one NAME.yaml per definition here instead of printing.",
)
@click.pass_obj
def export(obj: dict[str, Any], names: tuple[str, ...], directory: Path | None) -> None:
    """The server's definitions as YAML that `taskd apply` reads back unchanged."""

    async def work(client: Client) -> list[dict[str, Any]]:
        found = await client.call("GET", "/api/process_definitions")
        if names:
            known = {d["process_definition_name"] for d in found}
            missing = [n for n in names if n not in known]
            if missing:
                raise CliError(f"not found: no definition named {missing[0]!r}")
            found = [d for d in found if d["process_definition_name"] in names]
        return found

    found = run(obj, work)
    forms = [to_file_form(d) for d in found]
    if directory is None:
        click.echo("---\n".join(dump_yaml(f) for f in forms), nl=False)
        return
    directory.mkdir(parents=True, exist_ok=True)
    for form in forms:
        (directory / f"{form['name']}.yaml").write_text(dump_yaml(form))
    click.echo(f"wrote {len(forms)} definitions to {directory}")
