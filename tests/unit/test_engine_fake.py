"""The engine on a fake runner and a fake clock: every behaviour, deterministic, no sleeps.

Real SQLite store in a temporary directory; the runner plays scripted jobs and time moves only
when the engine has nothing else to do (drain mode), so hours of backoff take milliseconds.
The fake clock starts at monotonic 1000.0, at MONDAY on the wall.
"""

from __future__ import annotations

from taskd.models import TaskTemplate
from taskd.store import output as output_q
from tests.unit.fakes import MONDAY, Job, job, starts, task

T0 = 1000.0
NS = 1_000_000_000
WALL0 = int(MONDAY.timestamp()) * NS


# -- order and dependencies ---------------------------------------------------------------


async def test_a_dag_runs_in_dependency_order(world):
    world.runner.script("a", Job(duration=5))
    world.runner.script("b", Job(duration=3))
    run = await world.submit(task("a"), task("b", "a"), task("c", "a"))
    await world.drain()
    assert await world.run_state(run.id) == "succeeded"
    a, b, c = world.runner.of("a")[0], world.runner.of("b")[0], world.runner.of("c")[0]
    assert (a.started_at, a.ended_at) == (T0, T0 + 5)
    assert b.started_at == c.started_at == T0 + 5
    assert b.ended_at == T0 + 8


async def test_a_fan_in_waits_for_its_slowest_parent(world):
    for name, seconds in (("p1", 3), ("p2", 9), ("p3", 6)):
        world.runner.script(name, Job(duration=seconds))
    await world.submit(task("p1"), task("p2"), task("p3"), task("join", "p1", "p2", "p3"))
    await world.drain()
    assert starts(world, "join") == [T0 + 9]


async def test_stored_times_are_the_fake_wall_clock(world):
    world.runner.script("a", Job(duration=7.5))
    run = await world.submit(task("a"))
    await world.drain()
    [att] = await world.attempts(run.id, "a")
    assert att["started_at"] == WALL0
    assert att["ended_at"] == WALL0 + int(7.5 * NS)
    [row] = await world.rows("SELECT started_at, ended_at FROM runs WHERE id = ?", run.id)
    assert (row["started_at"], row["ended_at"]) == (WALL0, WALL0 + int(7.5 * NS))


async def test_a_failed_required_parent_fails_the_whole_branch_below_it(world):
    world.runner.script("a", Job(exit_code=3))
    run = await world.submit(task("a"), task("b", "a"), task("c", "b"), task("side"))
    await world.drain()
    assert await world.task_states(run.id) == {
        "a": "failed", "b": "upstream_failed", "c": "upstream_failed", "side": "succeeded",
    }  # fmt: skip
    assert world.runner.of("b") == [] and world.runner.of("c") == []
    assert await world.run_state(run.id) == "failed"


async def test_an_optional_child_runs_after_its_parent_fails(world):
    world.runner.script("a", Job(exit_code=1, duration=4))
    run = await world.submit(task("a"), task("cleanup", ("a", False)))
    await world.drain()
    assert starts(world, "cleanup") == [T0 + 4]
    assert await world.task_states(run.id) == {"a": "failed", "cleanup": "succeeded"}
    assert await world.run_state(run.id) == "failed"


async def test_an_optional_child_waits_for_its_parent_to_end_not_just_to_start(world):
    world.runner.script("a", Job(duration=12))
    await world.submit(task("a"), task("b", ("a", False)))
    await world.drain()
    assert starts(world, "b") == [T0 + 12]


async def test_an_optional_parent_that_is_upstream_failed_still_lets_its_child_run(world):
    world.runner.script("a", Job(exit_code=1))
    run = await world.submit(task("a"), task("b", "a"), task("c", ("b", False)))
    await world.drain()
    states = await world.task_states(run.id)
    assert states == {"a": "failed", "b": "upstream_failed", "c": "succeeded"}


# -- retries and backoff ------------------------------------------------------------------


