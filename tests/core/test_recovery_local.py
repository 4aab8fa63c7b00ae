"""Crash recovery with a real taskd process and local tasks (SIGKILL and SIGTERM)."""

from __future__ import annotations

import pytest

from tests.processes.sundial import definition, shell, wait_for
from tests.server import Server


@pytest.fixture
async def server(tmp_path):
    # The jobs write into the test's private directory, which only root may enter.
    srv = Server(tmp_path, "--local-user", "root")
    await srv.start()
    yield srv
    srv.stop()


async def processes(srv: Server, name: str) -> list[dict]:
    status, body = await srv.request("GET", "/api/processes/",
                                     params={"process_definition_name": name})  # fmt: skip
    assert status == 200, body
    return body


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_sigkill_mid_task_retries_the_lost_local_attempt(server, tmp_path):
    pids = tmp_path / "pids"
    script = f"echo $$ >> {pids}; sleep 3; echo finished"
    doc = definition("p", shell("work", script, max_attempts=2))
    status, body = await server.request("PUT", "/api/process_definitions/p", json=doc)
    assert status == 200, body
    status, _ = await server.request("POST", "/api/process_definitions/p/trigger")
    assert status == 204

    await wait_for(lambda: _file_has_lines(pids, 1), within=10)
    first_pid = int(pids.read_text().split()[0])
    server.kill9()
    assert alive(first_pid)  # the job outlived taskd...
    await server.start()

    async def done():
        found = await processes(server, "p")
        return found if found and found[0]["status"] != "running" else None

    [proc] = await wait_for(done, within=20)
    assert not alive(first_pid)  # ...until taskd came back and stopped it
    assert proc["status"] == "succeeded"
    attempts = sorted(proc["task"], key=lambda t: t["previous_attempt_count"])
    assert [t["attempt_state"] for t in attempts] == ["lost", "exited"]
    assert [t["status"] for t in attempts] == ["failed", "succeeded"]
    status, text = await server.request("GET", f"/api/tasks/{attempts[1]['task_id']}/logs",
                                        params={"stream": "stdout"})  # fmt: skip
    assert text == "finished\n"


async def _file_has_lines(path, n):
    return path.exists() and len(path.read_text().split()) >= n


async def test_sigterm_lets_short_local_tasks_finish_and_exits_quickly(server, tmp_path):
    doc = definition("p", shell("quick", "sleep 1; echo ok"))
    await server.request("PUT", "/api/process_definitions/p", json=doc)
    await server.request("POST", "/api/process_definitions/p/trigger")
    await wait_for(lambda: _running(server, "p"), within=10)
    took = server.terminate()
    assert took < 6
    await server.start()
    [proc] = await processes(server, "p")
    assert proc["status"] == "succeeded"
    assert len(proc["task"]) == 1


async def _running(srv, name):
    found = await processes(srv, name)
    return found and found[0]["task"]


async def test_sigterm_stops_long_local_tasks_and_they_are_retried(server, tmp_path):
    marker = tmp_path / "runs"
    doc = definition("p", shell("long", f"echo x >> {marker}; sleep 30", max_attempts=2,
                                max_runtime_seconds=60))  # fmt: skip
    await server.request("PUT", "/api/process_definitions/p", json=doc)
    await server.request("POST", "/api/process_definitions/p/trigger")
    await wait_for(lambda: _file_has_lines(marker, 1), within=10)
    took = server.terminate()
    assert took < 8
    await server.start()
    await wait_for(lambda: _file_has_lines(marker, 2), within=10)  # the retry started
    [proc] = await processes(server, "p")
    states = sorted(t["attempt_state"] for t in proc["task"])
    assert states == ["lost", "running"]
    status, _ = await server.request("POST", f"/api/processes/{proc['process_id']}/kill")
    assert status == 204
