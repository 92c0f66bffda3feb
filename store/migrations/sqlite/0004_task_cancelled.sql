-- A task that was running when its job was cancelled is 'cancelled'
-- (before, 'failed'). SQLite cannot change a CHECK constraint in place:
-- the table is rebuilt with the same rows and ids. Nothing references
-- tasks, so dropping the old table breaks no foreign key.
CREATE TABLE tasks_new (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL,
	job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	seq     INTEGER NOT NULL,
	name    TEXT    NOT NULL,
	status  TEXT    NOT NULL CONSTRAINT task_status
		CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped', 'cancelled')),
	UNIQUE (job_id, name)
);
INSERT INTO tasks_new (id, created, updated, job_id, seq, name, status)
	SELECT id, created, updated, job_id, seq, name, status FROM tasks;
-- ids are never reused (AUTOINCREMENT): the new table goes on counting
-- where the old one was
DELETE FROM sqlite_sequence WHERE name = 'tasks_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'tasks_new', seq FROM sqlite_sequence WHERE name = 'tasks';
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
-- A job's tasks in manifest order.
CREATE UNIQUE INDEX tasks_job_id ON tasks (job_id, seq);
