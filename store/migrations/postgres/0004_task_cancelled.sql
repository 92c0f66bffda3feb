-- A task that was running when its job was cancelled is 'cancelled'
-- (before, 'failed'). Unlike SQLite (sqlite/0004_task_cancelled.sql
-- rebuilds the table), PostgreSQL changes the CHECK constraint in place.
ALTER TABLE tasks DROP CONSTRAINT task_status;
ALTER TABLE tasks ADD CONSTRAINT task_status
	CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped', 'cancelled'));
