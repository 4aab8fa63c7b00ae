-- Notifications leave through an outbox: a row is written in the same transaction as the run's
-- end that caused it, and a delivery worker sends it (at least once) and marks it delivered.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    definition TEXT NOT NULL,
    run_id INTEGER,
    channel TEXT NOT NULL,          -- email | pagerduty | webhook | slack
    target TEXT NOT NULL,           -- the channel's settings (JSON)
    event TEXT NOT NULL,            -- trigger | resolve | notify
    payload TEXT NOT NULL,          -- what happened (JSON)
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    tries INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_definition ON outbox (definition, id);

-- One row per (definition, alert kind) while it fires; resolved rows stay as history.
CREATE TABLE IF NOT EXISTS alerts (
    definition TEXT NOT NULL,
    kind TEXT NOT NULL,             -- late_start | dead_man | consecutive_failures | longer_than_usual
    state TEXT NOT NULL,            -- firing | resolved
    since INTEGER NOT NULL,
    detail TEXT,
    PRIMARY KEY (definition, kind)
);

-- Named secrets, encrypted (AES-GCM) with a key kept outside the database.
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    nonce BLOB NOT NULL,
    value BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
