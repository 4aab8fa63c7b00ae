"""Local jobs end with their main process and leave nothing behind (real processes).

Each job here starts two children that escape its process group: one through ``setsid``, one
through a double fork and ``setsid``. Both clear their environment (so no marker finds them)
and write their pid into a file. After the attempt's end, timeout or kill, and after taskd
was SIGKILLed and came back, neither may be alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import stat
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from taskd.app import Services
from taskd.models import JobSpec, RetryPolicy, RunKind, RunState, TaskTemplate
from taskd.store.runs import RunPlan
from tests.processes.sundial import definition, shell, wait_for
from tests.server import Server

# $1: the pid file; $2: "keep" leaves stdout and stderr open in the children.
KIDS = """\
leave() {
  setsid sh -c 'echo $$ >> "$0"; exec env -i sleep 120' "$1" &
  sh -c 'setsid sh -c '"'"'echo $$ >> "$0"; exec env -i sleep 120'"'"' "$0" & exit 0' "$1" &
}
if [ "$2" = keep ]; then leave "$1"; else leave "$1" >/dev/null 2>&1; fi
while [ "$(wc -l < "$1")" -lt 2 ]; do sleep 0.02; done
"""


@pytest.fixture
def shared():
    """A directory any user may use (the test's own tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="taskd-test-"))
    path.chmod(0o1777)
    (path / "kids.sh").write_text(KIDS)
    (path / "kids.sh").chmod(0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def leave_kids(shared: Path, name: str, keep: bool = False) -> tuple[str, Path]:
    pids = shared / name
    pids.touch()
    pids.chmod(0o666)
    return f"sh {shared / 'kids.sh'} {pids} {'keep' if keep else ''}; ", pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def pids_in(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()]


@contextlib.asynccontextmanager
async def engine_with(settings, **overrides):
    svc = await Services.open(dataclasses.replace(settings, **overrides))
    await svc.engine.start()
    try:
        yield svc
    finally:
        await svc.engine.stop()
        await svc.close()


def plan(*tasks: TaskTemplate) -> RunPlan:
    return RunPlan(kind=RunKind.DAG, name="t", trigger="api", uuid=str(uuid.uuid4()),
                   tasks=list(tasks))  # fmt: skip


async def attempts(svc, run_id: int) -> list[dict]:
    def q(db):
        sql = ("SELECT a.state, a.exit_code, a.reason FROM attempts a JOIN tasks t"
               " ON t.id = a.task_id WHERE t.run_id = ? ORDER BY a.id")  # fmt: skip
        return [dict(r) for r in db.execute(sql, (run_id,))]

    return await svc.store.read(q)


async def test_attempt_ends_with_its_main_process_though_children_hold_output(settings, shared):
    """Its slot is free again at once (one slot here), and the result is the main's."""
    start, pids = leave_kids(shared, "pids", keep=True)
    job = JobSpec(runner="local", script=start + "echo main done; exit 3")
    async with engine_with(settings, max_parallel=1) as svc:
        t0 = time.monotonic()
        first = await svc.engine.submit(plan(TaskTemplate("leaves", job)))
        second = await svc.engine.submit(
            plan(TaskTemplate("next", JobSpec(runner="local", script="echo next")))
        )
        await asyncio.wait_for(second.done.wait(), 30)
        assert time.monotonic() - t0 < 30  # not held until the children's sleep ends
        assert first.state is RunState.FAILED and second.state is RunState.SUCCEEDED
        [att] = await attempts(svc, first.id)
        assert (att["state"], att["exit_code"]) == ("exited", 3)
    assert len(pids_in(pids)) == 2
    assert [p for p in pids_in(pids) if alive(p)] == []


async def test_timeout_reaches_children_that_left_the_process_group(settings, shared):
    start, pids = leave_kids(shared, "pids", keep=True)
    job = JobSpec(runner="local", script=start + "sleep 60")
    async with engine_with(settings) as svc:
        run = await svc.engine.submit(
            plan(TaskTemplate("slow", job, max_runtime=1.0, retry=RetryPolicy(1, 0, 1)))
        )
        await asyncio.wait_for(run.done.wait(), 30)
        [att] = await attempts(svc, run.id)
    assert att["state"] == "timed_out", att
    assert len(pids_in(pids)) == 2
    assert [p for p in pids_in(pids) if alive(p)] == []


@pytest.mark.parametrize("user", [None, "nobody"])
async def test_kill_reaches_children_that_left_the_process_group(settings, shared, user):
    start, pids = leave_kids(shared, "pids")
    job = JobSpec(runner="local", script=start + "echo ready; sleep 60")
    async with engine_with(settings, **({"local_user": user} if user else {})) as svc:
        run = await svc.engine.submit(plan(TaskTemplate("victim", job)))
        await wait_for(lambda: _lines(pids, 2), within=20)
        await svc.engine.kill_run(run.id)
        await asyncio.wait_for(run.done.wait(), 20)
        [att] = await attempts(svc, run.id)
    assert run.state is RunState.KILLED
    assert att["state"] == "killed", att
    assert [p for p in pids_in(pids) if alive(p)] == []


async def test_a_killed_supervisor_still_takes_the_job_with_it(settings, shared):
    """Should the shim itself die, the job's processes are found by their attempt and end."""
    pids = shared / "pids"
    script = (f"setsid sh -c 'echo $$ >> {pids}; exec sleep 120' & "
              f"while [ ! -s {pids} ]; do sleep 0.02; done; echo $$ >> {pids}; "
              f"[ $PPID != {os.getpid()} ] && kill -9 $PPID; sleep 60")  # fmt: skip
    async with engine_with(settings) as svc:
        run = await svc.engine.submit(plan(TaskTemplate("j", JobSpec("local", script=script))))
        await asyncio.wait_for(run.done.wait(), 30)
        [att] = await attempts(svc, run.id)
    assert att["state"] == "lost" and "supervisor" in att["reason"], att
    assert len(pids_in(pids)) == 2
    assert [p for p in pids_in(pids) if alive(p)] == []


async def _lines(path: Path, n: int) -> bool:
    return len(words(path)) >= n


def exists(path: str) -> bool:
    return os.path.exists(path)


def words(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_no_child_of_a_lost_attempt_is_alive_when_its_retry_starts(tmp_path, shared):
    """taskd is SIGKILLed while the job runs; its retry checks for the first one's children."""
    start, pids = leave_kids(shared, "pids")
    report = shared / "report"
    check = (f'for p in $(cat {pids}); do if [ -e /proc/$p ] && '
             f'! grep -q zombie /proc/$p/status; then echo "$p" >> {report}; fi; done; '
             f"echo checked >> {report}")  # fmt: skip
    script = f'if [ "$TASKD_ATTEMPT" = 1 ]; then {start} sleep 60; else {check}; fi'
    srv = Server(tmp_path, "--local-user", "root")
    await srv.start()
    try:
        doc = definition("p", shell("work", script, max_attempts=2))
        assert (await srv.request("PUT", "/api/process_definitions/p", json=doc))[0] == 200
        assert (await srv.request("POST", "/api/process_definitions/p/trigger"))[0] == 204
        await wait_for(lambda: _lines(pids, 2), within=20)
        srv.kill9()
        assert all(alive(p) for p in pids_in(pids))  # the first attempt outlived taskd...
        await srv.start()
        await wait_for(lambda: _lines(report, 1), within=30)
    finally:
        srv.stop()
    assert report.read_text().split() == ["checked"]  # ...but none of it met the retry
    assert [p for p in pids_in(pids) if alive(p)] == []


# -- who local jobs run as ---------------------------------------------------------------------

WHOAMI = (
    'id -u; pwd; echo "$HOME"; echo x > "$HOME/f" && cat "$HOME/f"; cat {secret} || echo denied'
)


async def job_output(srv: Server, script: str) -> str:
    doc = definition("who", shell("who", script))
    assert (await srv.request("PUT", "/api/process_definitions/who", json=doc))[0] == 200
    assert (await srv.request("POST", "/api/process_definitions/who/trigger"))[0] == 204

    async def ended():
        _, found = await srv.request("GET", "/api/processes/",
                                     params={"process_definition_name": "who"})  # fmt: skip
        return found if found and found[0]["status"] != "running" else None

    [proc] = await wait_for(ended, within=20)
    task_id = proc["task"][0]["task_id"]
    _, text = await srv.request("GET", f"/api/tasks/{task_id}/logs", params={"stream": "stdout"})
    return text


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run jobs as another user")
async def test_a_root_taskd_runs_local_jobs_unprivileged_by_default(tmp_path, shared):
    secret = shared / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)  # like the database and the token file beside it
    assert stat.S_IMODE(shared.stat().st_mode) & 0o001  # reachable: only the mode keeps it
    srv = Server(tmp_path)
    await srv.start()
    try:
        text = await job_output(srv, WHOAMI.format(secret=secret) + f"; cat {srv.db} | head -c 6")
    finally:
        srv.terminate()
    uid, cwd, home, written, *rest = text.split("\n")
    assert uid == "65534"  # nobody
    assert home == cwd and home.startswith(tempfile.gettempdir()) and written == "x"
    assert "s3cret" not in text and "denied" in rest
    assert "SQLite" not in text
    assert not exists(home)  # the private home goes with the attempt


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can run jobs as another user")
async def test_local_user_root_keeps_jobs_running_as_root(tmp_path, shared):
    secret = shared / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    srv = Server(tmp_path, env={"TASKD_LOCAL_USER": "root"})
    await srv.start()
    try:
        text = await job_output(srv, WHOAMI.format(secret=secret))
    finally:
        srv.terminate()
    assert text.split("\n")[0] == "0" and "s3cret" in text


def test_an_unknown_local_user_is_refused(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "taskd", "serve", "--db", str(tmp_path / "t.db"),
         "--local-user", "no-such-user-here"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no user named 'no-such-user-here'" in done.stderr


async def test_a_command_is_found_on_the_jobs_own_path_and_a_missing_one_fails_to_start(
    settings, shared
):
    """argv jobs are looked up on the PATH of the job's environment, as exec does."""
    tools = shared / "tools"
    tools.mkdir()
    (tools / "only-here").write_text('#!/bin/sh\necho found "$@"; cat\n')
    (tools / "only-here").chmod(0o755)
    path = f"{tools}:{os.environ.get('PATH', os.defpath)}"
    found = JobSpec(runner="local", command=("only-here", "it"), env=(("PATH", path),))
    missing = JobSpec(runner="local", command=("only-here",))
    async with engine_with(settings) as svc:
        ok = await svc.engine.submit(plan(TaskTemplate("found", found)))
        bad = await svc.engine.submit(plan(TaskTemplate("missing", missing)))
        await asyncio.wait_for(asyncio.gather(ok.done.wait(), bad.done.wait()), 30)
        [good] = await attempts(svc, ok.id)
        [failed] = await attempts(svc, bad.id)
    assert (good["state"], good["exit_code"]) == ("exited", 0), good  # stdin was empty
    assert failed["state"] == "start_failed" and "only-here" in failed["reason"], failed


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_jobs_still_start_when_the_spare_shim_is_gone(settings):
    """The supervisor keeps a shim ready for the next job; if it dies, the job starts anyway."""
    job = JobSpec(runner="local", command=("/bin/true",))
    async with engine_with(settings) as svc:
        first = await svc.engine.submit(plan(TaskTemplate("first", job)))
        await asyncio.wait_for(first.done.wait(), 30)
        supervisor = svc.engine.runners["local"]._supervisor.proc.pid
        spares = children_of(supervisor)
        assert spares  # idle now: the only child is the spare
        for pid in spares:
            os.kill(pid, 9)
        second = await svc.engine.submit(plan(TaskTemplate("second", job)))
        await asyncio.wait_for(second.done.wait(), 30)
    assert (first.state, second.state) == (RunState.SUCCEEDED, RunState.SUCCEEDED)
