"""The dashboard's reads: a bounded number of indexed queries a page, whatever the store's size.

Every function takes a read-only connection (``store.read(fn, ...)``) and returns plain dicts.
Lists are capped and paged by key (never OFFSET), and per-definition figures come from
correlated subqueries that walk one index range each, so a page is one statement, not one
per row.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from taskd.errors import NotFound

STRIP = 20  # runs in a definition's strip (and the window for "usual" durations)
PAGE = 50
GROUP_OVER = 40  # a template expanded into more tasks than this is drawn as one group node
KINDS = ("process", "dag", "task")


def _rows(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    return [dict(r) for r in cur.fetchall()]


def _recent(alias: str) -> str:
    """The last STRIP runs of a definition as a JSON array, newest first (one index range)."""
    return f"""(SELECT json_group_array(json_array(state, started_at, ended_at, uuid)) FROM
        (SELECT state, started_at, ended_at, uuid FROM runs
          WHERE kind = 'process' AND name = {alias}.name ORDER BY created_at DESC LIMIT {STRIP}))"""


def definitions(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every definition with its schedule, task count, managing file and its last runs.

    Documents can be large (a definition of many tasks); SQLite picks out the few fields
    the list shows instead of the whole document being parsed here.
    """
    rows = _rows(
        db.execute(
            "SELECT d.name, d.version, d.paused, d.updated_at,"
            " json_extract(d.doc, '$.schedule') AS schedule,"
            " json_array_length(d.doc, '$.task_definitions') AS task_count,"
            " json_extract(d.doc, '$.managed_by_file') AS managed_by_file,"
            f" {_recent('d')} AS recent FROM definitions d ORDER BY d.name"
        )
    )
    for r in rows:
        r["schedule"] = orjson.loads(r["schedule"]) if r["schedule"] else None
        r["recent"] = orjson.loads(r["recent"] or "[]")
    return rows


def definition(db: sqlite3.Connection, name: str) -> dict[str, Any]:
    """One definition: its document, its last runs and its newest ledger slots."""
    rows = _rows(
        db.execute(
            f"SELECT d.name, d.version, d.doc, d.paused, d.updated_at, {_recent('d')} AS recent"
            " FROM definitions d WHERE d.name = ?",
            (name,),
        )
    )
    if not rows:
        raise NotFound(f"no process definition named {name!r}")
    out = rows[0]
    out["doc"] = orjson.loads(out["doc"])
    out["recent"] = orjson.loads(out["recent"] or "[]")
    out["ledger"] = _rows(
        db.execute(
            "SELECT l.slot, l.status, l.recorded_at, r.uuid, r.state, r.started_at"
            " FROM ledger l LEFT JOIN runs r ON r.id = l.run_id WHERE l.definition = ?"
            " ORDER BY l.slot DESC LIMIT 30",
            (name,),
        )
    )
    return out


