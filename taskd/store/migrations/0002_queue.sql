-- The work queue (task_tracker API): projects of opaque tasks that remote workers lease,
-- release, verify and log against. Times are integer nanoseconds since the Unix epoch (UTC),
-- except where a column says seconds.

CREATE TABLE queue_projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    priority INTEGER NOT NULL DEFAULT 0,  -- informational: sent back with every task
    clone_url TEXT NOT NULL DEFAULT '',
    git_repo TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    motd TEXT NOT NULL DEFAULT '',
    public INTEGER NOT NULL DEFAULT 0,
    hidden INTEGER NOT NULL DEFAULT 0,
    chain INTEGER REFERENCES queue_projects (id),  -- closed tasks are copied there
    paused INTEGER NOT NULL DEFAULT 0,
    assign_rate REAL NOT NULL DEFAULT 0,  -- leases a second; 0 = unlimited
    submit_rate REAL NOT NULL DEFAULT 0,  -- submitted tasks a second; 0 = unlimited
    closed_task_count INTEGER NOT NULL DEFAULT 0,  -- survives hard_reset, as in the seed
    created_at INTEGER NOT NULL
);

-- Kept apart so that reading a project can never leak its secret.
CREATE TABLE queue_project_secrets (
    project INTEGER PRIMARY KEY REFERENCES queue_projects (id),
    secret TEXT NOT NULL
);

CREATE TABLE queue_workers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alias TEXT NOT NULL,
    secret_hash BLOB NOT NULL,        -- sha256 of the 32 secret bytes; the secret is never stored
    paused INTEGER NOT NULL DEFAULT 0,
    closed_task_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

-- Grants and pending requests: a row with request = 1 grants nothing until accepted.
CREATE TABLE queue_access (
    project INTEGER NOT NULL REFERENCES queue_projects (id),
    worker INTEGER NOT NULL REFERENCES queue_workers (id),
    assign INTEGER NOT NULL,
    submit INTEGER NOT NULL,
    request INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project, worker)
) WITHOUT ROWID;

-- AUTOINCREMENT: ids are never reused after a hard reset, so a late release of an old task
-- can never touch a new one.
CREATE TABLE queue_tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project INTEGER NOT NULL REFERENCES queue_projects (id),
    status INTEGER NOT NULL DEFAULT 1,  -- 1 new, 2 failed, 3 closed
    priority INTEGER NOT NULL DEFAULT 0,
    assignee INTEGER,                   -- the worker holding the lease, if any
    assign_time INTEGER,
    lease_expires_at INTEGER,           -- set exactly when assignee is
    retries INTEGER NOT NULL DEFAULT 0, -- failed releases so far
    max_retries INTEGER NOT NULL,
    max_assign_time INTEGER NOT NULL,   -- seconds, as submitted (0 = the server's default lease)
    verification_count INTEGER NOT NULL,
    hash64 INTEGER,                     -- NULL: no de-duplication
    recipe TEXT NOT NULL,
    submitted_by INTEGER,               -- NULL for copies made by a chain
    created_at INTEGER NOT NULL,
    closed_at INTEGER,
    closed_by INTEGER
);
-- Leasing: equality on (project, status, assignee IS NULL), then the index order is the
-- queue order, so the next task is one index seek however long the queue is.
CREATE INDEX queue_tasks_pick ON queue_tasks (project, status, assignee, priority DESC, id);
-- Expired leases: a range from the oldest expiry, normally empty.
CREATE INDEX queue_tasks_leases ON queue_tasks (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;
-- A hash is unique among the project's open (new or failed) tasks; the seed deleted closed
-- tasks, which freed their hash, and keeping closed rows must not change that.
CREATE UNIQUE INDEX queue_tasks_hash ON queue_tasks (project, hash64)
    WHERE hash64 IS NOT NULL AND status <> 3;

-- One row per worker that released a task with TR_OK while it needs several verifications.
CREATE TABLE queue_verifications (
    task INTEGER NOT NULL REFERENCES queue_tasks (id) ON DELETE CASCADE,
    worker INTEGER NOT NULL,
    verification INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (task, worker)
) WITHOUT ROWID;
CREATE INDEX queue_verifications_value ON queue_verifications (task, verification);

CREATE TABLE queue_log_entries (
    id INTEGER PRIMARY KEY,
    level INTEGER NOT NULL,             -- ERROR=3 WARN=4 INFO=5 TRACE=7
    message TEXT NOT NULL,
    timestamp INTEGER NOT NULL,         -- seconds, as the worker sent it
    data TEXT NOT NULL,                 -- JSON of the entry's fields (scope, worker)
    received_at INTEGER NOT NULL
);
CREATE INDEX queue_log_entries_level ON queue_log_entries (level, timestamp);
CREATE INDEX queue_log_entries_received ON queue_log_entries (received_at);

CREATE TABLE queue_snapshots (
    project INTEGER NOT NULL REFERENCES queue_projects (id),
    taken_at INTEGER NOT NULL,          -- seconds
    new_task_count INTEGER NOT NULL,
    failed_task_count INTEGER NOT NULL,
    closed_task_count INTEGER NOT NULL,
    worker_access_count INTEGER NOT NULL,
    awaiting_verification_count INTEGER NOT NULL,
    PRIMARY KEY (project, taken_at)
) WITHOUT ROWID;
CREATE INDEX queue_snapshots_taken ON queue_snapshots (taken_at);
