"""Bad files and bad input for the DAG, container task and queue commands: one-line errors."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.server import Server


def test_dag_and_task_files_that_are_wrong(cli: Cli, server: Server, tmp_path):
    (tmp_path / "cycle.yaml").write_text(
        "tasks:\n  a: {job: {command: [/bin/true]}, children: [b]}\n"
        "  b: {job: {command: [/bin/true]}, children: [a]}\n")  # fmt: skip
    message = cli.fails("dag", "validate", "cycle.yaml")
    assert message.startswith("taskd: ") and "cycle" in message.lower()
    assert "cycle" in cli.fails("dag", "submit", "cycle.yaml").lower()
    assert "KEY=V1,V2" in cli.fails("dag", "submit", "cycle.yaml", "-p", "novalue")
    (tmp_path / "broken.yaml").write_text("tasks: {a: [\n")
    assert cli.fails("dag", "validate", "broken.yaml").startswith("taskd: broken.yaml:2:1:")
    assert cli.fails("dag", "validate", "missing.yaml") == (
        "taskd: missing.yaml: No such file or directory"
    )

    (tmp_path / "task.yaml").write_text("sourceAppName: APP\ntaskId: t1\n")
    message = cli.fails("task", "create", "task.yaml")
    assert message.startswith("taskd: ") and "executable" in message
    assert "not found" in cli.fails("task", "logs", "APP", "nope")
    assert cli.fails("task", "kill", "APP", "nope") == (
        "taskd: Command validation failure: Either task does not exist or has already finished"
        " for APP/nope (HTTP 400)"
    )


def test_queue_commands_with_unknown_things(cli: Cli, server: Server):
    assert "not found" in cli.fails("queue", "project", "pause", "nope")
    assert "not found" in cli.fails("queue", "access", "list", "99")
    cli.ok("queue", "project", "create", "real")
    assert cli.fails("queue", "access", "accept", "real", "42").startswith("taskd: ")
    assert cli.fails("queue", "worker", "pause", "42").startswith("taskd: ")
    assert json.loads(cli.ok("queue", "worker", "list", "-o", "json")) == []
