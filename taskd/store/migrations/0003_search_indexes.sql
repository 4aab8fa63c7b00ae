-- Searches that stay fast on a store of millions of finished tasks.

-- GET /api/tasks?allowed_statuses=failed: newest attempts of one result class.
CREATE INDEX attempts_result ON attempts (succeeded, created_at);
-- GET /api/tasks?task_definition_name=...
CREATE INDEX tasks_name ON tasks (name);
-- Metrics count the tasks that can still change; finished ones are many and never change.
CREATE INDEX tasks_active ON tasks (state)
    WHERE state IN ('waiting', 'ready', 'running', 'retry_wait');
CREATE INDEX runs_kind_state ON runs (kind, state);
