-- The dashboard's runs list pages newest first by id. An index on one column also holds the
-- row id, so each of these serves "the newest runs with this state / name / family" as one
-- index range, and a time range is turned into an id range through created_at.
CREATE INDEX runs_state ON runs (state);
CREATE INDEX runs_name ON runs (name);
CREATE INDEX runs_kind ON runs (kind);
CREATE INDEX runs_created ON runs (created_at);
