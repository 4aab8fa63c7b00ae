"""The notification outbox and alert states.

``on_run_end`` runs inside the engine's transaction that ends a run, so the messages it
queues are committed with the state change that caused them, or not at all.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from taskd.errors import NotFound
from taskd.notify import rules

HISTORY = 50  # finished runs looked at for streaks and usual durations


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def on_run_end(db: sqlite3.Connection, run_id: int, at: int) -> int:
    """Queue what a finished process run sends; returns how many messages were queued."""
    run = db.execute(
        "SELECT id, uuid, kind, name, state, started_at, created_at, ended_at FROM runs"
        " WHERE id = ?", (run_id,),
    ).fetchone()  # fmt: skip
    if run is None or run["kind"] != "process":
        return 0
    row = db.execute("SELECT doc FROM definitions WHERE name = ?", (run["name"],)).fetchone()
    if row is None:
        return 0
    doc = orjson.loads(row["doc"])
    channels, alerts = doc.get("notifications") or [], doc.get("alerts") or {}
    if not channels and not alerts:
        return 0
    history = db.execute(
        # "+": walk this name's runs newest first (runs_kind_name), never all runs in a state.
        "SELECT state, started_at, created_at, ended_at FROM runs WHERE kind = 'process'"
        " AND name = ? AND +id < ? AND +state IN ('succeeded', 'failed', 'killed')"
        " ORDER BY created_at DESC, id DESC LIMIT ?", (run["name"], run_id, HISTORY),
    ).fetchall()  # fmt: skip
    previous = history[0]["state"] if history else None
    current = run["state"]
    before = rules.streak([h["state"] for h in history])
    failures = before + 1 if current == "failed" else 0
    payload = {
        "definition": run["name"], "process_id": run["uuid"], "status": current,
        "previous_status": previous, "consecutive_failures": failures,
        "started_at": run["started_at"], "ended_at": run["ended_at"],
    }  # fmt: skip
    q = Queue(db, run["name"], run_id, at, channels)
    for n in channels:
        ((kind, cfg),) = n.items()
        if kind == "pagerduty":
            need = cfg.get("num_consecutive_failures", 1)
            if current == "failed" and failures >= need:
                q.add(kind, cfg, "trigger", {**payload, "dedup_key": f"taskd/{run['name']}"})
            elif current == "succeeded" and before >= need:
                q.add(kind, cfg, "resolve", {**payload, "dedup_key": f"taskd/{run['name']}"})
        elif rules.wants(cfg.get("notify_when", "on_state_change_and_failures"), previous, current):
            q.add(kind, cfg, "notify", payload)
    need = alerts.get("consecutive_failures")
    if need:
        if failures >= need:
            q.fire("consecutive_failures", f"{failures} runs in a row failed", payload)
        elif current == "succeeded":
            q.resolve("consecutive_failures", "a run succeeded", payload)
    if alerts.get("longer_than_usual") and run["ended_at"] and run["started_at"]:
        took = (run["ended_at"] - run["started_at"]) / 1e9
        usual = usual_seconds(db, run["name"], run_id)
        if usual is not None and took > usual:
            q.fire("longer_than_usual", f"ran {took:.1f}s; usually at most {usual:.1f}s", payload)
        elif usual is not None:
            q.resolve("longer_than_usual", f"ran {took:.1f}s, within the usual", payload)
    if current == "succeeded" and alerts.get("dead_man_seconds"):
        q.resolve("dead_man", "a run succeeded", payload)
    return q.count


class Queue:
    """Adds outbox rows (and alert state) for one definition inside one transaction."""

    def __init__(self, db: sqlite3.Connection, definition: str, run_id: int | None, at: int,
                 channels: list[dict[str, Any]]) -> None:  # fmt: skip
        self.db, self.definition, self.run_id, self.at = db, definition, run_id, at
        self.channels = channels
        self.count = 0

    def add(self, kind: str, cfg: dict[str, Any], event: str, payload: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO outbox (definition, run_id, channel, target, event, payload, next_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.definition, self.run_id, kind, _dumps(cfg), event, _dumps(payload), self.at,
             self.at),
        )  # fmt: skip
        self.count += 1

    def _broadcast(self, event: str, alert: str, detail: str, payload: dict[str, Any]) -> None:
        body = {**payload, "alert": alert, "detail": detail,
                "dedup_key": f"taskd/{self.definition}/{alert}"}  # fmt: skip
        for n in self.channels:
            ((kind, cfg),) = n.items()
            if cfg.get("notify_when") == "never":
                continue
            if kind == "pagerduty":
                self.add(kind, cfg, "trigger" if event == "alert" else "resolve", body)
            else:
                self.add(kind, cfg, event, body)

    def fire(self, alert: str, detail: str, payload: dict[str, Any]) -> bool:
        """Fire ``alert`` unless it already fires (once per episode)."""
        cur = self.db.execute(
            "INSERT INTO alerts (definition, kind, state, since, detail)"
            " VALUES (?, ?, 'firing', ?, ?) ON CONFLICT (definition, kind) DO UPDATE SET"
            " state = 'firing', since = excluded.since, detail = excluded.detail"
            " WHERE alerts.state != 'firing'",
            (self.definition, alert, self.at, detail),
        )
        if cur.rowcount:
            self._broadcast("alert", alert, detail, payload)
        return bool(cur.rowcount)

    def resolve(self, alert: str, detail: str, payload: dict[str, Any]) -> bool:
        cur = self.db.execute(
            "UPDATE alerts SET state = 'resolved', since = ?, detail = ?"
            " WHERE definition = ? AND kind = ? AND state = 'firing'",
            (self.at, detail, self.definition, alert),
        )
        if cur.rowcount:
            self._broadcast("alert_resolved", alert, detail, payload)
        return bool(cur.rowcount)


# -- the delivery worker's side -----------------------------------------------------------


def due(db: sqlite3.Connection, now: int, limit: int = 50) -> list[sqlite3.Row]:
    return db.execute(
        "SELECT * FROM outbox WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id"
        " LIMIT ?", (now, limit),
    ).fetchall()  # fmt: skip


def next_due(db: sqlite3.Connection) -> int | None:
    return db.execute("SELECT MIN(next_at) FROM outbox WHERE state = 'pending'").fetchone()[0]


def delivered(db: sqlite3.Connection, outbox_id: int, at: int) -> None:
    db.execute(
        "UPDATE outbox SET state = 'delivered', tries = tries + 1, delivered_at = ?,"
        " last_error = NULL WHERE id = ?", (at, outbox_id),
    )  # fmt: skip


def failed(db: sqlite3.Connection, outbox_id: int, error: str, next_at: int | None) -> None:
    """A try failed: again at ``next_at``, or given up (None)."""
    db.execute(
        "UPDATE outbox SET tries = tries + 1, last_error = ?, next_at = COALESCE(?, next_at),"
        " state = CASE WHEN ? IS NULL THEN 'failed' ELSE state END WHERE id = ?",
        (error[:1000], next_at, next_at, outbox_id),
    )


def history(db: sqlite3.Connection, definition: str, limit: int = 100) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT o.*, r.uuid AS process_id FROM outbox o LEFT JOIN runs r ON r.id = o.run_id"
        " WHERE o.definition = ? ORDER BY o.id DESC LIMIT ?", (definition, limit),
    ).fetchall()  # fmt: skip
    return [dict(r) for r in rows]


def alert_rows(db: sqlite3.Connection, definition: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT * FROM alerts WHERE definition = ? ORDER BY kind", (definition,))
    return [dict(r) for r in rows]


def clock_alerts(db: sqlite3.Connection, now: int) -> tuple[list[tuple], int | None]:
    """What time alone changes in the alerts (dead man, late start), read-only.

    Returns (actions (definition, fire|resolve, kind, detail, payload), the next time one may
    fire: ns or None). ``apply_clock_alerts`` writes them; firing and resolving are
    conditional, so an action made stale by a concurrent run's end changes nothing.
    """
    actions: list[tuple] = []
    soonest = None
    rows = db.execute(
        "SELECT d.name, d.doc, d.created_at FROM definitions d WHERE d.paused = 0 AND"
        " (instr(d.doc, '\"dead_man_seconds\"') OR instr(d.doc, '\"late_start_seconds\"')"
        " OR instr(d.doc, '\"longer_than_usual\"'))"
    ).fetchall()
    firing = {(r["definition"], r["kind"]) for r in db.execute(
        "SELECT definition, kind FROM alerts WHERE state = 'firing'")}  # fmt: skip
    for d in rows:
        alerts = orjson.loads(d["doc"]).get("alerts") or {}
        dead, late = alerts.get("dead_man_seconds"), alerts.get("late_start_seconds")
        payload = {"definition": d["name"]}
        if dead:
            last = db.execute(
                "SELECT ended_at FROM runs WHERE kind = 'process' AND name = ?"
                " AND +state = 'succeeded' ORDER BY created_at DESC LIMIT 1", (d["name"],),
            ).fetchone()  # fmt: skip
            last = last[0] if last else None
            deadline = max(last or 0, d["created_at"]) + int(dead * 1e9)
            if now < deadline:
                soonest = deadline if soonest is None else min(soonest, deadline)
            elif (d["name"], "dead_man") not in firing:
                actions.append((d["name"], "fire", "dead_man",
                                f"no successful run for {dead:g} seconds", payload))  # fmt: skip
        if alerts.get("longer_than_usual") and (d["name"], "longer_than_usual") not in firing:
            # Said while it runs, not only once it ends (a hung job may never end).
            deadline = overdue(db, d["name"])
            if deadline is not None and now >= deadline:
                actions.append((d["name"], "fire", "longer_than_usual",
                                "still running, longer than usual", payload))  # fmt: skip
            elif deadline is not None:
                soonest = deadline if soonest is None else min(soonest, deadline)
        if late:
            slot = db.execute(
                "SELECT l.slot, r.started_at FROM ledger l LEFT JOIN runs r ON r.id = l.run_id"
                " WHERE l.definition = ? AND l.slot <= ? ORDER BY l.slot DESC LIMIT 1",
                (d["name"], now),
            ).fetchone()
            if slot is None:
                continue
            deadline = slot["slot"] + int(late * 1e9)
            started = slot["started_at"]
            on_time = started is not None and started <= deadline
            is_firing = (d["name"], "late_start") in firing
            if on_time and is_firing:
                actions.append((d["name"], "resolve", "late_start",
                                "the last slot started in time", payload))  # fmt: skip
            elif not on_time and now >= deadline and not is_firing:
                actions.append((d["name"], "fire", "late_start",
                                f"a slot did not start within {late:g} seconds",
                                {**payload, "slot": slot["slot"]}))  # fmt: skip
            elif not on_time and now < deadline:
                soonest = deadline if soonest is None else min(soonest, deadline)
    return actions, soonest


def usual_seconds(db: sqlite3.Connection, name: str, before_id: int | None = None) -> float | None:
    """How long the definition's runs usually take at most: the p95 of its recent successful
    runs plus a margin (None: too few runs to say)."""
    rows = db.execute(
        "SELECT started_at, ended_at FROM runs WHERE kind = 'process' AND name = ?"
        " AND +state = 'succeeded' AND +id < ? AND started_at IS NOT NULL"
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        (name, before_id if before_id is not None else 1 << 62, rules.USUAL_WINDOW),
    ).fetchall()
    usual = rules.p95([(r["ended_at"] - r["started_at"]) / 1e9 for r in rows])
    return None if usual is None else rules.usual_limit(usual)


def overdue(db: sqlite3.Connection, name: str) -> int | None:
    """When the oldest running run of a definition passes its usual duration (ns)."""
    # Through the few running runs (runs_kind_state), not every run of the name.
    row = db.execute(
        "SELECT MIN(started_at) FROM runs WHERE kind = 'process' AND +name = ?"
        " AND state = 'running' AND started_at IS NOT NULL", (name,),
    ).fetchone()  # fmt: skip
    if row is None or row[0] is None:
        return None
    usual = usual_seconds(db, name)
    return None if usual is None else row[0] + int(usual * 1e9)


def apply_clock_alerts(db: sqlite3.Connection, actions: list[tuple], now: int) -> int:
    """Fire and resolve what ``clock_alerts`` found; returns the messages queued."""
    queued = 0
    for name, action, kind, detail, payload in actions:
        row = db.execute("SELECT doc FROM definitions WHERE name = ?", (name,)).fetchone()
        if row is None:
            continue
        q = Queue(db, name, None, now, orjson.loads(row["doc"]).get("notifications") or [])
        (q.fire if action == "fire" else q.resolve)(kind, detail, payload)
        queued += q.count
    return queued


def oldest_done(db: sqlite3.Connection) -> int | None:
    """When the oldest message that is no longer pending was queued."""
    return db.execute("SELECT MIN(created_at) FROM outbox WHERE state != 'pending'").fetchone()[0]


def prune(db: sqlite3.Connection, before: int, limit: int = 500) -> int:
    """Delete up to ``limit`` delivered or given-up messages queued before ``before``."""
    return db.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state != 'pending'"
        " AND created_at < ? ORDER BY id LIMIT ?)", (before, limit),
    ).rowcount  # fmt: skip


def queue_test(db: sqlite3.Connection, definition: str, at: int) -> int:
    """Queue one test message per channel of a definition; returns how many."""
    row = db.execute("SELECT doc FROM definitions WHERE name = ?", (definition,)).fetchone()
    channels = orjson.loads(row["doc"]).get("notifications") or [] if row else []
    q = Queue(db, definition, None, at, channels)
    for n in channels:
        ((kind, cfg),) = n.items()
        event = "trigger" if kind == "pagerduty" else "test"
        q.add(kind, cfg, event, {"definition": definition, "test": True,
                                 "dedup_key": f"taskd/{definition}/test"})  # fmt: skip
    return q.count


def definition_exists(db: sqlite3.Connection, name: str) -> None:
    """NotFound unless a process definition of that name exists."""
    if db.execute("SELECT 1 FROM definitions WHERE name = ?", (name,)).fetchone() is None:
        raise NotFound(f"no process definition named {name!r}")
