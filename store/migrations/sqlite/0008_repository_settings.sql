-- Per-repository settings beyond what a push needs: whether pull (merge)
-- requests are built, and an optional cron schedule building the
-- default branch's (or the configured branches') tip. schedule_last is
-- when the schedule last ran, or was set: the next run is the first
-- time the schedule names after it, so runs missed while the server was
-- down run once at start, not once each.
ALTER TABLE repositories ADD COLUMN pull_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN schedule TEXT NOT NULL DEFAULT '';
ALTER TABLE repositories ADD COLUMN schedule_last INTEGER;
