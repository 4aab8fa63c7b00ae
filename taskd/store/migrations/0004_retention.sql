-- Retention in small batches: runs are found by when they ended, and the ledger rows and
-- consumed triggers of a deleted run by its id, without scanning whole tables.
CREATE INDEX runs_ended ON runs (ended_at);
CREATE INDEX ledger_run ON ledger (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX triggers_run ON triggers (run_id) WHERE run_id IS NOT NULL;
