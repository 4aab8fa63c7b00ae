"""Every client command against a running server: table and JSON output, one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from tests.cli.conftest import Cli
from tests.server import Server


def put(server: Server, name: str, *tasks: dict, **extra) -> None:
    doc = {"process_definition_name": name, "task_definitions": list(tasks), **extra}
    status, body = asyncio.run(server.request("PUT", f"/api/process_definitions/{name}", json=doc))
    assert status == 200, body


def sh(name: str, script: str, **extra) -> dict:
    return {"task_definition_name": name,
            "executable": {"shell_script_command": {"script": script}}, **extra}  # fmt: skip


def test_definitions_list_show_next_pause_resume_delete(cli: Cli, server: Server):
    cron = {"cron_schedule": {"minutes": "30", "hours": "2", "day_of_month": "*", "month": "*",
                              "day_of_week": "1-5", "timezone": "Europe/Berlin"}}  # fmt: skip
    put(server, "nightly", sh("a", "true"), schedule=cron)
    put(server, "adhoc", sh("a", "true"))
    table = cli.ok("defs")
    assert "At 02:30, Mon-Fri (Europe/Berlin)" in table
    assert "manual only" in table
    listed = json.loads(cli.ok("defs", "-o", "json"))
    assert {d["process_definition_name"] for d in listed} == {"nightly", "adhoc"}
    nightly = next(d for d in listed if d["process_definition_name"] == "nightly")
    assert nightly["next_fire"].endswith("UTC") and nightly["paused"] is False

    shown = json.loads(cli.ok("defs", "show", "nightly", "-o", "json"))
    assert shown["schedule"]["cron_schedule"]["hours"] == "2"
    assert "schedule: 30 2 * * 1-5" in cli.ok("defs", "show", "nightly")

    upcoming = json.loads(cli.ok("defs", "next", "nightly", "--count", "3", "-o", "json"))
    assert len(upcoming) == 3
    assert all(u["local"].endswith("02:30:00") and u["timezone"] == "Europe/Berlin"
               for u in upcoming)  # fmt: skip
    assert "no cron schedule" in cli.fails("defs", "next", "adhoc")

    assert cli.ok("pause", "nightly").strip() == "paused nightly"
    assert json.loads(cli.ok("defs", "show", "nightly", "-o", "json"))["paused"] is True
    cli.ok("resume", "nightly")
    assert json.loads(cli.ok("defs", "show", "nightly", "-o", "json"))["paused"] is False
    cli.ok("delete", "adhoc")
    assert "not found" in cli.fails("defs", "show", "adhoc")
    for command in (["pause", "nope"], ["resume", "nope"], ["delete", "nope"],
                    ["trigger", "nope"]):  # fmt: skip
        assert "not found" in cli.fails(*command)


def test_defs_next_flags_dst_gaps_and_repeats(cli: Cli, server: Server):
    # 02:30 every day in Berlin: skipped on the spring-forward day, repeated in autumn.
    cron = {"cron_schedule": {"minutes": "30", "hours": "2", "day_of_month": "*", "month": "*",
                              "day_of_week": "*", "timezone": "Europe/Berlin"}}  # fmt: skip
    put(server, "dst", sh("a", "true"), schedule=cron)
    rows = json.loads(cli.ok("defs", "next", "dst", "--count", "370", "-o", "json"))
    gaps = [r for r in rows if r["utc"] is None]
    repeats = [r for r in rows if "repeated" in r["note"]]
    assert len(gaps) == 1 and "DST gap" in gaps[0]["note"]
    assert gaps[0]["local"][5:7] == "03"  # the last Sunday of March
    assert len(repeats) == 1 and repeats[0]["local"][5:7] == "10"


def test_trigger_wait_exit_codes_run_show_logs(cli: Cli, server: Server):
    put(server, "good", sh("first", "echo one"), sh("second", "echo two",
        dependencies=[{"task_definition_name": "first", "success_required": True}]))  # fmt: skip
    put(server, "bad", sh("boom", "echo oops >&2; exit 3", max_attempts=2))
    done = json.loads(cli.ok("trigger", "good", "--wait", "-o", "json"))
    assert done["status"] == "succeeded"
    failed = cli("trigger", "bad", "--wait")
    assert failed.code != 0 and "failed" in failed.err
    tree = cli.ok("run", "show", done["process_id"])
    assert "first" in tree and "second" in tree and "succeeded" in tree
    bad_run = json.loads(cli.ok("runs", "--name", "bad", "-o", "json"))[0]
    tree = cli.ok("run", "show", bad_run["process_id"])
    assert "attempts 2" in tree and "exit 3" in tree
    task_id = next(t["task_id"] for t in done["task"] if t["task_definition_name"] == "second")
    assert cli.ok("logs", task_id) == "two\n"
    assert "not found" in cli.fails("logs", "00000000-0000-0000-0000-000000000000")
    assert "not found" in cli.fails("run", "show", "00000000-0000-0000-0000-000000000000")
    # Only one task of a definition.
    only = json.loads(cli.ok("trigger", "good", "--task", "second", "--wait", "-o", "json"))
    assert {t["task_definition_name"] for t in only["task"]} == {"second"}


def test_trigger_wait_follows_a_trigger_that_waits_its_turn(cli: Cli, server: Server, tmp_path):
    """overlap_action wait: the new process starts when the running one ends."""
    flag = tmp_path / "release"
    put(server, "one-at-a-time", sh("a", f"while [ ! -e {flag} ]; do sleep 0.1; done"),
        overlap_action="wait")  # fmt: skip
    first = json.loads(cli.ok("trigger", "one-at-a-time", "-o", "json"))["process_id"]
    assert first
    with subprocess.Popen([sys.executable, "-m", "taskd", "trigger", "one-at-a-time", "--wait",
                           "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=cli.env) as waiting:  # fmt: skip
        try:
            assert "waiting for the running process" in waiting.stderr.readline()
            flag.touch()
            out, _ = waiting.communicate(timeout=60)
        finally:
            waiting.kill()
    assert waiting.returncode == 0
    second = json.loads(out)
    assert second["status"] == "succeeded" and second["process_id"] != first


def test_runs_filters_and_tables(cli: Cli, server: Server):
    put(server, "ok", sh("a", "true"))
    put(server, "ko", sh("a", "false"))
    cli.ok("trigger", "ok", "--wait")
    cli("trigger", "ko", "--wait")
    failed = json.loads(cli.ok("runs", "--state", "failed", "-o", "json"))
    assert [r["process_definition_name"] for r in failed] == ["ko"]
    assert len(json.loads(cli.ok("runs", "--since", "1h", "-o", "json"))) == 2
    assert json.loads(cli.ok("runs", "--since", "2999-01-01T00:00:00Z", "-o", "json")) == []
    table = cli.ok("runs", "--name", "ok")
    assert "succeeded" in table and "ko" not in table
    assert "--since" in cli.fails("runs", "--since", "yesterday-ish")
    assert "name: ok" in cli.ok("runs", "--name", "ok", "-o", "yaml").replace(
        "process_definition_name", "name"
    )


def test_logs_follow_kill_and_retry(cli: Cli, server: Server, tmp_path):
    flag = tmp_path / "go"
    script = f"echo start; while [ ! -e {flag} ]; do sleep 0.1; done; echo end"
    put(server, "slow", sh("wait", script))
    put(server, "sleepy", sh("nap", "sleep 60"))
    triggered = cli.ok("trigger", "slow", "-o", "json")
    process_id = json.loads(triggered)["process_id"]
    task_id = json.loads(cli.ok("run", "show", process_id, "-o", "json"))["task"][0]["task_id"]
    with subprocess.Popen([sys.executable, "-m", "taskd", "logs", "-f", task_id],
                          stdout=subprocess.PIPE, text=True, env=cli.env) as follow:  # fmt: skip
        try:
            assert follow.stdout.readline() == "start\n"  # printed while the task still runs
            assert follow.poll() is None
            flag.touch()
            assert follow.stdout.read() == "end\n"
            assert follow.wait(30) == 0
        finally:
            follow.kill()

    sleepy = json.loads(cli.ok("trigger", "sleepy", "-o", "json"))["process_id"]
    assert cli.ok("kill", sleepy).strip() == f"killed {sleepy}"
    deadline = time.monotonic() + 30
    while json.loads(cli.ok("run", "show", sleepy, "-o", "json"))["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cli.ok("retry", sleepy)
    assert json.loads(cli.ok("run", "show", sleepy, "-o", "json"))["status"] == "running"
    cli.ok("kill", sleepy)
    assert "cannot retry a process that succeeded" in cli.fails(
        "retry", json.loads(cli.ok("runs", "--name", "slow", "-o", "json"))[0]["process_id"]
    )


def test_connection_errors_are_one_line(cli: Cli, server: Server, tmp_path):
    gone = "http://127.0.0.1:9"  # nothing listens on the discard port
    assert cli.fails("defs", env={"TASKD_URL": gone}).startswith(
        f"taskd: no taskd server at {gone}"
    )
    assert "bad token" in cli.fails("defs", env={"TASKD_TOKEN": "wrong"})
    assert "no context named 'nope'" in cli.fails("--context", "nope", "defs")
    assert "not a server URL: nonsense" in cli.fails("defs", env={"TASKD_URL": "nonsense"})
    assert "'xml' is not one of" in cli.fails("defs", "-o", "xml")


def test_contexts_are_private_and_select_the_server(tmp_path, server: Server):
    cli = Cli(tmp_path, None)  # no TASKD_URL / TASKD_TOKEN: only what the context says
    cli.ok("context", "add", "bad", "--url", "http://127.0.0.1:9", "--token", "x")
    cli.ok("context", "add", "here", "--url", server.url, "--token", "server-test-token")
    config = tmp_path / "config" / "contexts.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "no taskd server at http://127.0.0.1:9" in cli.fails("defs")  # the first is current
    cli.ok("context", "use", "here")
    assert "NAME" in cli.ok("defs")
    listed = json.loads(cli.ok("context", "list", "-o", "json"))
    assert [c["name"] for c in listed if c["current"]] == ["here"]
    assert "server-test-token" not in cli.ok("context", "list")
    assert "bad token" in cli.fails("--token", "wrong", "defs")
    assert "no context named" in cli.fails("context", "use", "nope")


def test_a_local_server_is_found_with_its_token_file(tmp_path):
    """`taskd serve` in one terminal, `taskd defs` in another: no flags, no variables."""
    from tests.server import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
    env["TASKD_CONFIG_DIR"] = str(tmp_path / "config")
    serve = subprocess.Popen(
        [sys.executable, "-m", "taskd", "serve", "--db", str(tmp_path / "taskd.db"), "--port",
         str(port), "--docker-network", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        cli = Cli(tmp_path / "elsewhere", None)
        (tmp_path / "elsewhere").mkdir()
        cli.env["TASKD_CONFIG_DIR"] = env["TASKD_CONFIG_DIR"]
        deadline = time.monotonic() + 20
        while cli("version").code != 0:
            assert time.monotonic() < deadline, cli("version").err
            time.sleep(0.2)
        assert "server 0.1.0" in cli.ok("version")
    finally:
        serve.terminate()
        serve.wait(15)
    assert f"no taskd server at http://127.0.0.1:{port}" in cli.fails("defs")


def test_tokens_create_list_revoke(cli: Cli, server: Server):
    viewer = cli.ok("token", "create", "--name", "dashboard").strip()
    listed = json.loads(cli.ok("token", "list", "-o", "json"))
    assert [t["name"] for t in listed] == ["dashboard"] and listed[0]["role"] == "viewer"
    assert viewer not in cli.ok("token", "list", "-o", "json")
    assert "NAME" in cli.ok("defs", env={"TASKD_TOKEN": viewer})  # a viewer may read
    assert "not allowed" in cli.fails("token", "list", env={"TASKD_TOKEN": viewer})
    cli.ok("token", "revoke", listed[0]["id"])
    assert "bad token" in cli.fails("defs", env={"TASKD_TOKEN": viewer})
    assert "not found" in cli.fails("token", "revoke", listed[0]["id"])


def test_backup_from_the_server_and_version(cli: Cli, server: Server, tmp_path):
    put(server, "kept", sh("a", "true"))
    dest = tmp_path / "copy.db"
    assert "backed up" in cli.ok("backup", str(dest))
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600  # it holds what the database holds
    with sqlite3.connect(dest) as db:
        assert db.execute("SELECT name FROM definitions").fetchall() == [("kept",)]
    assert "exists" in cli.fails("backup", str(dest))
    info = json.loads(cli.ok("version", "-o", "json"))
    assert info["client"] == info["server"]


def test_shell_completion_script():
    out = subprocess.run([sys.executable, "-m", "taskd", "completion", "bash"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "_TASKD_COMPLETE" in out


def test_tables_print_brackets_in_data_as_they_are(cli: Cli, server: Server):
    """Cells are data, not markup: a name like ``p[/x]`` neither breaks nor vanishes."""
    cli.ok("queue", "project", "create", "p[/x]")
    assert "p[/x]" in cli.ok("queue", "project", "list")
    assert "p[/x]" in cli.ok("queue", "project", "show", "p[/x]")


def test_colour_and_the_live_view_only_on_a_terminal(cli: Cli, server: Server):
    put(server, "two-steps", sh("first", "sleep 1.5"), sh("second", "true",
        dependencies=[{"task_definition_name": "first", "success_required": True}]))  # fmt: skip
    piped = cli("trigger", "two-steps", "--wait")
    assert piped.code == 0 and "\x1b[" not in piped.out + piped.err
    assert "succeeded" in piped.out
    if shutil.which("script") is None:  # util-linux's pty wrapper
        pytest.skip("no `script` command to give the client a terminal")
    tty = subprocess.run(["script", "-qec", f"{sys.executable} -m taskd trigger two-steps --wait",
                          "/dev/null"], capture_output=True, text=True, env=cli.env,
                         timeout=60)  # fmt: skip
    assert tty.returncode == 0, tty.stdout
    assert "\x1b[" in tty.stdout  # coloured
    assert "waiting" in tty.stdout  # the live table showed the task that had not started
