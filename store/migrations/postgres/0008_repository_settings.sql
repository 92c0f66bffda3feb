-- Per-repository settings: the PostgreSQL twin of
-- sqlite/0008_repository_settings.sql. pull_requests says whether pull
-- (merge) requests are built; schedule is an optional cron schedule and
-- schedule_last when it last ran, or was set, so runs missed while the
-- server was down run once at start, not once each.
ALTER TABLE repositories ADD COLUMN pull_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN schedule TEXT NOT NULL DEFAULT '';
ALTER TABLE repositories ADD COLUMN schedule_last BIGINT;
