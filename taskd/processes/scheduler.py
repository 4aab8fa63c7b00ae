"""The scheduler: turns schedules and manual triggers of definitions into runs.

It sleeps until the earliest due slot or a change (never polls), works out what is due with
the pure maths of ``taskd.processes.schedule``, and starts each run in the same transaction as the
ledger row of its slot, whose primary key makes a second fire of a slot impossible.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskd.engine.clock import Clock
from taskd.errors import BadRequest, Conflict, NotFound, TaskdError
from taskd.log import get_logger
from taskd.models import RunKind, Trigger
from taskd.processes import definitions as defs
from taskd.processes import schedule as sched
from taskd.processes import store as dq
from taskd.store.runs import RunPlan

if TYPE_CHECKING:
    from taskd.engine.engine import Engine
    from taskd.engine.graph import RunNode

log = get_logger("taskd.scheduler")

MAX_CATCH_UP = 1000  # slots looked at after a long downtime; "all" fires at most this many

# A slot whose fire failed (the store refused the write) is tried again after RETRY_FIRST
# seconds, doubling up to RETRY_MAX; the ledger's key keeps a retried slot from firing twice.
RETRY_FIRST = 0.5
RETRY_MAX = 30.0

# The loop looks at the wall clock at least this often, even with nothing due sooner, so a
# clock that was stepped (and stepped back) is noticed without waiting for a stale deadline.
CLOCK_CHECK = 30.0


def to_ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


@dataclass
class Entry:
    """What the loop knows of one definition's schedule."""

    name: str
    schedule: sched.Schedule | None
    paused: bool
    overlap: str
    missed_policy: str
    anchor: datetime  # slots after this one are still to come
    definition: dq.Definition | None = None  # as last stored: scheduled fires need no read
    next: datetime | None = None
    failures: int = 0  # fires in a row the store refused
    hold_until: float = 0.0  # loop time before which a failed fire is not tried again


