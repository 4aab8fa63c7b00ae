"""The dashboard's reads stay bounded: indexed plans, and no query per row (no N+1)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from taskd.http.keys import SERVICES
from taskd.store.migrations import migrate
from taskd.web import store as wq
from tests.conftest import ADMIN

NS = 10**9


@pytest.fixture
def db(tmp_path):
    conn = sqlite3.connect(tmp_path / "plans.db")
    conn.row_factory = sqlite3.Row
    migrate(conn)
    yield conn
    conn.close()


def plan(conn: sqlite3.Connection, fn, *args, **kw) -> list[str]:
    """The query plans of every statement ``fn`` runs."""
    seen: list[str] = []
    conn.set_trace_callback(
        lambda sql: seen.append(sql) if sql.lstrip().startswith(("SELECT", "\n")) else None
    )
    fn(conn, *args, **kw)
    conn.set_trace_callback(None)
    steps = []
    for sql in seen:
        if "EXPLAIN" in sql:
            continue
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()  # values already bound
        steps += [r["detail"] for r in rows]
    return steps


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"state": "failed"},
        {"name": "nightly"},
        {"kind": "task"},
        {"kind": "process", "state": "failed"},
        {"kind": "process", "name": "nightly"},
        {"since": 5 * NS, "until": 9 * NS},
        {"state": "killed", "since": 5 * NS},
    ],
)
def test_run_pages_walk_an_index_newest_first(db, filters):
    """Every filter of the runs list reads one index range in id order (no sort of all rows)."""
    args = {"kind": None, "name": None, "state": None, "since": None, "until": None}
    steps = plan(db, wq.run_page, **{**args, **filters}, before=10**6)
    for step in steps:
        assert not (step.startswith("SCAN runs") and "INDEX" not in step and filters), steps
        assert "TEMP B-TREE" not in step or filters.get("name"), steps


def test_overview_and_definition_reads_use_indexes(db):
    for fn, args in (
        (wq.definitions, ()),
        (wq.active_runs, ()),
        (wq.slot_problems, (0, 1)),
        (wq.expired_leases, (0,)),
        (wq.counts_since, (0,)),
        (wq.queue_projects, ()),
    ):
        for step in plan(db, fn, *args):
            if step.startswith("SCAN"):
                # Only the small tables are walked whole: definitions, projects, a CTE result.
                assert any(
                    t in step
                    for t in ("definitions", "queue_projects", "SUBQUERY", "(subquery", " p", " d")
                ), (fn.__name__, step)
                assert "runs" not in step.split(" USING")[0] or "INDEX" in step, (fn.__name__, step)


def define(name: str, script: str = "true") -> dict:
    return {
        "process_definition_name": name,
        "task_definitions": [
            {
                "task_definition_name": "a",
                "executable": {"shell_script_command": {"script": script}},
            }
        ],
    }


async def count_selects(client, path: str) -> int:
    store = client.app[SERVICES].store
    seen: list[str] = []
    original = store._reader

    def traced():
        conn = original()
        conn.set_trace_callback(seen.append)
        return conn

    store._reader = traced
    try:
        resp = await client.get(path)
        assert resp.status == 200, await resp.text()
        await resp.read()
    finally:
        store._reader = original
    return sum(1 for s in seen if s.lstrip().upper().startswith("SELECT"))


async def test_pages_make_as_many_queries_for_many_definitions_as_for_few(make_client):
    client = await make_client()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    resp = await client.post("/ui/login", data={"token": ADMIN, "next": "/"}, allow_redirects=False)
    assert resp.status == 303

    async def add(names):
        for name in names:
            r = await client.put(
                f"/api/process_definitions/{name}", json=define(name), headers=headers
            )
            assert r.status == 200
            r = await client.post(f"/api/process_definitions/{name}/trigger", headers=headers)
            assert r.status == 204
        while True:  # let the runs end, so the engine reads nothing while pages are counted
            r = await client.get("/api/processes?max_records=1000", headers=headers)
            if all(p["status"] != "running" for p in await r.json()):
                break
            await asyncio.sleep(0.05)

    await add(["d0", "d1"])
    pages = ["/", "/ui/definitions", "/ui/runs", "/ui/queue", "/ui/containers"]
    few = {p: min([await count_selects(client, p) for _ in range(2)]) for p in pages}
    await add([f"e{i}" for i in range(12)])
    many = {p: min([await count_selects(client, p) for _ in range(2)]) for p in pages}
    assert many == few
    assert max(few.values()) <= 10


def test_a_large_fan_out_is_drawn_as_one_group_node_with_counts(db):
    db.execute(
        "INSERT INTO runs (id, uuid, kind, name, trigger, state, created_at, updated_at)"
        " VALUES (1, 'u', 'dag', 'fan', 'api', 'running', 0, 0)"
    )
    tasks = [(1, "start", "start", "succeeded")]
    tasks += [
        (2 + i, f"work_{i}", "work", "succeeded" if i < 9000 else "running") for i in range(10_000)
    ]
    tasks.append((10_002, "end", "end", "waiting"))
    db.executemany(
        "INSERT INTO tasks (id, run_id, name, template, state, job, max_attempts,"
        " updated_at) VALUES (?, 1, ?, ?, ?, '{}', 1, 0)",
        tasks,
    )
    edges = [(1, t, 1) for t in range(2, 10_002)] + [(t, 10_002, 1) for t in range(2, 10_002)]
    db.executemany("INSERT INTO edges (run_id, parent, child, required) VALUES (1, ?, ?, ?)", edges)
    g = wq.graph(db, 1)
    assert len(g["nodes"]) == 3
    group = next(n for n in g["nodes"] if n.get("group"))
    assert group["count"] == 10_000 and group["states"] == {"succeeded": 9000, "running": 1000}
    assert g["edges"] == [("g:work", "t:10002"), ("t:1", "g:work")]
    assert g["groups"][5000] == "g:work"  # live updates of a grouped task find its node


def test_missed_and_late_slots_since_a_visit_and_expired_leases(db):
    db.execute("INSERT INTO definitions VALUES ('nightly', 1, '{}', 0, 0, 0)")
    db.execute(
        "INSERT INTO runs (id, uuid, kind, name, trigger, state, created_at, started_at,"
        " updated_at) VALUES (1, 'late', 'process', 'nightly', 'schedule', 'succeeded',"
        " 0, ?, 0)",
        (300 * NS,),
    )
    db.execute(
        "INSERT INTO runs (id, uuid, kind, name, trigger, state, created_at, started_at,"
        " updated_at) VALUES (2, 'ontime', 'process', 'nightly', 'schedule', 'succeeded',"
        " 0, ?, 0)",
        (401 * NS,),
    )
    db.executemany(
        "INSERT INTO ledger VALUES ('nightly', ?, ?, ?, 0)",
        [
            (50 * NS, "missed", None),
            (100 * NS, "missed", None),
            (200 * NS, "fired", 1),
            (400 * NS, "fired", 2),
        ],
    )
    found = wq.slot_problems(db, 60 * NS, 60 * NS)  # since a visit at 60 s; late = over a minute
    assert [(r["slot"] // NS, r["status"], r["uuid"]) for r in found] == [
        (200, "fired", "late"),
        (100, "missed", None),
    ]
    db.execute("INSERT INTO queue_projects (id, name, created_at) VALUES (1, 'crawl', 0)")
    db.executemany(
        "INSERT INTO queue_tasks (project, assignee, assign_time, lease_expires_at,"
        " max_retries, max_assign_time, verification_count, recipe, created_at)"
        " VALUES (1, ?, 0, ?, 3, 60, 0, 'r', 0)",
        [(7, 10 * NS), (8, 500 * NS), (None, None)],
    )
    expired = wq.expired_leases(db, 100 * NS)
    assert [(r["assignee"], r["project_name"]) for r in expired] == [(7, "crawl")]
