-- Durable trigger processing. A job's manifest triggers (and, riding on
-- them, its group's triggers) run when it reaches a final status; the
-- event that starts them lives only in memory, so a process that dies in
-- between would lose them. triggers_done is set once a job's triggers have
-- been processed to the end; at start-up the dispatcher resumes every
-- final job where it is still 0.
ALTER TABLE jobs ADD COLUMN triggers_done INTEGER NOT NULL DEFAULT 0
	CONSTRAINT job_triggers_done CHECK (triggers_done IN (0, 1));

-- Jobs that finished before this migration had their triggers run (or
-- lost) by the old code: do not send them again after an upgrade.
UPDATE jobs SET triggers_done = 1 WHERE status IN ('success', 'failed', 'timeout', 'cancelled');

-- The start-up scan: final jobs whose triggers are not done, oldest first.
-- Partial, so it holds only the few jobs between their final status and
-- the end of their trigger processing.
CREATE INDEX jobs_triggers_pending ON jobs (id)
	WHERE triggers_done = 0 AND status IN ('success', 'failed', 'timeout', 'cancelled');