async def test_retries_back_off_exponentially_on_the_clock(world):
    world.runner.script("a", Job(exit_code=1), Job(exit_code=1), Job())
    run = await world.submit(task("a", attempts=3, backoff=10, exponent=2))
    await world.drain()
    # base * exponent ** attempts_so_far: 20 s after the first, 40 s after the second.
    assert starts(world, "a") == [T0, T0 + 20, T0 + 60]
    assert [a["exit_code"] for a in await world.attempts(run.id, "a")] == [1, 1, 0]
    assert await world.task_states(run.id) == {"a": "succeeded"}


async def test_an_hour_of_backoff_takes_no_time(world):
    world.runner.script("a", Job(exit_code=1), Job())
    await world.submit(task("a", attempts=2, backoff=3600))
    await world.drain()
    assert starts(world, "a") == [T0, T0 + 3600]
    assert world.clock.now_ns() == WALL0 + 3600 * NS


async def test_a_task_in_backoff_is_stored_as_retry_wait_with_its_due_time(world):
    world.runner.script("a", Job(exit_code=1, duration=2), Job())
    run = await world.submit(task("a", attempts=2, backoff=30))
    await world.drain(until=T0 + 10)
    [row] = await world.rows("SELECT state, retry_at FROM tasks WHERE run_id = ?", run.id)
    assert row == {"state": "retry_wait", "retry_at": WALL0 + 32 * NS}
    await world.drain()
    assert starts(world, "a") == [T0, T0 + 32]


async def test_retries_stop_when_the_budget_is_spent(world):
    world.runner.script("a", Job(exit_code=2))
    run = await world.submit(task("a", attempts=3, backoff=1))
    await world.drain()
    atts = await world.attempts(run.id, "a")
    assert [a["number"] for a in atts] == [1, 2, 3]
    assert atts[-1]["reason"] == "exited with status 2"
    assert await world.run_state(run.id) == "failed"


async def test_a_child_waits_through_its_parents_retries(world):
    world.runner.script("a", Job(exit_code=1, duration=5), Job(duration=5))
    await world.submit(task("a", attempts=2, backoff=50), task("b", "a"))
    await world.drain()
    assert starts(world, "b") == [T0 + 5 + 50 + 5]


async def test_a_start_failure_uses_an_attempt_and_is_retried(world):
    world.runner.script("a", Job(start_error="no such image"), Job())
    run = await world.submit(task("a", attempts=2, backoff=5))
    await world.drain()
    atts = await world.attempts(run.id, "a")
    assert [a["state"] for a in atts] == ["start_failed", "exited"]
    assert "no such image" in atts[0]["reason"]
    assert starts(world, "a") == [T0 + 5]


async def test_an_unreachable_backend_costs_no_attempt_and_waits_no_backoff(world):
    world.runner.script("a", Job(start_error="engine down", blameless=True), Job())
    run = await world.submit(task("a", attempts=1, backoff=100))
    await world.drain()
    assert await world.task_states(run.id) == {"a": "succeeded"}
    [row] = await world.rows("SELECT max_attempts FROM tasks WHERE run_id = ?", run.id)
    assert row["max_attempts"] == 2  # one more on top of the budget
    assert starts(world, "a") == [T0]


# -- max runtime and kill -----------------------------------------------------------------


async def test_a_job_over_its_max_runtime_is_timed_out(world):
    world.runner.script("a", Job(forever=True))
    run = await world.submit(task("a", max_runtime=30))
    await world.drain()
    [played] = world.runner.of("a")
    assert played.killed_at == T0 + 30
    [att] = await world.attempts(run.id, "a")
    assert att["state"] == "timed_out"
    assert "limit of 30 seconds" in att["reason"]
    assert await world.task_states(run.id) == {"a": "failed"}


async def test_a_timed_out_attempt_is_retried_and_the_next_can_succeed(world):
    world.runner.script("a", Job(forever=True), Job(duration=10))
    run = await world.submit(task("a", attempts=2, backoff=5, max_runtime=30))
    await world.drain()
    assert starts(world, "a") == [T0, T0 + 35]
    assert [a["state"] for a in await world.attempts(run.id, "a")] == ["timed_out", "exited"]
    assert await world.task_states(run.id) == {"a": "succeeded"}