def active_runs(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Runs queued or running, each with the durations of its name's last finished runs."""
    rows = _rows(
        db.execute(f"""
        SELECT r.uuid, r.kind, r.name, r.state, r.started_at, r.created_at,
          (SELECT json_group_array(d) FROM
            (SELECT p.ended_at - p.started_at AS d FROM runs p
              WHERE p.kind = r.kind AND p.name = r.name AND p.ended_at IS NOT NULL
                AND p.started_at IS NOT NULL
              ORDER BY p.created_at DESC LIMIT {STRIP})) AS durations
        FROM runs r WHERE r.state IN ('queued', 'running') ORDER BY r.id LIMIT 500""")
    )
    for r in rows:
        r["durations"] = orjson.loads(r["durations"] or "[]")
    return rows


def slot_problems(db: sqlite3.Connection, since: int, late_ns: int) -> list[dict[str, Any]]:
    """Slots after ``since`` that were missed, or that started later than ``late_ns``.

    CROSS JOIN keeps the order: one primary-key range of the ledger per definition.
    """
    return _rows(
        db.execute(
            """
        SELECT l.definition, l.slot, l.status, r.uuid, r.started_at FROM definitions d
          CROSS JOIN ledger l ON l.definition = d.name AND l.slot > ?
          LEFT JOIN runs r ON r.id = l.run_id
         WHERE l.status = 'missed' OR (r.started_at IS NOT NULL AND r.started_at - l.slot > ?)
         ORDER BY l.slot DESC LIMIT 100""",
            (since, late_ns),
        )
    )


def expired_leases(db: sqlite3.Connection, now: int) -> list[dict[str, Any]]:
    """Work-queue tasks whose lease ran out and that a sweep has not given back yet."""
    return _rows(
        db.execute(
            """
        SELECT t.id, t.project, p.name AS project_name, t.assignee, t.lease_expires_at
          FROM queue_tasks t JOIN queue_projects p ON p.id = t.project
         WHERE t.lease_expires_at IS NOT NULL AND t.lease_expires_at < ?
         ORDER BY t.lease_expires_at LIMIT 50""",
            (now,),
        )
    )


def counts_since(db: sqlite3.Connection, since: int) -> dict[str, int]:
    """Runs created since ``since`` by state (all families)."""
    marks = ",".join("?" * len(KINDS))
    cur = db.execute(
        f"SELECT state, COUNT(*) FROM runs WHERE kind IN ({marks}) AND created_at >= ?"
        " GROUP BY state",
        (*KINDS, since),
    )
    return {state: n for state, n in cur.fetchall()}


def run_page(
    db: sqlite3.Connection,
    *,
    kind: str | None,
    name: str | None,
    state: str | None,
    since: int | None,
    until: int | None,
    before: int | None,
) -> list[dict[str, Any]]:
    """One page of runs, newest first, keyed by id (``before``: the last id of the page before)."""
    where, args = [], []
    if kind:
        where.append("kind = ?")
        args.append(kind)
    if name:
        where.append("name = ?")
        args.append(name)
    if state:
        where.append("state = ?")
        args.append(state)
    if since is not None:
        where.append("created_at >= ?")
        args.append(since)
        low = db.execute(
            "SELECT id FROM runs WHERE created_at >= ? ORDER BY created_at LIMIT 1", (since,)
        ).fetchone()
        where.append("id >= ?")  # ids grow with creation: the time range as an id range
        args.append(low[0] if low else 2**62)
    if until is not None:
        where.append("created_at < ?")
        args.append(until)
        high = db.execute(
            "SELECT id FROM runs WHERE created_at < ? ORDER BY created_at DESC LIMIT 1", (until,)
        ).fetchone()
        where.append("id <= ?")
        args.append(high[0] if high else -1)
    if before is not None:
        where.append("id < ?")
        args.append(before)
    sql = (
        "SELECT id, uuid, kind, kind_no, name, trigger, state, created_at, started_at, ended_at,"
        " (SELECT COUNT(*) FROM tasks t WHERE t.run_id = runs.id) AS tasks FROM runs"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY id DESC LIMIT {PAGE + 1}"
    return _rows(db.execute(sql, args))


def run(db: sqlite3.Connection, run_uuid: str) -> dict[str, Any]:
    """One run by uuid, with its task counts by state."""
    row = db.execute("SELECT * FROM runs WHERE uuid = ?", (run_uuid,)).fetchone()
    if row is None:
        raise NotFound(f"no run {run_uuid}")
    out = dict(row)
    out["extra"] = orjson.loads(out["extra"] or "{}")
    out["params"] = orjson.loads(out["params"] or "{}")
    cur = db.execute(
        "SELECT state, COUNT(*) FROM tasks WHERE run_id = ? GROUP BY state", (row["id"],)
    )
    out["task_counts"] = dict(cur.fetchall())
    return out


def graph(db: sqlite3.Connection, run_id: int) -> dict[str, Any]:
    """The run's DAG: tasks, or one group node per template expanded into many tasks."""
    tasks = _rows(
        db.execute(
            "SELECT id, name, template, state, attempts, (SELECT a.uuid FROM attempts a"
            " WHERE a.task_id = tasks.id ORDER BY a.number DESC LIMIT 1) AS attempt"
            " FROM tasks WHERE run_id = ? ORDER BY id",
            (run_id,),
        )
    )
    per_template: dict[str, int] = {}
    for t in tasks:
        per_template[t["template"]] = per_template.get(t["template"], 0) + 1
    node_of: dict[int, str] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for t in tasks:
        if per_template[t["template"]] > GROUP_OVER:
            key = "g:" + t["template"]
            node = nodes.setdefault(
                key, {"id": key, "label": t["template"], "group": True, "count": 0, "states": {}}
            )
            node["count"] += 1
            node["states"][t["state"]] = node["states"].get(t["state"], 0) + 1
        else:
            key = f"t:{t['id']}"
            nodes[key] = {
                "id": key,
                "label": t["name"],
                "state": t["state"],
                "task": t["id"],
                "attempts": t["attempts"],
                "attempt": t["attempt"],  # its newest attempt: the node links to its logs
            }
        node_of[t["id"]] = key
    edges: set[tuple[str, str]] = set()
    for parent, child in db.execute("SELECT parent, child FROM edges WHERE run_id = ?", (run_id,)):
        a, b = node_of.get(parent), node_of.get(child)
        if a and b and a != b:
            edges.add((a, b))
    return {
        "nodes": list(nodes.values()),
        "edges": sorted(edges),
        "groups": {t["id"]: node_of[t["id"]] for t in tasks if node_of[t["id"]][0] == "g"},
    }


def attempts(db: sqlite3.Connection, run_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The run's attempts (newest first, capped) with their task's name."""
    return _rows(
        db.execute(
            """
        SELECT a.id, a.uuid, a.number, a.state, a.succeeded, a.exit_code, a.reason, a.runner,
               a.container_id,
               a.host, a.created_at, a.started_at, a.ended_at, t.name AS task, t.state AS task_state
          FROM attempts a JOIN tasks t ON t.id = a.task_id
         WHERE a.run_id = ? ORDER BY a.id DESC LIMIT ?""",
            (run_id, limit),
        )
    )


def entries(db: sqlite3.Connection, attempt_ids: list[int]) -> dict[int, dict[str, list]]:
    """Log and metadata entries of some attempts (two queries, however many attempts)."""
    out: dict[int, dict[str, list]] = {i: {"logs": [], "metadata": []} for i in attempt_ids}
    if not attempt_ids:
        return out
    marks = ",".join("?" * len(attempt_ids))
    for table, key, cols in (
        ("log_entries", "logs", "source, message"),
        ("metadata_entries", "metadata", "key, value"),
    ):
        cur = db.execute(
            f"SELECT attempt_id, at, {cols} FROM {table} WHERE attempt_id IN ({marks})"
            " ORDER BY at LIMIT 2000",
            attempt_ids,
        )
        for row in cur:
            out[row[0]][key].append(tuple(row)[1:])
    return out


def attempt(db: sqlite3.Connection, attempt_uuid: str) -> dict[str, Any]:
    """One attempt with its run and task names."""
    row = db.execute(
        """
        SELECT a.id, a.uuid, a.number, a.state, a.exit_code, a.started_at, a.ended_at,
               a.run_id, t.name AS task, r.uuid AS run_uuid, r.name AS run_name
          FROM attempts a JOIN tasks t ON t.id = a.task_id JOIN runs r ON r.id = a.run_id
         WHERE a.uuid = ?""",
        (attempt_uuid,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no task attempt {attempt_uuid}")
    return dict(row)


def output_after(
    db: sqlite3.Connection, attempt_id: int, after: int, limit: int = 200
) -> tuple[list[tuple[int, str, int, bytes]], bool]:
    """Output chunks after id ``after`` (id, stream, offset, data), and whether it still runs."""
    chunks = [
        tuple(r)
        for r in db.execute(
            "SELECT id, stream, offset, data FROM output_chunks WHERE attempt_id = ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (attempt_id, after, limit),
        )
    ]
    row = db.execute("SELECT ended_at FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
    return chunks, row is not None and row["ended_at"] is None  # type: ignore[return-value]


def queue_projects(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Work-queue projects with their task counts by status (one index range each)."""
    rows = _rows(
        db.execute("""
        SELECT p.id, p.name, p.paused, p.closed_task_count,
          (SELECT COUNT(*) FROM queue_tasks t WHERE t.project = p.id AND t.status = 1) AS new,
          (SELECT COUNT(*) FROM queue_tasks t WHERE t.project = p.id AND t.status = 2) AS failed,
          (SELECT COUNT(*) FROM queue_tasks t WHERE t.project = p.id AND t.status = 1
              AND t.assignee IS NOT NULL) AS leased,
          (SELECT json_group_array(json_array(taken_at, new_task_count, failed_task_count,
                  closed_task_count)) FROM
             (SELECT * FROM queue_snapshots s WHERE s.project = p.id
               ORDER BY taken_at DESC LIMIT 48)) AS history
          FROM queue_projects p ORDER BY p.name LIMIT 200""")
    )
    for r in rows:
        r["history"] = list(reversed(orjson.loads(r["history"] or "[]")))
    return rows


def queue_workers(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Workers (newest first, capped) and pending access requests."""
    return _rows(
        db.execute(
            "SELECT id, alias, paused, closed_task_count, created_at"
            " FROM queue_workers ORDER BY id DESC LIMIT 100"
        )
    )


def access_requests(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Pending access requests, with project and worker names."""
    return _rows(
        db.execute("""
        SELECT a.project, p.name AS project_name, a.worker, w.alias, a.assign, a.submit,
               a.created_at
          FROM queue_access a JOIN queue_projects p ON p.id = a.project
          JOIN queue_workers w ON w.id = a.worker
         WHERE a.request = 1 ORDER BY a.created_at LIMIT 100""")
    )
