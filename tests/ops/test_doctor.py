"""``taskd doctor`` reports each problem it checks when the problem is really there."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid

import pytest

from tests.server import Server, free_port

IMAGE = "taskd-test:latest"


def doctor(db, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "taskd", "doctor", "--db", str(db), "--image", IMAGE, *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip
    lines = {}
    for line in done.stdout.splitlines():
        status, rest = line.split(None, 1)
        lines[rest.split(":", 1)[0]] = f"{status} {rest}"
    return done.returncode, lines


def docker_or_skip() -> None:
    from tests.dockerutil import docker_available, ensure_test_image

    if not docker_available():
        if os.environ.get("TASKD_REQUIRE_DOCKER") == "1":
            pytest.fail("TASKD_REQUIRE_DOCKER=1 but no Docker engine is reachable")
        pytest.skip("no Docker engine")
    ensure_test_image()


async def test_a_healthy_server_passes_and_each_made_problem_is_reported(tmp_path):
    docker_or_skip()
    srv = Server(tmp_path)
    try:
        await srv.start()
        code, lines = doctor(srv.db, "--docker-network", "host", "--url", srv.url)
        assert code == 0, lines
        for name in ("database", "disk", "database file", "secrets key file", "docker",
                     "clock", "orphan containers", "container callback"):  # fmt: skip
            assert lines[name].startswith("OK"), lines

        # Nothing answers on this port: the callback test fails and says what to do.
        closed = f"http://127.0.0.1:{free_port()}"
        code, lines = doctor(srv.db, "--docker-network", "host", "--url", closed)
        assert code == 1
        assert lines["container callback"].startswith("FAIL")
        assert "--public-url" in lines["container callback"]

        # A token file readable by others (this server was given its token: make one).
        token = srv.db.with_name("taskd.db.token")
        token.write_text("x\n")
        os.chmod(token, 0o644)
        code, lines = doctor(srv.db, "--docker-network", "host", "--url", srv.url)
        assert code == 1 and lines["admin token file"].startswith("FAIL")
        assert f"chmod 600 {token}" in lines["admin token file"]
        os.chmod(token, 0o600)

        # A container of this database that belongs to no attempt.
        instance = sqlite3.connect(srv.db).execute(
            "SELECT value FROM meta WHERE key = 'instance'").fetchone()[0]  # fmt: skip
        name = f"taskd-doctor-orphan-{uuid.uuid4().hex[:8]}"
        labels = {"taskd.instance": instance, "taskd.attempt": str(uuid.uuid4())}
        import aiodocker

        docker = aiodocker.Docker()
        try:
            orphan = await docker.containers.create(
                {"Image": IMAGE, "Cmd": ["true"], "Labels": labels}, name=name)  # fmt: skip
            try:
                code, lines = doctor(srv.db, "--docker-network", "host", "--url", srv.url)
                assert lines["orphan containers"].startswith("WARN"), lines
                assert orphan.id[:12] in lines["orphan containers"]
            finally:
                await orphan.delete(force=True)
        finally:
            await docker.close()

        # Less disk free than wanted.
        code, lines = doctor(srv.db, "--docker-network", "host", "--url", srv.url,
                             "--min-free-mb", str(10**9))  # fmt: skip
        assert lines["disk"].startswith("FAIL") and "free" in lines["disk"]

        # An engine that does not answer.
        code, lines = doctor(srv.db, env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
        assert code == 1 and lines["docker"].startswith("FAIL"), lines
        assert "dockerd" in lines["docker"]
    finally:
        srv.stop()


def test_a_damaged_database_fails_the_check(tmp_path):
    db = tmp_path / "taskd.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE t (x TEXT); CREATE INDEX tx ON t (x);"
    )
    conn.executemany("INSERT INTO t VALUES (?)", [(json.dumps(i) * 50,) for i in range(2000)])
    conn.commit()
    conn.close()
    data = bytearray(db.read_bytes())
    data[4096 * 5 : 4096 * 7] = b"\x00\x01" * 4096
    db.write_bytes(bytes(data))
    code, lines = doctor(db, env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert code == 1
    assert lines["database"].startswith("FAIL"), lines
    assert "restore" in lines["database"]
