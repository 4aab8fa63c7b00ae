"""The scheduler on a fake clock: slots fire at their exact times, with no waiting.

Real SQLite store; the scheduler's loop reads the time and sleeps only through the clock, so a
test steps hours and nights (daylight saving included) in milliseconds. The jobs are the fake
runner's, with scripted durations in fake seconds.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from taskd.engine.drain import advance, advance_to, settle
from taskd.processes import definitions as defs
from taskd.processes import store as dq
from taskd.processes.scheduler import Scheduler, to_ns
from tests.unit.fakes import Job, World

EVERY_MINUTE = {"cron_schedule": {"minutes": "*", "hours": "*", "day_of_month": "*",
                                  "month": "*", "day_of_week": "?"}}  # fmt: skip


def cron(minutes="0", hours="*", timezone="UTC", seconds="0") -> dict:
    return {"cron_schedule": {"seconds": seconds, "minutes": minutes, "hours": hours,
                              "day_of_month": "*", "month": "*", "day_of_week": "?",
                              "timezone": timezone}}  # fmt: skip


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Sched:
    """A world with a scheduler on its clock."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.scheduler: Scheduler = None  # type: ignore[assignment]

    @property
    def clock(self):
        return self.world.clock

    @property
    def runner(self):
        return self.world.runner

    async def start(self) -> None:
        self.scheduler = Scheduler(self.world.engine)
        # With a fake clock nothing steps the wall clock unseen; the check of it would only
        # add wake-ups (the test that steps it sets it back).
        self.scheduler.clock_check = 86400.0
        await self.scheduler.start()
        await settle(self.world.engine)

    async def restart(self, down: timedelta) -> None:
        """Stop taskd for ``down`` of fake time, then start it again on the same store."""
        await self.scheduler.stop()
        await self.world.engine.stop()
        self.clock.move_to(self.clock.time() + down.total_seconds())
        await self.world.start_engine()
        await self.start()

    async def put(self, name: str, schedule: dict, *, job: Job | None = None, **extra) -> None:
        doc = {"process_definition_name": name, "schedule": schedule, **extra,
               "task_definitions": [{"task_definition_name": f"{name}-job", "dependencies": [],
                                     "executable": {"shell_script_command": {"script": "x"}},
                                     "max_attempts": 1, "backoff_base_seconds": 0}]}  # fmt: skip
        self.runner.script(f"{name}-job", job or Job())
        parsed = defs.parse_definition(doc, name)
        await self.world.store.write(dq.put, name, parsed, self.clock.now_ns())
        await self.scheduler.refresh(name)
        await settle(self.world.engine)

    async def pause(self, name: str, paused: bool) -> None:
        await self.world.store.write(dq.set_paused, name, paused, self.clock.now_ns())
        await self.scheduler.refresh(name)
        await settle(self.world.engine)

    async def to(self, when: datetime) -> None:
        await advance_to(self.world.engine, when)

    async def runs(self, name: str) -> list[dict]:
        rows = await self.world.rows(
            "SELECT id, state, trigger, extra, created_at FROM runs WHERE name = ? ORDER BY id",
            name,
        )
        for r in rows:
            r["slot"] = orjson.loads(r.pop("extra")).get("slot")
        return rows

    async def slots(self, name: str, status: str) -> list[int]:
        rows = await self.world.rows(
            "SELECT slot FROM ledger WHERE definition = ? AND status = ? ORDER BY slot",
            name,
            status,
        )
        return [r["slot"] for r in rows]


async def open_sched(settings, start: datetime) -> Sched:
    # Local jobs die with taskd: on a stop it waits no real time for them to end by themselves.
    s = Sched(await World(settings, start).open(shutdown_grace=0.0))
    await s.start()
    return s


@pytest.fixture
async def make(settings):
    made: list[Sched] = []

    async def make_at(start: datetime) -> Sched:
        s = await open_sched(settings, start)
        made.append(s)
        return s

    yield make_at
    for s in made:
        await s.scheduler.stop()
        await s.world.close()


