"""The invariants of a chaos session, checked on the SQLite file once taskd has stopped.

Every acknowledged submission is there; every fired schedule slot has exactly one run and no
slot fired twice; every run, task and attempt ended, consistently; attempts of a task never
overlapped, neither in the store nor in what the jobs themselves wrote; a failed task used up
its attempts; every queue task was closed exactly once.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskd.models import RunState, TaskState, run_result
from tests.chaos.jobs import DEFINITIONS

TERMINAL_ATTEMPTS = ("exited", "timed_out", "killed", "lost", "start_failed")
RUN_TERMINAL = ("succeeded", "failed", "killed")


@dataclass
class Record:
    """What the clients did and were told."""

    dag_acked: dict[int, str] = field(default_factory=dict)  # runID -> tag
    dag_unsure: set[str] = field(default_factory=set)  # tags sent without an answer
    drove_acked: set[str] = field(default_factory=set)  # task ids
    drove_unsure: set[str] = field(default_factory=set)
    queue_acked: set[str] = field(default_factory=set)  # recipes
    queue_unsure: set[str] = field(default_factory=set)
    triggers_acked: Counter[str] = field(default_factory=Counter)  # definition -> count
    triggers_unsure: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)  # queue task -> acked closing releases
    closer: dict[int, int] = field(default_factory=dict)  # queue task -> worker that closed it
    leases: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "METHOD route status"
    server_errors: list[str] = field(default_factory=list)  # every 5xx but Drove's KILL 504
    kills: int = 0
    restarts: int = 0
    checks_while_down: int = 0


def check_store(
    db: sqlite3.Connection, rec: Record, timeline: Path, problems: list[str]
) -> dict[str, Any]:
    """Check every invariant the store can show; the figures it counted."""
    ok = [tuple(r) for r in db.execute("PRAGMA integrity_check")]
    if ok != [("ok",)]:
        problems.append(f"integrity_check: {ok}")
    if fk := db.execute("PRAGMA foreign_key_check").fetchall():
        problems.append(f"foreign_key_check: {[tuple(r) for r in fk][:5]}")

    runs = {r["id"]: r for r in db.execute("SELECT * FROM runs")}
    tasks = {r["id"]: r for r in db.execute("SELECT * FROM tasks")}
    attempts = db.execute("SELECT * FROM attempts ORDER BY task_id, number").fetchall()

    # Every acknowledged submission is there.
    names = {r["name"] for r in db.execute("SELECT name FROM definitions")}
    problems += [f"definition {n} missing" for n in DEFINITIONS if n not in names]
    dag_runs = {r["kind_no"]: r for r in runs.values() if r["kind"] == "dag"}
    for run_id, tag in rec.dag_acked.items():  # Daggy runIDs: numbers among DAG runs
        run = dag_runs.get(run_id)
        if run is None or run["kind"] != "dag" or run["name"] != tag:
            problems.append(f"acknowledged DAG run {run_id} ({tag}) missing or wrong: {run}")
    dag_tags = Counter(r["name"] for r in runs.values() if r["kind"] == "dag")
    problems += [f"DAG {t} stored {n} times" for t, n in dag_tags.items() if n > 1]
    drove = Counter(r["name"] for r in runs.values() if r["kind"] == "task")
    for task_id in rec.drove_acked:
        if drove[f"CHAOS/{task_id}"] != 1:
            n = drove[f"CHAOS/{task_id}"]
            problems.append(f"acknowledged Drove task {task_id} stored {n} times")
    manual = Counter(
        r["name"] for r in runs.values() if r["kind"] == "process" and r["trigger"] == "manual"
    )
    for name, acked in rec.triggers_acked.items():
        if not acked <= manual[name] <= acked + rec.triggers_unsure[name]:
            problems.append(
                f"{name}: {acked} triggers acknowledged (and "
                f"{rec.triggers_unsure[name]} unanswered) but {manual[name]} runs"
            )

    # The ledger: one run per fired slot, no slot fired twice, nothing left waiting.
    ledger = db.execute("SELECT * FROM ledger").fetchall()
    fired = {}
    for row in ledger:
        if row["status"] == "waiting":
            problems.append(f"slot {row['definition']}@{row['slot']} still waiting")
        if row["status"] != "fired":
            continue
        run = runs.get(row["run_id"])
        if run is None or run["name"] != row["definition"] or run["trigger"] != "schedule":
            problems.append(f"fired slot {tuple(row)} has no run of its own: {run}")
        elif json.loads(run["extra"]).get("slot") != row["slot"]:
            problems.append(f"fired slot {tuple(row)} points at the run of another slot")
        fired[row["run_id"]] = row
    slots = Counter()
    for run in runs.values():
        if run["kind"] == "process" and run["trigger"] == "schedule":
            slots[(run["name"], json.loads(run["extra"]).get("slot"))] += 1
            if run["id"] not in fired:
                problems.append(f"scheduled run {run['id']} has no fired slot in the ledger")
    problems += [f"slot {s} started {n} runs" for s, n in slots.items() if n > 1]
    if rows := db.execute("SELECT * FROM triggers WHERE run_id IS NULL").fetchall():
        problems.append(f"triggers never turned into runs: {[tuple(r) for r in rows]}")

    # Every run and task ended, consistently.
    for run in runs.values():
        if run["state"] not in RUN_TERMINAL or run["ended_at"] is None:
            problems.append(f"run {run['id']} ({run['kind']} {run['name']}) is {run['state']}")
    by_run: dict[int, list[sqlite3.Row]] = {}
    for task in tasks.values():
        by_run.setdefault(task["run_id"], []).append(task)
    for run_id, members in by_run.items():
        run = runs[run_id]
        expected = run_result((TaskState(t["state"]) for t in members), bool(run["kill_requested"]))
        if expected is None or expected != RunState(run["state"]):
            states = {t["name"]: t["state"] for t in members}
            problems.append(f"run {run_id} is {run['state']} but its tasks are {states}")

    # A failed task used up its attempts: a lost one was retried while attempts remained.
    for task in tasks.values():
        if task["state"] == "failed" and task["attempts"] != task["max_attempts"]:
            problems.append(f"task {task['id']} failed after {task['attempts']} of "
                            f"{task['max_attempts']} attempts")  # fmt: skip

    # Attempts: numbered 1..n, one after the other, never two at once.
    per_task: dict[int, list[sqlite3.Row]] = {}
    for a in attempts:
        per_task.setdefault(a["task_id"], []).append(a)
        if a["state"] not in TERMINAL_ATTEMPTS or a["ended_at"] is None:
            problems.append(f"attempt {a['uuid']} is still {a['state']}")
    for task_id, group in per_task.items():
        numbers = [a["number"] for a in group]
        if numbers != list(range(1, len(group) + 1)) or tasks[task_id]["attempts"] != len(group):
            problems.append(
                f"task {task_id} attempts numbered {numbers}, "
                f"task says {tasks[task_id]['attempts']}"
            )
        for before, after in itertools.pairwise(group):
            if before["ended_at"] is None or before["ended_at"] > after["created_at"]:
                problems.append(
                    f"task {task_id}: attempt {after['number']} began before "
                    f"attempt {before['number']} ended"
                )

    # What the local jobs themselves wrote: each ran as a known attempt, ended before taskd
    # recorded its end, and never alongside another attempt of its task.
    by_uuid = {a["uuid"]: a for a in attempts}
    seen: dict[str, dict[str, int]] = {}
    lines = timeline.read_text().splitlines() if timeline.exists() else []
    for line in lines:
        uuid, _pid, at, what = line.split()
        marks = seen.setdefault(uuid, {})
        marks[what] = max(marks.get(what, 0), int(at))  # a child ticks many times: its last
    for uuid, marks in seen.items():
        a = by_uuid.get(uuid)
        if a is None:
            problems.append(f"a job ran as attempt {uuid}, which the store does not know")
            continue
        if "start" in marks and marks["start"] < a["created_at"]:
            problems.append(f"attempt {uuid} started before it was recorded")
        if "end" in marks and a["ended_at"] is not None and marks["end"] > a["ended_at"]:
            late = (marks["end"] - a["ended_at"]) / 1e9
            problems.append(
                f"attempt {uuid} ({a['state']}: {a['reason']}) was still running "
                f"{late:.2f}s after taskd recorded its end"
            )
        if "tick" in marks and a["ended_at"] is not None and marks["tick"] > a["ended_at"]:
            # Its retry (if any) was created after that end: the child met the retry.
            late = (marks["tick"] - a["ended_at"]) / 1e9
            problems.append(
                f"a child of attempt {uuid} ({a['state']}: {a['reason']}) was still running "
                f"{late:.2f}s after taskd recorded the attempt's end"
            )

    # The work queue: every acknowledged task there, each closed exactly once.
    queue = {r["recipe"]: r for r in db.execute("SELECT * FROM queue_tasks")}
    problems += [f"acknowledged queue task {r} missing" for r in rec.queue_acked if r not in queue]
    problems += [
        f"queue task {r} stored but never sent"
        for r in queue
        if r not in rec.queue_acked and r not in rec.queue_unsure
    ]
    for row in queue.values():
        if row["status"] != 3 or row["closed_at"] is None or row["assignee"] is not None:
            problems.append(f"queue task {row['id']} not closed: {tuple(row)}")
        if rec.closes[row["id"]] > 1:
            problems.append(f"queue task {row['id']} closed {rec.closes[row['id']]} times")
        if rec.closes[row["id"]] and rec.closer[row["id"]] != row["closed_by"]:
            problems.append(
                f"queue task {row['id']} closed by {row['closed_by']}, "
                f"but worker {rec.closer[row['id']]} was told it closed it"
            )
    counted = db.execute("SELECT SUM(closed_task_count) FROM queue_projects").fetchone()[0]
    if counted != len(queue):
        problems.append(f"projects count {counted} closed tasks, {len(queue)} are")

    kinds = Counter(r["kind"] for r in runs.values())
    return {
        "runs": dict(kinds),
        "run_states": dict(Counter(f"{r['kind']}:{r['state']}" for r in runs.values())),
        "tasks": len(tasks),
        "attempts": len(attempts),
        "attempt_states": dict(Counter(a["state"] for a in attempts)),
        "containers": sum(1 for a in attempts if a["runner"] == "docker"),
        "swarm_services": sum(1 for a in attempts if a["runner"] == "swarm"),
        "local_jobs_seen": len(seen),
        "local_jobs_with_children": sum(1 for marks in seen.values() if "tick" in marks),
        "ledger": dict(Counter(r["status"] for r in ledger)),
        "acked": {
            "dag": len(rec.dag_acked),
            "drove": len(rec.drove_acked),
            "queue": len(rec.queue_acked),
            "triggers": sum(rec.triggers_acked.values()),
        },
        "unanswered": {
            "dag": len(rec.dag_unsure),
            "drove": len(rec.drove_unsure),
            "queue": len(rec.queue_unsure),
            "triggers": sum(rec.triggers_unsure.values()),
        },
        "queue_tasks": len(queue),
    }


def readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection: it never checkpoints or otherwise changes the file."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
