-- Daggy numbers DAG runs 0, 1, 2, ... counting DAG runs only, while a run's id is shared by
-- every kind of run. A DAG run therefore also carries its number among the runs of its kind,
-- drawn from a counter that never goes back (a deleted run's number is not given again).
ALTER TABLE runs ADD COLUMN kind_no INTEGER;
CREATE UNIQUE INDEX runs_kind_no ON runs (kind, kind_no) WHERE kind_no IS NOT NULL;
CREATE TABLE kind_counters (
    kind TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
-- DAG runs made before: numbered in the order they were submitted.
UPDATE runs SET kind_no = n.no
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS no FROM runs WHERE kind = 'dag') AS n
WHERE runs.id = n.id;
INSERT INTO kind_counters (kind, next) SELECT 'dag', COUNT(*) FROM runs WHERE kind = 'dag';
