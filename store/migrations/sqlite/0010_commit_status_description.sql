-- A push whose manifest fails to parse starts no job, but its forge is
-- told all the same: a failure status carrying the parser's error. Such a
-- status has no job (job_id NULL) and its own description. SQLite cannot
-- drop a NOT NULL constraint, so the table is made again.
CREATE TABLE commit_statuses_new (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	created       INTEGER NOT NULL,
	updated       INTEGER NOT NULL,
	repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	push_id       INTEGER NOT NULL REFERENCES repository_pushes (id) ON DELETE CASCADE,
	job_id        INTEGER UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
	commit_sha    TEXT    NOT NULL,
	context       TEXT    NOT NULL,
	state         TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'success', 'failure', 'cancelled')),
	sent          TEXT    NOT NULL DEFAULT '',
	attempts      INTEGER NOT NULL DEFAULT 0,
	next_attempt  INTEGER,
	error         TEXT    NOT NULL DEFAULT '',
	description   TEXT    NOT NULL DEFAULT ''
);
INSERT INTO commit_statuses_new (id, created, updated, repository_id, push_id, job_id, commit_sha, context, state, sent, attempts, next_attempt, error)
	SELECT id, created, updated, repository_id, push_id, job_id, commit_sha, context, state, sent, attempts, next_attempt, error FROM commit_statuses;
DROP TABLE commit_statuses;
ALTER TABLE commit_statuses_new RENAME TO commit_statuses;
CREATE INDEX commit_statuses_due ON commit_statuses (next_attempt) WHERE next_attempt IS NOT NULL;
CREATE INDEX commit_statuses_repository_id ON commit_statuses (repository_id, id);
