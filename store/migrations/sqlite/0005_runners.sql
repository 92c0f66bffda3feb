-- Remote runners (`builds runner`) and their holds on running jobs.
-- A runner is never deleted, only revoked, so that its jobs keep naming
-- it; a revoked runner's name may be given again.
CREATE TABLE runners (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	created   INTEGER NOT NULL,
	name      TEXT    NOT NULL,
	hash      TEXT    NOT NULL UNIQUE, -- sha256 of its token
	last_seen INTEGER,
	revoked   INTEGER,
	report    TEXT    NOT NULL DEFAULT '{}' -- its last poll (JSON): address, slots, images
);
CREATE UNIQUE INDEX runners_name ON runners (name) WHERE revoked IS NULL;

-- A lease: the runner holding a running job, and until when the job lives
-- without the runner's next poll. The row stays a while after the job
-- ended (the runner's last log bytes may still come), and goes when the
-- lease runs out.
CREATE TABLE job_leases (
	job_id    INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
	runner_id INTEGER NOT NULL REFERENCES runners (id),
	expires   INTEGER NOT NULL
);
CREATE INDEX job_leases_runner_id ON job_leases (runner_id);
CREATE INDEX job_leases_expires ON job_leases (expires);
