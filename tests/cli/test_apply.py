"""``taskd apply`` and ``taskd export``: definitions kept as files, against a real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.cli.conftest import Cli
from tests.server import Server

NIGHTLY = """\
# comments are fine
name: nightly
description: Runs every night
schedule: "30 2 * * *"
timezone: Europe/Berlin
overlap_action: terminate
tasks:
  - name: extract
    shell: echo extract
    max_attempts: 3
  - name: load
    shell: echo "load $TARGET"
    env: {TARGET: warehouse}
    depends_on: [extract]
    max_runtime_seconds: 60
"""
TWO = """\
name: first
tasks:
  - name: a
    image: busybox:1.36
    command: [echo, hi]
    memory: 64
---
name: second
schedule: "*/5 * * * *"
tasks:
  - name: a
    shell: "true"
  - name: b
    shell: "true"
    depends_on:
      - {name: a, success_required: false}
"""


def definitions(server: Server) -> dict[str, dict]:
    status, body = asyncio.run(server.request("GET", "/api/process_definitions"))
    assert status == 200
    return {d["process_definition_name"]: d for d in body}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_apply_creates_updates_with_a_diff_and_prunes(cli: Cli, server: Server, tmp_path):
    defs_dir = tmp_path / "defs"
    write(defs_dir / "nightly.yaml", NIGHTLY)
    write(defs_dir / "more" / "two.yml", TWO)
    out = cli.ok("apply", "-f", "defs", "-R", "--yes")
    assert "+ create nightly" in out and "+ create first" in out and "+ create second" in out
    assert "3 to create, 0 to update, 0 to delete, 0 unchanged" in out
    stored = definitions(server)
    nightly = stored["nightly"]
    assert nightly["managed_by_file"] == "defs/nightly.yaml"
    assert stored["first"]["managed_by_file"] == "defs/more/two.yml"
    assert nightly["schedule"]["cron_schedule"] == {
        "seconds": "0", "minutes": "30", "hours": "2", "day_of_month": "*", "month": "*",
        "day_of_week": "*", "timezone": "Europe/Berlin"}  # fmt: skip
    load = nightly["task_definitions"][1]
    assert load["dependencies"] == [{"task_definition_name": "extract", "success_required": True}]
    assert load["executable"]["shell_script_command"]["environment_variables"] == [
        {"variable_name": "TARGET", "value": "warehouse"}]  # fmt: skip
    image = stored["first"]["task_definitions"][0]["executable"]["docker_image_command"]
    assert (image["image"], image["tag"], image["memory"]) == ("busybox", "1.36", 64)
    version = nightly["version"]

    # Unchanged files change nothing (no new version).
    assert "0 to create, 0 to update, 0 to delete, 3 unchanged" in cli.ok("apply", "-f", "defs",
                                                                          "-R")  # fmt: skip
    # Without -R a directory is its own files only, and pruning keeps to them too.
    only_top = cli.ok("apply", "-f", "defs", "--prune", "--dry-run")
    assert "1 unchanged" in only_top and "delete" not in only_top.replace("0 to delete", "")
    assert definitions(server)["nightly"]["version"] == version

    # An edit shows a diff; --dry-run and a missing confirmation change nothing.
    write(defs_dir / "nightly.yaml", NIGHTLY.replace("max_attempts: 3", "max_attempts: 5"))
    dry = cli.ok("apply", "-f", "defs", "-R", "--dry-run")
    assert "~ update nightly" in dry
    assert "-  max_attempts: 3" in dry and "+  max_attempts: 5" in dry
    assert "confirm on a terminal, or pass --yes" in cli.fails("apply", "-f", "defs", "-R")
    assert definitions(server)["nightly"]["version"] == version
    cli.ok("apply", "-f", "defs", "-R", "-y")
    assert definitions(server)["nightly"]["task_definitions"][0]["max_attempts"] == 5

    # Pruning removes what the files no longer hold, and only that.
    asyncio.run(server.request("PUT", "/api/process_definitions/by-api", json={
        "process_definition_name": "by-api", "task_definitions": [
            {"task_definition_name": "a",
             "executable": {"shell_script_command": {"script": "true"}}}]}))  # fmt: skip
    (defs_dir / "more" / "two.yml").write_text(TWO.split("---")[0])
    plain = cli.ok("apply", "-f", "defs", "-R", "--yes")
    assert "0 to delete" in plain and "second" in definitions(server)
    pruned = cli.ok("apply", "-f", "defs", "-R", "--prune", "--yes")
    assert "- delete second" in pruned and "1 to delete" in pruned
    assert set(definitions(server)) == {"nightly", "first", "by-api"}


def test_file_managed_definitions_refuse_api_edits_unless_forced(cli: Cli, server: Server,
                                                                 tmp_path):  # fmt: skip
    write(tmp_path / "nightly.yaml", NIGHTLY)
    cli.ok("apply", "-f", "nightly.yaml", "--yes")
    doc = definitions(server)["nightly"]
    changed = {**doc, "process_description": "edited by hand"}
    del changed["managed_by_file"]
    status, body = asyncio.run(server.request("PUT", "/api/process_definitions/nightly",
                                              json=changed))  # fmt: skip
    assert status == 409
    assert "managed by the file nightly.yaml" in body["message"]
    message = cli.fails("delete", "nightly")
    assert "managed by the file nightly.yaml" in message and "force" in message
    cli.ok("pause", "nightly")  # pausing is operating it, not editing it
    status, _ = asyncio.run(
        server.request(
            "PUT", "/api/process_definitions/nightly", params={"force": "true"}, json=changed
        )
    )
    assert status == 200
    assert "managed_by_file" not in definitions(server)["nightly"]
    cli.ok("apply", "-f", "nightly.yaml", "--yes")
    cli.ok("delete", "nightly", "--force")
    assert "nightly" not in definitions(server)


def test_apply_keeps_a_pause_the_file_does_not_mention(cli: Cli, server: Server, tmp_path):
    write(tmp_path / "n.yaml", NIGHTLY)
    cli.ok("apply", "-f", "n.yaml", "--yes")
    cli.ok("pause", "nightly")
    write(tmp_path / "n.yaml", NIGHTLY.replace("Runs every night", "Nightly"))
    cli.ok("apply", "-f", "n.yaml", "--yes")
    assert definitions(server)["nightly"]["paused"] is True
    write(tmp_path / "n.yaml", NIGHTLY + "paused: false\n")
    assert "~ update nightly" in cli.ok("apply", "-f", "n.yaml", "--yes")
    assert definitions(server)["nightly"]["paused"] is False


def test_export_then_apply_is_a_no_op(cli: Cli, server: Server, tmp_path):
    write(tmp_path / "defs" / "a.yaml", NIGHTLY)
    write(tmp_path / "defs" / "b.yaml", TWO)
    write(tmp_path / "defs" / "c.json", json.dumps({
        "process_definition_name": "from-json", "process_description": "full API names",
        "schedule": {"continuous_schedule": {"buffer_seconds": 30}},
        "task_definitions": [{"task_definition_name": "x", "executable": {
            "docker_image_command": {"image": "registry.local:5000/tool", "tag": "2",
                                     "command": ["run"], "cpu": 0.5}},
            "backoff_base_seconds": 2, "backoff_exponent": 2, "max_attempts": 4}]}))  # fmt: skip
    cli.ok("apply", "-f", "defs", "--yes")
    before = {n: d["version"] for n, d in definitions(server).items()}
    exported = cli.ok("export")
    write(tmp_path / "exported.yaml", exported)
    assert "name: nightly" in exported and "schedule: 30 2 * * *" in exported
    out = cli.ok("apply", "-f", "exported.yaml", "--yes")
    assert "0 to create, 0 to update, 0 to delete, 4 unchanged" in out
    assert {n: d["version"] for n, d in definitions(server).items()} == before
    # One file per definition, read back the same way.
    cli.ok("export", "--dir", "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "first.yaml", "from-json.yaml", "nightly.yaml", "second.yaml"]  # fmt: skip
    assert "4 unchanged" in cli.ok("apply", "-f", "out")
    assert "not found" in cli.fails("export", "nope")


def test_errors_name_file_line_and_column(cli: Cli, server: Server, tmp_path):
    write(tmp_path / "syntax.yaml", "name: x\ntasks:\n  - name: a\n    shell: [oops\n")
    assert cli.fails("apply", "-f", "syntax.yaml").startswith("taskd: syntax.yaml:5:1:")
    write(tmp_path / "field.yaml", "name: x\ntasks:\n  - name: a\n    shel: echo\n")
    assert cli.fails("apply", "-f", "field.yaml") == (
        "taskd: field.yaml:4:5: unknown task field 'shel'"
    )
    write(tmp_path / "kind.yaml", "name: x\ntasks:\n  - name: a\n  - name: b\n    shell: ls\n")
    assert cli.fails("apply", "-f", "kind.yaml").startswith(
        "taskd: kind.yaml:3:5: task 'a' needs exactly one of shell, image, executable"
    )
    write(
        tmp_path / "cron.yaml",
        "---\nname: x\nschedule: '* * *'\ntasks:\n  - {name: a, shell: ls}\n",
    )
    assert cli.fails("apply", "-f", "cron.yaml").startswith("taskd: cron.yaml:3:11: a cron line")
    # What only the server can check is reported at the definition's place in the file.
    write(
        tmp_path / "server.yaml",
        "name: x\nschedule: '99 * * * *'\ntasks:\n  - {name: a, shell: ls}\n",
    )
    message = cli.fails("apply", "-f", "server.yaml", "--yes")
    assert message.startswith("taskd: server.yaml:2:11:") and "minutes" in message
    write(
        tmp_path / "task.yaml",
        "name: x\ntasks:\n  - {name: a, shell: ls}\n  - {name: b, shell: ls, max_attempts: 0}\n",
    )
    message = cli.fails("apply", "-f", "task.yaml", "--yes")
    assert message.startswith("taskd: task.yaml:4:5:") and "max_attempts" in message
    write(
        tmp_path / "dup.yaml",
        "name: x\ntasks: [{name: a, shell: ls}]\n---\nname: x\ntasks: [{name: a, shell: ls}]\n",
    )
    assert "also defined in" in cli.fails("apply", "-f", "dup.yaml")
    assert "no such file" in cli.fails("apply", "-f", "missing.yaml")
    assert definitions(server) == {}


def test_the_schema_is_served_without_a_token(server: Server):
    import aiohttp

    async def fetch() -> dict:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/api/schemas/definition.json") as resp:
                assert resp.status == 200
                return await resp.json()

    schema = asyncio.run(fetch())
    assert schema["title"] == "taskd process definition"
    assert "tasks" in schema["properties"]