def ns(dt: datetime) -> int:
    return to_ns(dt)


# -- firing -------------------------------------------------------------------------------


async def test_a_cron_schedule_fires_each_slot_at_its_exact_time(make):
    s = await make(utc(2026, 1, 5, 9, 0, 0))
    await s.put("tick", EVERY_MINUTE)
    await s.to(utc(2026, 1, 5, 9, 3, 30))
    runs = await s.runs("tick")
    want = [ns(utc(2026, 1, 5, 9, m)) for m in (1, 2, 3)]
    assert [r["slot"] for r in runs] == want
    assert [r["created_at"] for r in runs] == want  # started at the slot, not a moment after
    assert [r["state"] for r in runs] == ["succeeded"] * 3
    assert await s.slots("tick", "fired") == want


async def test_nothing_fires_between_slots(make):
    s = await make(utc(2026, 1, 5, 9, 0, 0))
    await s.put("hourly", cron())
    await s.to(utc(2026, 1, 5, 9, 59, 59))
    assert await s.runs("hourly") == []
    await s.to(utc(2026, 1, 5, 10, 0, 0))
    assert [r["slot"] for r in await s.runs("hourly")] == [ns(utc(2026, 1, 5, 10))]


async def test_a_slot_is_not_fired_again_after_a_restart_at_the_same_time(make):
    s = await make(utc(2026, 1, 5, 9, 0, 0))
    await s.put("tick", EVERY_MINUTE)
    await s.to(utc(2026, 1, 5, 9, 1, 0))
    await s.restart(timedelta(0))
    await s.to(utc(2026, 1, 5, 9, 1, 59))
    assert len(await s.runs("tick")) == 1
    await s.to(utc(2026, 1, 5, 9, 2, 0))
    assert len(await s.runs("tick")) == 2


# -- daylight saving ----------------------------------------------------------------------


async def test_a_daily_time_inside_the_spring_gap_does_not_fire_that_day(make):
    s = await make(utc(2026, 3, 27, 12))
    await s.put("night", cron(minutes="30", hours="2", timezone="Europe/Berlin"))
    await s.to(utc(2026, 3, 31, 0))
    # 02:30 CET is 01:30Z; on 29 March 02:30 does not exist in Berlin; then 02:30 CEST = 00:30Z.
    assert [r["slot"] for r in await s.runs("night")] == [
        ns(utc(2026, 3, 28, 1, 30)), ns(utc(2026, 3, 30, 0, 30)),
    ]  # fmt: skip
    assert await s.slots("night", "missed") == []


async def test_a_daily_time_repeated_in_autumn_fires_once_at_its_first_occurrence(make):
    s = await make(utc(2026, 10, 24, 12))
    await s.put("night", cron(minutes="30", hours="2", timezone="Europe/Berlin"))
    await s.to(utc(2026, 10, 26, 12))
    # 25 October: 02:30 CEST (00:30Z) and again 02:30 CET (01:30Z); only the first fires.
    assert [r["slot"] for r in await s.runs("night")] == [
        ns(utc(2026, 10, 25, 0, 30)), ns(utc(2026, 10, 26, 1, 30)),
    ]  # fmt: skip


async def test_an_hourly_schedule_loses_no_real_hour_in_the_spring_night(make):
    s = await make(utc(2026, 3, 28, 22, 30))
    await s.put("hourly", cron(timezone="Europe/Berlin"))
    await s.to(utc(2026, 3, 29, 3, 30))
    assert [r["slot"] for r in await s.runs("hourly")] == [
        ns(utc(2026, 3, 28, 23)), *(ns(utc(2026, 3, 29, h)) for h in (0, 1, 2, 3)),
    ]  # fmt: skip


