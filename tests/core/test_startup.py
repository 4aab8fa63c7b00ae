"""``taskd serve`` as a process: refused starts, one server per database, a database file
deleted or replaced under a running server, a runner that fails to import."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes.sundial import definition, shell, wait_for
from tests.server import Server, free_port


def serve(db: Path, *args: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
    """A ``taskd serve`` expected to refuse to start (with no admin token given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
    return subprocess.run(
        [sys.executable, "-m", "taskd", "serve", "--db", str(db), "--port",
         str(port or free_port()), *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=db.parent if db.parent.is_dir()
        else None,
    )  # fmt: skip


def assert_refused(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""  # no admin token printed, nothing else either
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("taskd: ") and fragment in lines[0], lines[0]


def test_a_missing_directory_is_one_line(tmp_path):
    result = serve(tmp_path / "nowhere" / "taskd.db")
    assert_refused(result, "does not exist")
    assert not (tmp_path / "nowhere").exists()


def test_a_read_only_directory_is_one_line(tmp_path):
    if os.geteuid() == 0:
        where = Path("/proc/sys")  # read-only even for root
        if os.access(where, os.W_OK):
            pytest.skip("no read-only directory available to root here")
    else:
        where = tmp_path / "ro"
        where.mkdir()
        where.chmod(0o555)
    result = serve(where / "taskd.db")
    assert_refused(result, "is not writable")


def test_a_file_that_is_not_sqlite_is_one_line_and_left_alone(tmp_path):
    db = tmp_path / "taskd.db"
    db.write_text("these are my notes, not a database\n")
    result = serve(db)
    assert_refused(result, "is not a SQLite database")
    assert db.read_text() == "these are my notes, not a database\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taskd.db"]


def test_a_damaged_sqlite_file_is_one_line_and_no_token(tmp_path):
    db = tmp_path / "taskd.db"
    header = bytearray(b"SQLite format 3\x00".ljust(100, b"\x00"))
    header[60:64] = (1).to_bytes(4, "big")  # a schema version taskd knows
    db.write_bytes(bytes(header) + b"\xff" * 4000)
    result = serve(db)
    assert_refused(result, "cannot open database")
    assert not (tmp_path / "taskd.db.token").exists()


def test_a_database_newer_than_the_code_is_one_line(tmp_path):
    db = tmp_path / "taskd.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 9999")
    conn.close()
    result = serve(db)
    assert_refused(result, "newer than this taskd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taskd.db"]


def test_a_port_in_use_is_one_line_and_creates_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = serve(tmp_path / "taskd.db", port=taken.getsockname()[1])
    assert_refused(result, "cannot listen on 127.0.0.1")
    assert list(tmp_path.iterdir()) == []  # no database, no token file, no lock file


async def test_a_second_server_on_one_database_is_refused_naming_the_first(tmp_path):
    first = Server(tmp_path)
    await first.start()
    try:
        status, _ = await first.request(
            "PUT", "/api/process_definitions/long", json=definition("long", shell("a", "sleep 60"))
        )
        assert status == 200
        status, _ = await first.request("POST", "/api/process_definitions/long/trigger")
        assert status == 204

        async def running():
            _, procs = await first.request("GET", "/api/processes/")
            return [p for p in procs if p["status"] == "running"]

        await wait_for(running, within=20)
        result = serve(first.db, "--admin-token", "other")
        assert_refused(result, f"is in use by another taskd serve (pid {first.proc.pid})")
        # The first server's job was not taken for lost: it still runs, on its first attempt.
        _, procs = await first.request("GET", "/api/processes/")
        [proc] = procs
        assert proc["status"] == "running"
        attempts = sqlite3.connect(first.db).execute("SELECT state FROM attempts").fetchall()
        assert attempts == [("running",)]
    finally:
        first.stop()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_writes_stop_when_the_database_file_is_deleted_or_replaced(tmp_path, how):
    server = Server(tmp_path)
    await server.start()
    try:
        status, _ = await server.request(
            "PUT", "/api/process_definitions/a", json=definition("a", shell("a", "true"))
        )
        assert status == 200
        if how == "deleted":
            server.db.unlink()
        else:
            other = tmp_path / "other.db"
            sqlite3.connect(other).close()
            os.replace(other, server.db)
        status, body = await server.request(
            "PUT", "/api/process_definitions/b", json=definition("b", shell("a", "true"))
        )
        assert status == 503
        assert "deleted or replaced" in body["message"]  # the Sundial envelope
        status, body = await server.request("GET", "/ready")
        assert status == 503
        assert "store" in body["error"]  # Daggy's envelope names the part
    finally:
        server.stop()
    assert "database file gone" in server.log()


async def test_a_runner_that_fails_to_import_takes_no_other_runner_with_it(tmp_path):
    broken = tmp_path / "site"
    (broken / "aiodocker").mkdir(parents=True)
    (broken / "aiodocker" / "__init__.py").write_text("raise ImportError('aiodocker is broken')\n")
    path = os.pathsep.join([str(broken), os.environ.get("PYTHONPATH", "")])
    server = Server(tmp_path, env={"PYTHONPATH": path})
    await server.start()
    try:
        status, _ = await server.request(
            "PUT", "/api/process_definitions/p", json=definition("p", shell("a", "echo hi"))
        )
        assert status == 200
        status, _ = await server.request("POST", "/api/process_definitions/p/trigger")
        assert status == 204

        async def succeeded():
            _, procs = await server.request("GET", "/api/processes/")
            return [p for p in procs if p["status"] == "succeeded"]

        await wait_for(succeeded, within=20)
        # A job for the broken runner is refused, saying why.
        docker = {"task_definition_name": "d", "dependencies": [], "max_attempts": 1,
                  "executable": {"docker_image_command": {"image": "taskd-test"}}}  # fmt: skip
        status, body = await server.request(
            "PUT", "/api/process_definitions/d", json=definition("d", docker)
        )
        if status == 200:  # refused when it runs rather than when it is stored
            status, body = await server.request("POST", "/api/process_definitions/d/trigger")
        assert status == 400
        assert any("docker runner is unavailable" in e for e in body["errors"]), body
    finally:
        server.stop()
    log = server.log()
    assert "runner unavailable" in log and "aiodocker is broken" in log
