"""The engine on real SQLite with the local runner: DAG order, retries, kill, timeouts."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

import pytest

from taskd.models import JobSpec, RetryPolicy, RunKind, RunState, TaskTemplate
from taskd.store import output as output_q
from taskd.store.runs import RunPlan


def sh(script: str, **kw) -> JobSpec:
    return JobSpec(runner="local", script=script, **kw)


def plan(*tasks: TaskTemplate, name: str = "t") -> RunPlan:
    return RunPlan(
        kind=RunKind.DAG, name=name, trigger="api", uuid=str(uuid.uuid4()), tasks=list(tasks)
    )


async def rows(services, sql, *args):
    def q(db):
        return [dict(r) for r in db.execute(sql, args)]

    return await services.store.read(q)


async def finished(run, within=30):
    await asyncio.wait_for(run.done.wait(), within)
    return run


async def test_dependent_tasks_run_in_order_and_output_is_stored(services):
    engine = services.engine
    run = await engine.submit(
        plan(
            TaskTemplate("first", sh("echo one; echo err >&2")),
            TaskTemplate("second", sh('echo "two $TASKD_TASK_NAME"'), parents=[("first", True)]),
        )
    )
    await finished(run)
    assert run.state is RunState.SUCCEEDED
    attempts = await rows(
        services,
        "SELECT a.id, t.name, a.started_at, a.ended_at, a.exit_code,"
        " a.state FROM attempts a JOIN tasks t ON t.id = a.task_id ORDER BY a.id",
    )
    assert [a["name"] for a in attempts] == ["first", "second"]
    assert attempts[0]["ended_at"] <= attempts[1]["started_at"]
    assert all(a["exit_code"] == 0 and a["state"] == "exited" for a in attempts)
    out = await services.store.read(output_q.text_of, [a["id"] for a in attempts], "stdout")
    assert out[attempts[0]["id"]] == "one\n"
    assert out[attempts[1]["id"]] == "two second\n"
    err = await services.store.read(output_q.text_of, [attempts[0]["id"]], "stderr")
    assert err[attempts[0]["id"]] == "err\n"


async def test_failing_task_retries_with_backoff_and_blocks_required_children(services):
    engine = services.engine
    run = await engine.submit(
        plan(
            TaskTemplate("flaky", sh("exit 3"), retry=RetryPolicy(3, 0.2, 2.0)),
            TaskTemplate("after", sh("echo never"), parents=[("flaky", True)]),
            TaskTemplate("optional", sh("echo ran"), parents=[("flaky", False)]),
        )
    )
    await finished(run)
    assert run.state is RunState.FAILED
    attempts = await rows(
        services,
        "SELECT t.name, a.started_at, a.ended_at, a.exit_code"
        " FROM attempts a JOIN tasks t ON t.id = a.task_id ORDER BY a.id",
    )
    flaky = [a for a in attempts if a["name"] == "flaky"]
    assert len(flaky) == 3 and all(a["exit_code"] == 3 for a in flaky)
    # backoff: base 0.2 * 2 ** attempts -> 0.4 s after the first, 0.8 s after the second
    gaps = [(b["started_at"] - a["ended_at"]) / 1e9 for a, b in itertools.pairwise(flaky)]
    assert 0.4 <= gaps[0] < 2.0 and 0.8 <= gaps[1] < 3.0
    assert not [a for a in attempts if a["name"] == "after"]
    assert [a["exit_code"] for a in attempts if a["name"] == "optional"] == [0]
    states = {t.name: t.state for t in run.tasks.values()}
    assert states == {"flaky": "failed", "after": "upstream_failed", "optional": "succeeded"}


async def test_retry_gives_failed_tasks_one_more_attempt_and_keeps_succeeded(services, tmp_path):
    flag = tmp_path / "fixed"
    engine = services.engine
    run = await engine.submit(
        plan(
            TaskTemplate("ok", sh("echo fine")),
            TaskTemplate("fix", sh(f"test -e {flag}"), parents=[("ok", True)]),
            TaskTemplate("last", sh("echo last"), parents=[("fix", True)]),
        )
    )
    await finished(run)
    assert run.state is RunState.FAILED
    flag.write_text("")
    run = await engine.restart(run.id, lambda task: 1)
    await finished(run)
    assert run.state is RunState.SUCCEEDED
    counts = await rows(
        services,
        "SELECT t.name, COUNT(a.id) AS n FROM tasks t LEFT JOIN"
        " attempts a ON a.task_id = t.id GROUP BY t.name",
    )
    assert {c["name"]: c["n"] for c in counts} == {"ok": 1, "fix": 2, "last": 1}


async def test_kill_stops_a_running_process_group_quickly(services):
    engine = services.engine
    run = await engine.submit(plan(TaskTemplate("sleeper", sh("sleep 60 & sleep 60; wait"))))
    for _ in range(100):
        if any(a.started for a in engine.live.values()):
            break
        await asyncio.sleep(0.05)
    pid = next(iter(engine.live.values())).started.pid
    t0 = time.monotonic()
    await engine.kill_run(run.id)
    await finished(run, within=10)
    assert time.monotonic() - t0 < 5
    assert run.state is RunState.KILLED
    assert live_group_members(pid) == []


def live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still alive (zombies do not count)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


async def test_max_runtime_times_out_an_attempt(services):
    engine = services.engine
    run = await engine.submit(
        plan(TaskTemplate("slow", sh("sleep 30"), max_runtime=0.5, retry=RetryPolicy(2, 0, 1)))
    )
    await finished(run, within=20)
    assert run.state is RunState.FAILED
    attempts = await rows(services, "SELECT state, reason FROM attempts ORDER BY id")
    assert [a["state"] for a in attempts] == ["timed_out", "timed_out"]
    assert "limit of 0.5 seconds" in attempts[0]["reason"]


async def test_concurrency_limit_is_respected(services):
    engine = services.engine
    tasks = [TaskTemplate(f"t{i}", sh("sleep 0.2")) for i in range(20)]
    run = await engine.submit(plan(*tasks))
    peak = 0
    while not run.done.is_set():
        peak = max(peak, len(engine.live))
        await asyncio.sleep(0.01)
    assert run.state is RunState.SUCCEEDED
    assert 1 < peak <= services.settings.max_parallel


async def test_output_keeps_head_and_tail_and_says_how_much_was_dropped(settings, tmp_path):
    import dataclasses

    from taskd.app import Services

    small = dataclasses.replace(settings, log_head_bytes=1000, log_tail_bytes=2000)
    services = await Services.open(small)
    await services.engine.start()
    try:
        # 200,000 numbered lines: far more than is kept
        run = await services.engine.submit(plan(TaskTemplate("chatty", sh("seq 1 200000"))))
        await finished(run)
        [attempt] = await rows(services, "SELECT id FROM attempts")
        text = (await services.store.read(output_q.text_of, [attempt["id"]], "stdout"))[
            attempt["id"]
        ]
        whole = "".join(f"{i}\n" for i in range(1, 200001))
        head, marker, tail = text.partition("\n[taskd: ")
        assert whole.startswith(head) and len(head) >= 999
        dropped = int(marker and tail.split(" ", 1)[0])
        kept_tail = tail.split("dropped here]\n", 1)[1]
        assert whole.endswith(kept_tail) and 2000 <= len(kept_tail) < 2000 + 70000
        assert len(head) + dropped + len(kept_tail) == len(whole)
        stored = await rows(services, "SELECT SUM(length(data)) AS n FROM output_chunks")
        assert stored[0]["n"] < 80_000  # bounded, whatever the job prints
    finally:
        await services.engine.stop()
        await services.close()


async def test_old_output_is_pruned_by_age_and_count(services):
    import dataclasses

    from taskd.engine.retention import Retention

    for i in range(3):
        run = await services.engine.submit(plan(TaskTemplate("t", sh(f"echo {i}")), name="same"))
        await finished(run)
    count = await rows(services, "SELECT COUNT(*) AS n FROM output_chunks")
    assert count[0]["n"] == 3
    no_history = dict(keep_runs_days=0, keep_runs_per_definition=0)

    def retention(**rules):
        settings = dataclasses.replace(services.settings, **no_history, **rules)
        return Retention(settings, services.store, set)

    # keep the newest run's output only
    done = await retention(log_retention_days=0, log_retention_runs=1).run_pass()
    assert done["output_chunks"] == 2
    left = await rows(services, "SELECT data FROM output_chunks")
    assert [r["data"] for r in left] == [b"2\n"]
    # everything that ended before now goes by age
    done = await retention(log_retention_days=1e-9, log_retention_runs=0).run_pass()
    assert done["output_chunks"] == 1
    assert (await rows(services, "SELECT COUNT(*) AS n FROM runs"))[0]["n"] == 3


async def test_cpu_accounting_keeps_big_jobs_apart(services):
    cpus = services.settings.cpus
    big = JobSpec(runner="local", script="sleep 0.3", cpus=cpus)
    run = await services.engine.submit(plan(TaskTemplate("a", big), TaskTemplate("b", big)))
    await finished(run)
    spans = await rows(services, "SELECT started_at, ended_at FROM attempts ORDER BY started_at")
    assert spans[1]["started_at"] >= spans[0]["ended_at"]  # never both at once


async def test_a_job_bigger_than_the_host_is_refused_at_submission(services):
    from taskd.errors import BadRequest

    huge = JobSpec(runner="local", script="true", cpus=services.settings.cpus + 1)
    with pytest.raises(BadRequest) as err:
        await services.engine.submit(plan(TaskTemplate("huge", huge)))
    assert "CPUs" in err.value.details[0]
