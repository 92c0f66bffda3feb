-- The commit status builds reports to a connected repository's forge for
-- each job a push started (one status per manifest). state is what the
-- forge should show, sent what it last accepted; while they differ and
-- next_attempt is set, the notifier sends it (notify/commitstatus.go),
-- retrying failures with backoff. error is the last failure, shown on the
-- repository's page; a failure never touches the job itself.
CREATE TABLE commit_statuses (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	created       INTEGER NOT NULL,
	updated       INTEGER NOT NULL,
	repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	push_id       INTEGER NOT NULL REFERENCES repository_pushes (id) ON DELETE CASCADE,
	job_id        INTEGER NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
	commit_sha    TEXT    NOT NULL,
	context       TEXT    NOT NULL,
	state         TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'success', 'failure', 'cancelled')),
	sent          TEXT    NOT NULL DEFAULT '',
	attempts      INTEGER NOT NULL DEFAULT 0,
	next_attempt  INTEGER,
	error         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX commit_statuses_due ON commit_statuses (next_attempt) WHERE next_attempt IS NOT NULL;
CREATE INDEX commit_statuses_repository_id ON commit_statuses (repository_id, id);
