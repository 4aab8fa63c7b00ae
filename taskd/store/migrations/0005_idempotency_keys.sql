-- Answers to requests sent with an Idempotency-Key, kept for the idempotency window.
-- A key's row is written in the same transaction as what its request created, so a retry
-- after a lost reply (or a crash) finds it and creates nothing.
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,          -- sha256 of the credential presented: keys are per caller
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,    -- sha256 of method, path, query and body
    status INTEGER,               -- the first answer; NULL until it is known
    content_type TEXT,
    body BLOB,
    created_at INTEGER NOT NULL,  -- ns since the epoch
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