async def test_a_job_that_ignores_the_stop_signal_ends_after_the_kill_grace(world):
    world.runner.script("a", Job(forever=True, ignore_term=True))
    await world.submit(task("a", max_runtime=30))
    await world.drain()
    [played] = world.runner.of("a")
    assert played.killed_at == T0 + 30
    assert played.ended_at == T0 + 30 + world.settings.kill_grace


async def test_a_job_ending_in_time_leaves_no_timer_behind(world):
    world.runner.script("a", Job(duration=5))
    run = await world.submit(task("a", max_runtime=3600))
    await world.drain()
    assert await world.task_states(run.id) == {"a": "succeeded"}
    assert world.clock.time() == T0 + 5  # the clock never went on to the cancelled deadline
    assert world.clock.next_due() is None


async def test_draining_returns_while_a_job_that_never_ends_still_runs(world):
    world.runner.script("a", Job(forever=True))
    run = await world.submit(task("a"))
    await world.drain()
    assert await world.task_states(run.id) == {"a": "running"}
    assert world.clock.time() == T0


async def test_killing_a_run_stops_its_job_and_kills_what_waits(world):
    world.runner.script("a", Job(forever=True))
    run = await world.submit(task("a"), task("b", "a"), task("c", ("a", False)))
    await world.drain()
    await world.engine.kill_run(run.id)
    await world.drain()
    assert await world.task_states(run.id) == {"a": "killed", "b": "killed", "c": "killed"}
    assert await world.run_state(run.id) == "killed"
    [att] = await world.attempts(run.id, "a")
    assert att["state"] == "killed"
    assert world.runner.of("b") == world.runner.of("c") == []


async def test_a_killed_attempt_is_not_retried(world):
    world.runner.script("a", Job(forever=True))
    run = await world.submit(task("a", attempts=5))
    await world.drain()
    await world.engine.kill_run(run.id)
    await world.drain()
    assert len(world.runner.of("a")) == 1
    assert await world.run_state(run.id) == "killed"


async def test_killing_a_run_in_backoff_cancels_its_next_attempt(world):
    world.runner.script("a", Job(exit_code=1))
    run = await world.submit(task("a", attempts=3, backoff=600))
    await world.drain(until=T0 + 60)
    await world.engine.kill_run(run.id)
    await world.drain()
    assert starts(world, "a") == [T0]
    assert await world.task_states(run.id) == {"a": "killed"}
    assert world.clock.next_due() is None  # the backoff timer went with it


async def test_killing_one_task_fails_its_required_children_only(world):
    world.runner.script("a", Job(forever=True))
    run = await world.submit(task("a"), task("b", "a"), task("c", ("a", False)))
    await world.drain()
    await world.engine.kill_task(world.engine.runs[run.id].by_name["a"])
    await world.drain()
    assert await world.task_states(run.id) == {
        "a": "killed", "b": "upstream_failed", "c": "succeeded",
    }  # fmt: skip
    assert await world.run_state(run.id) == "failed"


# -- restart ------------------------------------------------------------------------------


async def test_restarting_a_failed_run_reruns_only_what_did_not_succeed(world):
    world.runner.script("a", Job(exit_code=1), Job())
    run = await world.submit(task("ok"), task("a"), task("b", "a"))
    await world.drain()
    assert await world.run_state(run.id) == "failed"
    await world.engine.restart(run.id, lambda t: 1)
    await world.drain()
    assert await world.run_state(run.id) == "succeeded"
    assert [len(world.runner.of(n)) for n in ("ok", "a", "b")] == [1, 2, 1]


async def test_a_restart_keeps_backoff_unless_asked_to_retry_at_once(world):
    world.runner.script("a", Job(exit_code=1))
    world.runner.script("z", Job(exit_code=1))
    slow = await world.submit(task("a", attempts=1, backoff=100))
    fast = await world.submit(task("z", attempts=1, backoff=100))
    await world.drain()
    await world.engine.restart(slow.id, lambda t: 2)
    await world.engine.restart(fast.id, lambda t: 2, at_once=True)
    await world.drain()
    assert starts(world, "z") == [T0, T0, T0]  # no backoff at all
    # The retried attempt starts now either way; after it fails, only one backs off.
    assert starts(world, "a") == [T0, T0, T0 + 100]


