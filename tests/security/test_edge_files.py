"""Files and processes (edge item 4): what taskd leaves on disk and in ``ps``, for real."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.security.edge import probing, started
from tests.server import free_port


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_database_and_its_wal_and_shm_are_for_taskds_user_only(tmp_path):
    old = tmp_path / "taskd.db"
    # A database an older taskd left readable by everyone, as a 022 umask makes it.
    os.umask(umask := os.umask(0o022))
    try:
        sqlite3.connect(old).close()
    finally:
        os.umask(umask)
    old.chmod(0o644)
    srv = await started(tmp_path)
    try:
        async with probing(srv) as probe:
            status, _ = await srv.request("PUT", "/api/process_definitions/p",
                                          json={"task_definitions": []})  # fmt: skip
            assert status in (200, 400)
        probe.check()
        for name in ("taskd.db", "taskd.db-wal", "taskd.db-shm"):
            assert mode(tmp_path / name) == 0o600, name
    finally:
        srv.stop()


def spawn(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(tmp_path / f"spawn-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskd", "serve", "--port", str(port), "--docker-network",
         "none", *args],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    log.close()
    return proc, f"http://127.0.0.1:{port}"


async def ready(proc: subprocess.Popen, url: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"taskd exited with {proc.returncode}"
            try:
                async with http.get(f"{url}/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("taskd did not become ready")


async def test_a_database_where_other_users_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: sticky, but anyone may create the -wal file first
    proc, _ = spawn(tmp_path, "--db", str(shared / "taskd.db"), "--admin-token", "x" * 20)
    assert proc.wait(30) == 2
    log = next(tmp_path.glob("spawn-*.log")).read_text()
    assert "other users may write" in log
    assert not (shared / "taskd.db").exists()


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_the_admin_token_file_keeps_the_secret_out_of_ps(tmp_path):
    secret = "file-held-admin-token-" + os.urandom(8).hex()
    token_file = tmp_path / "admin.token"
    token_file.write_text(secret + "\n")
    token_file.chmod(0o600)
    proc, url = spawn(tmp_path, "--db", str(tmp_path / "taskd.db"),
                      "--admin-token-file", str(token_file))  # fmt: skip
    try:
        await ready(proc, url)
        shown = cmdline(proc.pid)  # what ps shows every user
        assert secret.encode() not in shown and str(token_file).encode() in shown
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {secret}"}
            async with http.get(f"{url}/api/process_definitions", headers=auth) as resp:
                assert resp.status == 200
            async with http.get(f"{url}/api/process_definitions") as resp:
                assert resp.status == 401
    finally:
        proc.kill()
        proc.wait(10)
    both, _ = spawn(tmp_path, "--admin-token-file", str(token_file), "--admin-token", "y" * 20)
    assert both.wait(30) == 2
