-- Retention ([retention] in builds.ini), the PostgreSQL twin of
-- sqlite/0006_retention.sql. A pruned artifact keeps its row and a pruned
-- job keeps its row and tasks with a note in place of its logs; pruned is
-- when their files were removed, NULL while they are there.
ALTER TABLE artifacts ADD COLUMN pruned BIGINT;
ALTER TABLE jobs ADD COLUMN logs_pruned BIGINT;

-- The pruner's scans, oldest first, over what is still there: partial,
-- so rows already pruned cost nothing on later runs.
CREATE INDEX artifacts_unpruned ON artifacts (created) WHERE pruned IS NULL;
CREATE INDEX jobs_logs_unpruned ON jobs (finished) WHERE logs_pruned IS NULL AND finished IS NOT NULL;
-- Deleting whole jobs past [retention] jobs, oldest first.
CREATE INDEX jobs_finished ON jobs (finished) WHERE finished IS NOT NULL;