class Scheduler:
    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        # The engine's clock unless told otherwise: every now, timer and wait of the loop goes
        # through it, so tests step time instead of waiting for it.
        self.clock = clock or engine.clock
        self.entries: dict[str, Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.clock_check = CLOCK_CHECK
        self._offset: float | None = None  # wall clock minus loop clock, to see steps back
        engine.run_finished.append(self._on_run_finished)

    async def start(self) -> None:
        definitions = await self.store.read(dq.all_definitions)
        last = await self.store.read(dq.last_slots)
        starts = await self.store.read(dq.last_starts)
        for d in definitions:
            self._load(d, last.get(d.name), starts.get(d.name))
        self._task = self.engine.supervisor.spawn("scheduler", self._loop)
        # Slots that were waiting and triggers still open when taskd stopped.
        pending = {r["definition"] for r in await self.store.read(dq.waiting_slots)}
        pending |= {r["definition"] for r in await self.store.read(dq.open_triggers)}
        for name in pending:
            self._spawn_drain(name)

    def _load(self, d: dq.Definition, last_slot: int | None, last_start: int | None) -> Entry:
        schedule = sched.parse_schedule(d.doc.get("schedule"))
        anchor = max(last_slot or 0, d.updated_at)
        entry = Entry(d.name, schedule, d.paused, d.doc["overlap_action"],
                      d.doc.get("missed_slots", sched.DEFAULT_MISSED_POLICY),
                      from_ns(anchor), d)  # fmt: skip
        if isinstance(schedule, sched.CronSchedule):
            entry.next = sched.next_fire(schedule, entry.anchor)
        elif isinstance(schedule, sched.ContinuousSchedule):
            since = from_ns(last_start) if last_start else None
            entry.next = sched.next_continuous(schedule, since, from_ns(d.updated_at))
        self.entries[d.name] = entry
        return entry

    async def refresh(self, name: str) -> None:
        """A definition was stored, paused, resumed or deleted: look at it again."""

        def read(db: Any) -> tuple[dq.Definition, int | None, int | None]:
            # Only this definition's newest slot and start: not the whole ledger.
            d = dq.get(db, name)
            return d, dq.last_slots(db, name).get(name), dq.last_starts(db, name).get(name)

        try:
            d, last, start = await self.store.read(read)
        except NotFound:
            self.entries.pop(name, None)
        else:
            self._load(d, last, start)
        self._wake.set()

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    # -- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        clock = self.clock
        while True:
            self._wake.clear()
            now = clock.now()
            mono = clock.time()
            self._check_clock(now, mono)
            due = [
                e for e in self.entries.values()
                if e.next is not None and e.next <= now and not e.paused and e.hold_until <= mono
            ]  # fmt: skip
            # All at once: their runs then share commits (group commit) instead of queueing
            # one fsync behind another, which is what keeps a busy second on time.
            await asyncio.gather(*(self._due_safely(e, now) for e in due))
            # Sleep on the loop's monotonic clock, never longer than clock_check.
            timeout = self.clock_check
            now, mono = clock.now(), clock.time()
            for e in self.entries.values():
                if e.next is None or e.paused:
                    continue
                wait = max((e.next - now).total_seconds(), e.hold_until - mono)
                timeout = min(timeout, max(0.0, wait))
            await clock.wait(self._wake, timeout)

    def _check_clock(self, now: datetime, mono: float) -> None:
        """After the wall clock was stepped back, plan every schedule again from its new now.

        Otherwise each schedule waits for the clock to reach its old next slot, firing nothing
        for as long as the step. Slots that fired before the step are in the ledger, so firing
        them again is refused there.
        """
        offset = now.timestamp() - mono
        stepped = self._offset is not None and offset < self._offset - 1.0
        self._offset = offset
        if not stepped:
            return
        log.warning("the wall clock went back; planning schedules again", seconds=offset)
        for entry in self.entries.values():
            if isinstance(entry.schedule, sched.CronSchedule):
                entry.anchor = min(entry.anchor, now)
                entry.next = sched.next_fire(entry.schedule, entry.anchor)
            elif isinstance(entry.schedule, sched.ContinuousSchedule) and entry.next is not None:
                entry.next = min(entry.next, now + timedelta(seconds=entry.schedule.buffer_seconds))

    async def _due_safely(self, entry: Entry, now: datetime) -> None:
        anchor, due = entry.anchor, entry.next
        try:
            await self._due(entry, now)
        except Exception as exc:
            # Keep the slot due and try it again later: a full disk or a busy store passes,
            # and the ledger refuses any slot that did fire before the failure.
            entry.failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** min(entry.failures - 1, 10))
            entry.anchor, entry.next = anchor, due
            entry.hold_until = self.clock.time() + delay
            log.warning("scheduling failed; trying again", definition=entry.name,
                        retry_in=delay, error=str(exc))  # fmt: skip
        else:
            entry.failures = 0
            entry.hold_until = 0.0

    async def _due(self, entry: Entry, now: datetime) -> None:
        schedule = entry.schedule
        if isinstance(schedule, sched.ContinuousSchedule):
            slot = entry.next
            assert slot is not None
            entry.next = None  # set again when its run starts
            await self._slot(entry, slot)
            return
        assert isinstance(schedule, sched.CronSchedule)
        slots, _ = sched.slots_between(schedule, entry.anchor, now, MAX_CATCH_UP)
        if not slots:
            entry.next = sched.next_fire(schedule, entry.anchor)
            return
        fire, missed = sched.plan_missed(slots, entry.missed_policy, MAX_CATCH_UP, now=now)
        entry.anchor = slots[-1]
        entry.next = sched.next_fire(schedule, max(entry.anchor, now))
        if missed:
            log.warning("missed schedule slots", definition=entry.name, count=len(missed),
                        first=missed[0].isoformat(), last=missed[-1].isoformat())  # fmt: skip
            slots = [(to_ns(s), "missed") for s in missed]
            await self.store.write(dq.record_slots, entry.name, slots, self.clock.now_ns())
        for slot in fire:
            await self._slot(entry, slot)

    async def _slot(self, entry: Entry, slot: datetime) -> None:
        async with self.lock(entry.name):
            active = self.active(entry.name)
            if active and entry.overlap == "wait":
                at = self.clock.now_ns()
                await self.store.write(waiting, entry.name, to_ns(slot), at)
                return
            if active and entry.overlap == "terminate":
                await self._terminate(active)
            await self._start(entry.name, Trigger.SCHEDULE, slot=to_ns(slot))

    async def _terminate(self, active: list[RunNode]) -> None:
        for run in active:
            await self.engine.kill_run(run.id, "replaced by a newer run (overlap_action terminate)")

    def active(self, name: str) -> list[RunNode]:
        return [
            r for r in self.engine.runs.values() if r.kind == RunKind.PROCESS and r.name == name
        ]

    async def _start(
        self, name: str, trigger: str, *, slot: int | None = None,
        trigger_id: int | None = None, task_filter: str | None = None,
    ) -> RunNode | None:  # fmt: skip
        entry = self.entries.get(name)
        if trigger == Trigger.SCHEDULE and entry is not None and entry.definition is not None:
            d = entry.definition
        else:
            d = await self.store.read(dq.get, name)
        at = self.clock.now_ns()
        plan = RunPlan(
            kind=RunKind.PROCESS, name=name, trigger=trigger, uuid=str(uuidlib.uuid4()),
            tasks=defs.templates(d.doc, task_filter), task_filter=task_filter,
            definition_version=d.version, extra={"slot": slot} if slot else {},
        )  # fmt: skip

        def also(db: Any, run_id: int) -> None:
            if slot is not None:
                dq.fire_slot(db, name, slot, run_id, at)
            if trigger_id is not None:
                dq.consume_trigger(db, trigger_id, run_id)

        try:
            run = await self.engine.submit(plan, also)
        except Conflict:
            log.info("slot already fired", definition=name, slot=slot)
            if slot is not None and entry is not None:
                self._rearm(entry, slot)
            return None
        if slot is not None:
            self.engine.metrics.scheduler_lag.observe(max(0.0, (self.clock.now_ns() - slot) / 1e9))
        if entry is not None and isinstance(entry.schedule, sched.ContinuousSchedule):
            entry.next = sched.next_continuous(entry.schedule, from_ns(at), self.clock.now())
            self._wake.set()
        log.info("run started", definition=name, run=run.id, trigger=str(trigger))
        return run

    def _rearm(self, entry: Entry, slot: int) -> None:
        """A continuous schedule whose slot had fired already counts on from that slot."""
        if isinstance(entry.schedule, sched.ContinuousSchedule) and entry.next is None:
            entry.next = sched.next_continuous(entry.schedule, from_ns(slot), self.clock.now())
            self._wake.set()

    # -- triggers and waiting slots ---------------------------------------------------------

    async def trigger(self, name: str, task_filter: str | None = None) -> RunNode | None:
        """A manual trigger: a run now, or (overlap wait) when the running one ends."""
        d = await self.store.read(dq.get, name)
        if task_filter is not None:
            names = {t["task_definition_name"] for t in d.doc["task_definitions"]}
            if task_filter not in names:
                raise BadRequest(f"process definition {name!r} has no task {task_filter!r}")
        async with self.lock(name):
            active = self.active(name)
            if active and d.doc["overlap_action"] == "wait":
                await self.store.write(dq.add_trigger, name, task_filter, self.clock.now_ns())
                return None
            if active and d.doc["overlap_action"] == "terminate":
                await self._terminate(active)
            return await self._start(name, Trigger.MANUAL, task_filter=task_filter)

    def _on_run_finished(self, run: RunNode) -> None:
        if run.kind == RunKind.PROCESS:
            self._spawn_drain(run.name)

    def _spawn_drain(self, name: str) -> None:
        # Supervised: a drain that fails for a passing reason (the store unavailable) is tried
        # again; one refused for good (definition deleted, job too big) waits for the next end.
        async def drain() -> None:
            try:
                await self._drain(name)
            except TaskdError as exc:
                if exc.status >= 500:
                    raise
                log.warning("a waiting run could not start", definition=name, error=exc.message)

        self.engine.supervisor.spawn(f"drain-{name}", drain, part="drain", once=True)

    async def _drain(self, name: str) -> None:
        """Start what waited for the previous run of a definition: a slot, else a trigger."""
        async with self.lock(name):
            if self.active(name) or self.engine.closing:
                return
            slots = [r for r in await self.store.read(dq.waiting_slots) if r["definition"] == name]
            if slots:
                await self._start(name, Trigger.SCHEDULE, slot=slots[-1]["slot"])
                return
            triggers = await self.store.read(dq.open_triggers, name)
            if triggers:
                t = triggers[0]
                await self._start(name, Trigger.MANUAL, trigger_id=t["id"],
                                  task_filter=t["task_filter"])  # fmt: skip

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def waiting(db: Any, name: str, slot: int, at: int) -> None:
    dq.record_slots(db, name, [(slot, "waiting")], at)
    dq.collapse_waiting(db, name, slot)