async def test_an_hourly_schedule_skips_the_repeated_hour_in_the_autumn_night(make):
    s = await make(utc(2026, 10, 24, 23, 30))
    await s.put("hourly", cron(timezone="Europe/Berlin"))
    await s.to(utc(2026, 10, 25, 3, 30))
    # 02:00 CEST = 00:00Z fires; the second 02:00 (CET, 01:00Z) does not; 03:00 CET = 02:00Z.
    assert [r["slot"] for r in await s.runs("hourly")] == [
        ns(utc(2026, 10, 25, h)) for h in (0, 2, 3)
    ]


# -- missed slots -------------------------------------------------------------------------


async def down_five_hours(make, policy: str, down_until: datetime) -> Sched:
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("hourly", cron(), missed_slots=policy, overlap_action="allow")
    await s.to(utc(2026, 1, 5, 10, 30))
    await s.restart(down_until - s.clock.now())
    return s


HOURS_MISSED = [ns(utc(2026, 1, 5, h)) for h in (11, 12, 13, 14, 15)]


async def test_missed_slots_collapse_into_one_run_of_the_newest(make):
    s = await down_five_hours(make, "collapse", utc(2026, 1, 5, 15, 30))
    runs = await s.runs("hourly")
    assert [r["slot"] for r in runs] == [ns(utc(2026, 1, 5, 10)), HOURS_MISSED[-1]]
    assert runs[-1]["created_at"] == ns(utc(2026, 1, 5, 15, 30))  # at once, on coming back
    assert await s.slots("hourly", "missed") == HOURS_MISSED[:-1]


async def test_missed_slots_are_skipped_when_the_newest_is_overdue(make):
    s = await down_five_hours(make, "skip", utc(2026, 1, 5, 15, 30))
    assert len(await s.runs("hourly")) == 1
    assert await s.slots("hourly", "missed") == HOURS_MISSED
    await s.to(utc(2026, 1, 5, 16))  # the next slot fires as usual
    assert [r["slot"] for r in await s.runs("hourly")][-1] == ns(utc(2026, 1, 5, 16))


async def test_skip_still_fires_a_slot_that_is_only_just_due(make):
    s = await down_five_hours(make, "skip", utc(2026, 1, 5, 15, 0, 30))
    assert [r["slot"] for r in await s.runs("hourly")][-1] == HOURS_MISSED[-1]
    assert await s.slots("hourly", "missed") == HOURS_MISSED[:-1]


async def test_missed_slots_all_fire_in_order_with_policy_all(make):
    s = await down_five_hours(make, "all", utc(2026, 1, 5, 15, 30))
    runs = await s.runs("hourly")
    assert [r["slot"] for r in runs] == [ns(utc(2026, 1, 5, 10)), *HOURS_MISSED]
    assert await s.slots("hourly", "missed") == []


# -- overlap ------------------------------------------------------------------------------


