"""SQL of the work queue's projects, workers and access grants (see ``taskd.workqueue.store``)."""

from __future__ import annotations

import sqlite3
from typing import Any

PROJECT_FIELDS = (
    "name",
    "priority",
    "clone_url",
    "git_repo",
    "version",
    "motd",
    "public",
    "hidden",
    "chain",
    "paused",
    "assign_rate",
    "submit_rate",
)
PROJECT_COLUMNS = "id, " + ", ".join(PROJECT_FIELDS)


# -- projects ---------------------------------------------------------------------------------


def insert_project(db: sqlite3.Connection, fields: dict[str, Any], now: int) -> int:
    """Insert a project from validated fields (names from PROJECT_FIELDS); return its id."""
    names = [name for name in PROJECT_FIELDS if name in fields]
    cur = db.execute(
        f"INSERT INTO queue_projects ({', '.join(names)}, created_at) "
        f"VALUES ({', '.join('?' * len(names))}, ?)",
        (*(fields[name] for name in names), now),
    )
    return cur.lastrowid


def update_project(db: sqlite3.Connection, project: int, fields: dict[str, Any]) -> bool:
    """Change the given fields only; False when the project does not exist."""
    names = [name for name in PROJECT_FIELDS if name in fields]
    if not names:
        return project_by_id(db, project) is not None
    cur = db.execute(
        f"UPDATE queue_projects SET {', '.join(f'{name} = ?' for name in names)} WHERE id = ?",
        (*(fields[name] for name in names), project),
    )
    return cur.rowcount == 1


def project_by_id(db: sqlite3.Connection, project: int) -> sqlite3.Row | None:
    """One project (never its secret); None if unknown."""
    return db.execute(
        f"SELECT {PROJECT_COLUMNS} FROM queue_projects WHERE id = ?", (project,)
    ).fetchone()


def list_projects(db: sqlite3.Connection, include_hidden: bool) -> list[sqlite3.Row]:
    """Projects by name, hidden ones only when asked for."""
    where = "" if include_hidden else "WHERE hidden = 0 "
    return db.execute(
        f"SELECT {PROJECT_COLUMNS} FROM queue_projects {where}ORDER BY name"
    ).fetchall()


def project_secret(db: sqlite3.Connection, project: int) -> str:
    """The project's secret text; empty when none was set."""
    row = db.execute(
        "SELECT secret FROM queue_project_secrets WHERE project = ?", (project,)
    ).fetchone()
    return row[0] if row else ""


def set_project_secret(db: sqlite3.Connection, project: int, secret: str) -> None:
    """Set (or replace) the project's secret text."""
    db.execute(
        "INSERT INTO queue_project_secrets (project, secret) VALUES (?, ?) "
        "ON CONFLICT (project) DO UPDATE SET secret = excluded.secret",
        (project, secret),
    )


# -- workers ----------------------------------------------------------------------------------

WORKER_COLUMNS = "id, alias, paused, closed_task_count, created_at"


def insert_worker(db: sqlite3.Connection, alias: str, secret_hash: bytes, now: int) -> int:
    """A new worker with the hash of its secret; returns its id."""
    return db.execute(
        "INSERT INTO queue_workers (alias, secret_hash, created_at) VALUES (?, ?, ?)",
        (alias, secret_hash, now),
    ).lastrowid


def worker_by_id(db: sqlite3.Connection, worker: int) -> sqlite3.Row | None:
    """A worker's public fields (never the secret's hash); None if unknown."""
    return db.execute(
        f"SELECT {WORKER_COLUMNS} FROM queue_workers WHERE id = ?", (worker,)
    ).fetchone()


def worker_credentials(db: sqlite3.Connection, worker: int) -> sqlite3.Row | None:
    """What authenticating a worker needs: the secret's hash and the paused flag."""
    return db.execute(
        "SELECT secret_hash, paused FROM queue_workers WHERE id = ?", (worker,)
    ).fetchone()


def update_worker(
    db: sqlite3.Connection, worker: int, alias: str | None, paused: bool | None
) -> bool:
    """Change the alias and/or the paused flag (None: keep); False for an unknown worker."""
    cur = db.execute(
        "UPDATE queue_workers SET alias = COALESCE(?, alias), paused = COALESCE(?, paused) "
        "WHERE id = ?",
        (alias, paused, worker),
    )
    return cur.rowcount == 1


def worker_stats(db: sqlite3.Connection, limit: int) -> list[sqlite3.Row]:
    """Workers by closed tasks, most first."""
    return db.execute(
        "SELECT alias, closed_task_count, paused, id FROM queue_workers "
        "ORDER BY closed_task_count DESC, id LIMIT ?",
        (limit,),
    ).fetchall()


# -- access grants and requests ---------------------------------------------------------------


def access_of(db: sqlite3.Connection, project: int, worker: int) -> sqlite3.Row | None:
    """The worker's grant or pending request on the project, if any."""
    return db.execute(
        "SELECT assign, submit, request FROM queue_access WHERE project = ? AND worker = ?",
        (project, worker),
    ).fetchone()


def project_and_access(
    db: sqlite3.Connection, project: int, worker: int
) -> tuple[sqlite3.Row | None, sqlite3.Row | None]:
    """A project and the worker's grant or request on it (each None when absent), in one
    statement: the checks of every submit start here."""
    row = db.execute(
        f"SELECT * FROM (SELECT {PROJECT_COLUMNS} FROM queue_projects WHERE id = ?) "
        "LEFT JOIN (SELECT assign, submit, request FROM queue_access "
        "WHERE project = ? AND worker = ?)",
        (project, project, worker),
    ).fetchone()
    if row is None:
        return None, None
    return row, (row if row["request"] is not None else None)


def insert_access_request(
    db: sqlite3.Connection, project: int, worker: int, assign: bool, submit: bool, now: int
) -> bool:
    """A pending request; False when the worker already has a request or a grant here."""
    cur = db.execute(
        "INSERT INTO queue_access (project, worker, assign, submit, request, created_at) "
        "VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT DO NOTHING",
        (project, worker, assign, submit, now),
    )
    return cur.rowcount == 1


def accept_access_request(db: sqlite3.Connection, project: int, worker: int) -> bool:
    """Turn a pending request into a grant; False when none is pending."""
    return (
        db.execute(
            "UPDATE queue_access SET request = 0 WHERE project = ? AND worker = ? AND request = 1",
            (project, worker),
        ).rowcount
        == 1
    )


def delete_access(db: sqlite3.Connection, project: int, worker: int) -> bool:
    """Drop a request or a grant; False when there was none."""
    return (
        db.execute(
            "DELETE FROM queue_access WHERE project = ? AND worker = ?", (project, worker)
        ).rowcount
        == 1
    )


def access_list(db: sqlite3.Connection, project: int) -> list[sqlite3.Row]:
    """Requests (first) and grants on the project, with their workers."""
    return db.execute(
        "SELECT a.assign, a.submit, a.request, a.project, w.id, w.alias, w.paused, "
        "w.created_at FROM queue_access a JOIN queue_workers w ON w.id = a.worker "
        "WHERE a.project = ? ORDER BY a.request DESC, w.id",
        (project,),
    ).fetchall()


def name_taken(db: sqlite3.Connection, name: str) -> bool:
    """Whether a project already has this name."""
    return db.execute("SELECT 1 FROM queue_projects WHERE name = ?", (name,)).fetchone() is not None