async def test_restarting_a_killed_run_runs_its_killed_tasks_again(world):
    world.runner.script("a", Job(forever=True), Job(duration=1))
    run = await world.submit(task("a"), task("b", "a"))
    await world.drain()
    await world.engine.kill_run(run.id)
    await world.drain()
    await world.engine.restart(run.id, lambda t: 1)
    await world.drain()
    assert await world.task_states(run.id) == {"a": "succeeded", "b": "succeeded"}
    assert await world.run_state(run.id) == "succeeded"


# -- output, reports, recovery ------------------------------------------------------------


async def test_what_a_job_prints_is_stored_per_stream(world):
    world.runner.script("a", Job(output=(("stdout", "hello"), ("stderr", "oops"),
                                          ("stdout", "world"))))  # fmt: skip
    run = await world.submit(task("a"))
    await world.drain()
    [att] = await world.attempts(run.id, "a")
    out = await world.store.read(output_q.text_of, [att["id"]], "stdout")
    err = await world.store.read(output_q.text_of, [att["id"]], "stderr")
    assert out[att["id"]] == "hello\nworld\n"
    assert err[att["id"]] == "oops\n"


async def test_explicit_success_needs_the_task_to_report_it(world):
    world.runner.script("quiet", Job(duration=10))
    world.runner.script("loud", Job(duration=10))
    spec = {"explicit_success": True}
    run = await world.submit(TaskTemplate("quiet", job(), **spec),
                             TaskTemplate("loud", job(), **spec))  # fmt: skip
    await world.advance(5)
    loud = world.engine.runs[run.id].by_name["loud"].live
    assert await world.engine.report(loud.uuid, "succeeded")
    await world.drain()
    assert await world.task_states(run.id) == {"quiet": "failed", "loud": "succeeded"}
    [quiet] = await world.attempts(run.id, "quiet")
    assert "did not report success" in quiet["reason"]


async def test_a_job_running_across_a_restart_of_taskd_is_adopted_and_ends_once(world):
    world.runner.script("a", Job(duration=100))
    run = await world.submit(task("a"), task("b", "a"))
    await world.advance(40)
    await world.engine.stop()
    world.clock.move_to(T0 + 60)  # taskd is down for 20 s; the job runs on
    await world.start_engine()
    await world.drain()
    assert await world.task_states(run.id) == {"a": "succeeded", "b": "succeeded"}
    assert len(world.runner.of("a")) == 1
    assert starts(world, "b") == [T0 + 100]


async def test_a_job_gone_while_taskd_was_down_is_lost_and_retried(world):
    world.runner.script("a", Job(duration=100), Job(duration=5))
    run = await world.submit(task("a", attempts=2))
    await world.advance(40)
    await world.engine.stop()
    world.runner.running.clear()  # the machine rebooted: the job is gone
    await world.start_engine()
    await world.drain()
    atts = await world.attempts(run.id, "a")
    assert [a["state"] for a in atts] == ["lost", "exited"]
    assert await world.task_states(run.id) == {"a": "succeeded"}
    assert starts(world, "a") == [T0, T0 + 40]


async def test_a_generator_adds_the_tasks_it_prints_below_itself(world):
    def hook(node, stdout):
        names = stdout.split()
        return [TaskTemplate(n, job()) for n in names], [(node.name, n, True) for n in names]

    world.engine.generator_hook = hook
    world.runner.script("gen", Job(duration=3, output=(("stdout", "x y"),)))
    world.runner.script("x", Job(duration=2))
    run = await world.submit(TaskTemplate("gen", job(), generator=True), task("after", "gen"))
    await world.drain()
    assert await world.task_states(run.id) == {
        "gen": "succeeded", "after": "succeeded", "x": "succeeded", "y": "succeeded",
    }  # fmt: skip
    assert starts(world, "x") == starts(world, "y") == [T0 + 3]