async def test_overlap_wait_starts_the_newest_waiting_slot_when_the_run_ends(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("slow", EVERY_MINUTE, overlap_action="wait", job=Job(duration=150))
    await s.to(utc(2026, 1, 5, 9, 3, 45))
    runs = await s.runs("slow")
    assert [r["slot"] for r in runs] == [ns(utc(2026, 1, 5, 9, 1)), ns(utc(2026, 1, 5, 9, 3))]
    assert runs[1]["created_at"] == ns(utc(2026, 1, 5, 9, 3, 30))  # when the first one ended
    assert await s.slots("slow", "missed") == [ns(utc(2026, 1, 5, 9, 2))]
    played = s.runner.of("slow-job")
    assert all(a.ended_at <= b.started_at for a, b in itertools.pairwise(played))  # one by one


async def test_overlap_terminate_kills_the_running_one_and_starts_anew(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("fresh", EVERY_MINUTE, overlap_action="terminate", job=Job(forever=True))
    await s.to(utc(2026, 1, 5, 9, 2, 30))
    runs = await s.runs("fresh")
    assert [r["state"] for r in runs] == ["killed", "running"]
    assert runs[1]["created_at"] == ns(utc(2026, 1, 5, 9, 2))
    first = s.runner.of("fresh-job")[0]
    assert first.killed_at == first.ended_at  # killed at the new slot, not later


async def test_overlap_allow_runs_them_side_by_side(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("wide", EVERY_MINUTE, overlap_action="allow", job=Job(duration=150))
    await s.to(utc(2026, 1, 5, 9, 3, 10))
    runs = await s.runs("wide")
    assert [r["state"] for r in runs] == ["running", "running", "running"]
    assert len(s.runner.running) == 3


async def test_a_manual_trigger_waits_for_the_running_one_with_overlap_wait(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("manual", None, overlap_action="wait", job=Job(duration=100))
    assert await s.scheduler.trigger("manual") is not None
    assert await s.scheduler.trigger("manual") is None  # queued behind the running one
    await advance(s.world.engine, 100)
    runs = await s.runs("manual")
    assert [r["trigger"] for r in runs] == ["manual", "manual"]
    assert runs[1]["created_at"] == ns(utc(2026, 1, 5, 9, 1, 40))


# -- pause, resume, continuous, clock steps -----------------------------------------------


async def test_a_paused_schedule_fires_nothing_and_resumes_from_now(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("p", EVERY_MINUTE)
    await s.to(utc(2026, 1, 5, 9, 1, 30))
    await s.pause("p", True)
    await s.to(utc(2026, 1, 5, 9, 5, 30))
    assert len(await s.runs("p")) == 1
    await s.pause("p", False)
    await s.to(utc(2026, 1, 5, 9, 6, 30))
    runs = await s.runs("p")
    # The slots of the pause are not made up for on resume.
    assert [r["slot"] for r in runs] == [ns(utc(2026, 1, 5, 9, 1)), ns(utc(2026, 1, 5, 9, 6))]


async def test_a_continuous_schedule_starts_again_a_buffer_after_each_start(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("loop", {"continuous_schedule": {"buffer_seconds": 10}}, job=Job(duration=4))
    await s.to(utc(2026, 1, 5, 9, 0, 35))
    runs = await s.runs("loop")
    assert [r["created_at"] for r in runs] == [
        ns(utc(2026, 1, 5, 9, 0, sec)) for sec in (0, 10, 20, 30)
    ]


async def test_a_continuous_run_longer_than_its_buffer_is_followed_when_it_ends(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    await s.put("loop", {"continuous_schedule": {"buffer_seconds": 10}}, job=Job(duration=25))
    await s.to(utc(2026, 1, 5, 9, 0, 55))
    starts = [r["created_at"] for r in await s.runs("loop")]
    assert starts == [ns(utc(2026, 1, 5, 9, 0, sec)) for sec in (0, 25, 50)]


async def test_a_wall_clock_stepped_back_an_hour_does_not_stop_the_schedule(make):
    s = await make(utc(2026, 1, 5, 9, 0))
    s.scheduler.clock_check = 30.0
    await s.put("tick", EVERY_MINUTE)
    await s.to(utc(2026, 1, 5, 9, 1, 30))
    s.clock.step_wall(-3600)  # 08:01:30
    await advance(s.world.engine, 90)  # not the hour it would take to reach 09:02 again
    runs = await s.runs("tick")
    # Planned again from the new now (08:02, when the loop looked): 08:03 is the next slot.
    assert [r["slot"] for r in runs] == [ns(utc(2026, 1, 5, 9, 1)), ns(utc(2026, 1, 5, 8, 3))]
    s.clock.step_wall(3600)  # put right: 09:03:00
    await advance(s.world.engine, 61)
    runs = await s.runs("tick")
    assert [r["slot"] for r in runs][2:] == [ns(utc(2026, 1, 5, 9, 3)), ns(utc(2026, 1, 5, 9, 4))]
    fired = await s.slots("tick", "fired")
    assert len(fired) == len(set(fired)) == len(runs)  # no slot fired twice
