-- The core: definitions, runs, tasks, attempts, their state changes and output, the scheduler
-- ledger. Times are integer nanoseconds since the Unix epoch (UTC).

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE api_tokens (
    hash TEXT PRIMARY KEY,            -- sha256 of the token; the token itself is never stored
    role TEXT NOT NULL,               -- admin | viewer
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE definitions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,                -- the normalised definition (JSON)
    paused INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Every version ever stored, so a run can always say what it ran.
CREATE TABLE definition_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;

CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,               -- process | dag | task
    name TEXT NOT NULL,               -- definition name, DAG tag, or app/task id
    definition_version INTEGER,
    trigger TEXT NOT NULL,            -- schedule | manual | api | retry
    params TEXT NOT NULL DEFAULT '{}',
    task_filter TEXT,
    state TEXT NOT NULL,
    kill_requested INTEGER NOT NULL DEFAULT 0,
    extra TEXT NOT NULL DEFAULT '{}', -- what one API family keeps about the run
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX runs_active ON runs (state) WHERE state IN ('queued', 'running');
CREATE INDEX runs_kind_name ON runs (kind, name, created_at);
CREATE INDEX runs_kind_created ON runs (kind, created_at);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,               -- after parameter expansion (simple_0)
    template TEXT NOT NULL,           -- as defined (simple)
    state TEXT NOT NULL,
    job TEXT NOT NULL,                -- JobSpec (JSON)
    max_attempts INTEGER NOT NULL,
    backoff_base REAL NOT NULL DEFAULT 0,
    backoff_exponent REAL NOT NULL DEFAULT 1,
    max_runtime REAL,
    explicit_success INTEGER NOT NULL DEFAULT 0,
    generator INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_at INTEGER,                 -- when a retry_wait task may run again
    extra TEXT NOT NULL DEFAULT '{}',
    updated_at INTEGER NOT NULL,
    UNIQUE (run_id, name)
);

CREATE TABLE edges (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    parent INTEGER NOT NULL,
    child INTEGER NOT NULL,
    required INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX edges_child ON edges (child);
CREATE INDEX edges_run ON edges (run_id);

CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,        -- Sundial's task_id
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,          -- 1 for the first attempt
    state TEXT NOT NULL,
    succeeded INTEGER,                -- the result class once finished: 1 or 0
    exit_code INTEGER,
    reason TEXT,
    runner TEXT NOT NULL,
    container_id TEXT,
    pid INTEGER,
    pid_start TEXT,
    host TEXT,
    cpuset TEXT,
    token_hash TEXT NOT NULL,         -- sha256 of the attempt's callback token
    reported TEXT,                    -- succeeded | failed, as the task itself reported
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    UNIQUE (task_id, number)
);
CREATE INDEX attempts_active ON attempts (state) WHERE state IN ('starting', 'running');
CREATE INDEX attempts_run ON attempts (run_id);
CREATE INDEX attempts_created ON attempts (created_at);

CREATE TABLE state_changes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task_id INTEGER,                  -- NULL: a change of the run itself
    state TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX state_changes_run ON state_changes (run_id, task_id);

-- Captured output. The first log_head_bytes of a stream are kept; after that only a rolling
-- tail of about log_tail_bytes (older tail chunks are deleted). "offset" is the position of
-- the chunk in the whole stream, so the gap between head and tail says how much was dropped.
CREATE TABLE output_chunks (
    id INTEGER PRIMARY KEY,
    attempt_id INTEGER NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    stream TEXT NOT NULL,             -- stdout | stderr | executor
    offset INTEGER NOT NULL,
    head INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX output_chunks_attempt ON output_chunks (attempt_id, stream, offset);

CREATE TABLE log_entries (
    uuid TEXT PRIMARY KEY,            -- chosen by the client: resending it is harmless
    attempt_id INTEGER NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX log_entries_attempt ON log_entries (attempt_id, at);

CREATE TABLE metadata_entries (
    uuid TEXT PRIMARY KEY,
    attempt_id INTEGER NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    at INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX metadata_entries_attempt ON metadata_entries (attempt_id, at);

-- The scheduler's ledger: one row per due slot of a definition. The primary key makes a second
-- fire of the same slot impossible, even across restarts.
CREATE TABLE ledger (
    definition TEXT NOT NULL,
    slot INTEGER NOT NULL,            -- the scheduled time
    status TEXT NOT NULL,             -- fired | waiting | missed
    run_id INTEGER,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (definition, slot)
) WITHOUT ROWID;
CREATE INDEX ledger_waiting ON ledger (definition) WHERE status = 'waiting';

-- Manual triggers not yet turned into a run (a definition with overlap "wait" whose previous
-- run still runs keeps its trigger open until that run ends).
CREATE TABLE triggers (
    id INTEGER PRIMARY KEY,
    definition TEXT NOT NULL,
    task_filter TEXT,
    created_at INTEGER NOT NULL,
    run_id INTEGER
);
CREATE INDEX triggers_open ON triggers (definition) WHERE run_id IS NULL;
