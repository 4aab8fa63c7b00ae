"""``taskd restore``: a backup taken under load restores to a database that passes the
integrity check and serves; a running server or a damaged backup is refused."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

from tests.server import Server


def taskd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskd", *args], capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def integrity(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def busy_definition(name: str) -> dict:
    tasks = [{"task_definition_name": f"t{i}",
              "executable": {"shell_script_command": {"script": f"echo line {i}; sleep 0.05"}}}
             for i in range(20)]  # fmt: skip
    return {"process_definition_name": name, "task_definitions": tasks,
            "overlap_action": "allow"}  # fmt: skip


async def test_a_backup_taken_under_load_restores_and_serves(tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    srv = Server(live)
    try:
        await srv.start()
        status, body = await srv.request("PUT", "/api/process_definitions/busy",
                                         json=busy_definition("busy"))  # fmt: skip
        assert status == 200, body

        async def load():
            for _ in range(15):
                await srv.request("POST", "/api/process_definitions/busy/trigger")
                await asyncio.sleep(0.05)

        loader = asyncio.create_task(load())
        await asyncio.sleep(0.4)
        backup = tmp_path / "backup.db"
        done = await asyncio.to_thread(taskd, "backup", "--db", str(srv.db), str(backup))
        assert done.returncode == 0, done.stderr
        await loader
    finally:
        srv.stop()

    # The running server refuses a restore onto its file; here it is stopped, so a new
    # directory gets the backup.
    restored = tmp_path / "restored"
    restored.mkdir()
    target = restored / "taskd.db"
    done = taskd("restore", "--db", str(target), str(backup))
    assert done.returncode == 0, done.stderr
    assert "integrity ok" in done.stdout
    assert integrity(target) == "ok"
    assert target.stat().st_mode & 0o077 == 0  # as private as the live database

    srv2 = Server(restored)
    try:
        await srv2.start()
        status, found = await srv2.request("GET", "/api/process_definitions/busy")
        assert status == 200 and found["process_definition_name"] == "busy"
        _, runs = await srv2.request("GET", "/api/processes/",
                                     params={"process_definition_name": "busy"})  # fmt: skip
        assert runs  # the runs the backup held, whatever state they were in
        before = len(runs)
        await srv2.request("POST", "/api/process_definitions/busy/trigger")

        for _ in range(600):
            _, runs = await srv2.request("GET", "/api/processes/",
                                         params={"process_definition_name": "busy"})  # fmt: skip
            if len(runs) > before and all(r["status"] != "running" for r in runs):
                break
            await asyncio.sleep(0.1)
        assert len(runs) == before + 1
        assert {r["status"] for r in runs} <= {"succeeded", "failed"}
        assert runs[0]["status"] == "succeeded"  # the restored server runs new work
    finally:
        srv2.stop()


async def test_restore_refuses_a_running_server_and_a_damaged_backup(tmp_path):
    srv = Server(tmp_path)
    try:
        await srv.start()
        backup = tmp_path / "copy.db"
        assert taskd("backup", "--db", str(srv.db), str(backup)).returncode == 0
        done = taskd("restore", "--force", "--db", str(srv.db), str(backup))
        assert done.returncode != 0 and "running" in done.stderr
    finally:
        srv.stop()

    damaged = tmp_path / "damaged.db"
    data = bytearray(backup.read_bytes())
    data[4096 : 4096 * 3] = b"\xde\xad" * 4096  # overwrite table pages
    damaged.write_bytes(bytes(data))
    done = taskd("restore", "--db", str(tmp_path / "new.db"), str(damaged))
    assert done.returncode != 0
    assert "integrity" in done.stderr or "not a taskd database" in done.stderr
    assert not (tmp_path / "new.db").exists()

    done = taskd("restore", "--db", str(srv.db), str(backup))
    assert done.returncode != 0 and "--force" in done.stderr  # an existing file is not replaced
    done = taskd("restore", "--force", "--db", str(srv.db), str(backup))
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("taskd.db.replaced-*"))
