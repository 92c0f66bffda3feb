-- Initial schema. Conventions:
--   * times are INTEGER unix seconds (UTC); NULL means "not set";
--   * booleans are INTEGER 0/1;
--   * ids use AUTOINCREMENT so they are never reused after a delete: job
--     ids name log and artifact directories and appear in URLs and cursors;
--   * every foreign key column is indexed (alone or as an index prefix) so
--     cascades on user deletion do not scan whole tables.

CREATE TABLE users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	created       INTEGER NOT NULL,
	updated       INTEGER NOT NULL,
	username      TEXT    NOT NULL UNIQUE,
	email         TEXT    NOT NULL,
	url           TEXT    NOT NULL DEFAULT '',
	location      TEXT    NOT NULL DEFAULT '',
	bio           TEXT    NOT NULL DEFAULT '',
	admin         INTEGER NOT NULL DEFAULT 0 CONSTRAINT user_admin CHECK (admin IN (0, 1)),
	password_hash TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE ssh_keys (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created     INTEGER NOT NULL,
	key         TEXT    NOT NULL,
	fingerprint TEXT    NOT NULL UNIQUE,
	comment     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX ssh_keys_user_id ON ssh_keys (user_id);

CREATE TABLE tokens (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created   INTEGER NOT NULL,
	expires   INTEGER,
	last_used INTEGER,
	hash      TEXT    NOT NULL UNIQUE,
	grants    TEXT    NOT NULL DEFAULT '',
	comment   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX tokens_user_id ON tokens (user_id);

CREATE TABLE job_groups (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	created  INTEGER NOT NULL,
	updated  INTEGER NOT NULL,
	owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	note     TEXT,
	fired    INTEGER NOT NULL DEFAULT 0 CONSTRAINT group_fired CHECK (fired IN (0, 1))
);
CREATE INDEX job_groups_owner_id ON job_groups (owner_id);

CREATE TABLE group_triggers (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	group_id    INTEGER NOT NULL REFERENCES job_groups (id) ON DELETE CASCADE,
	action      TEXT    NOT NULL CONSTRAINT trigger_action CHECK (action IN ('email', 'webhook')),
	condition   TEXT    NOT NULL CONSTRAINT trigger_condition CHECK (condition IN ('always', 'success', 'failure')),
	email_to    TEXT    NOT NULL DEFAULT '',
	email_cc    TEXT    NOT NULL DEFAULT '',
	in_reply_to TEXT    NOT NULL DEFAULT '',
	url         TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX group_triggers_group_id ON group_triggers (group_id);

CREATE TABLE jobs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	created    INTEGER NOT NULL,
	updated    INTEGER NOT NULL,
	owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	group_id   INTEGER REFERENCES job_groups (id) ON DELETE SET NULL,
	manifest   TEXT    NOT NULL,
	note       TEXT,
	tags       TEXT    NOT NULL DEFAULT '',
	visibility TEXT    NOT NULL CONSTRAINT job_visibility CHECK (visibility IN ('PUBLIC', 'UNLISTED', 'PRIVATE')),
	image      TEXT    NOT NULL,
	runner     TEXT,
	status     TEXT    NOT NULL CONSTRAINT job_status
		CHECK (status IN ('pending', 'queued', 'running', 'success', 'failed', 'timeout', 'cancelled')),
	secrets    INTEGER NOT NULL DEFAULT 1 CONSTRAINT job_secrets CHECK (secrets IN (0, 1)),
	started    INTEGER,
	finished   INTEGER,
	deadline   INTEGER,
	reason     TEXT    NOT NULL DEFAULT ''
);
-- Listing a user's jobs newest first, with keyset paging on id.
CREATE INDEX jobs_owner_id ON jobs (owner_id, id);
-- The queue (oldest queued job first) and crash recovery by status.
CREATE INDEX jobs_status ON jobs (status, id);
CREATE INDEX jobs_group_id ON jobs (group_id);

CREATE TABLE tasks (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL,
	job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	seq     INTEGER NOT NULL,
	name    TEXT    NOT NULL,
	status  TEXT    NOT NULL CONSTRAINT task_status
		CHECK (status IN ('pending', 'running', 'success', 'failed', 'skipped')),
	UNIQUE (job_id, name)
);
-- A job's tasks in manifest order.
CREATE UNIQUE INDEX tasks_job_id ON tasks (job_id, seq);

CREATE TABLE artifacts (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	created INTEGER NOT NULL,
	job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	name    TEXT    NOT NULL,
	path    TEXT    NOT NULL,
	size    INTEGER NOT NULL CONSTRAINT artifact_size CHECK (size >= 0),
	file    TEXT    NOT NULL
);
CREATE INDEX artifacts_job_id ON artifacts (job_id);

CREATE TABLE secrets (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created      INTEGER NOT NULL,
	updated      INTEGER NOT NULL,
	uuid         TEXT    NOT NULL CONSTRAINT secret_uuid CHECK (uuid <> ''),
	name         TEXT,
	-- The user who shared this copy; the copy survives the sharer.
	from_user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
	type         TEXT    NOT NULL CONSTRAINT secret_type CHECK (type IN ('ssh_key', 'pgp_key', 'plaintext_file')),
	data         BLOB    NOT NULL,
	path         TEXT,
	mode         INTEGER,
	UNIQUE (user_id, uuid)
);
CREATE UNIQUE INDEX secrets_user_id_name ON secrets (user_id, name) WHERE name IS NOT NULL;
CREATE INDEX secrets_from_user_id ON secrets (from_user_id);

CREATE TABLE webhook_subscriptions (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	created   INTEGER NOT NULL,
	user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	url       TEXT    NOT NULL,
	-- JSON array of event names, e.g. ["JOB_CREATED"].
	events    TEXT    NOT NULL CONSTRAINT webhook_events CHECK (json_valid(events)),
	query     TEXT    NOT NULL,
	-- Deliberately not a foreign key: when the token is deleted the id stays,
	-- so the service can tell a revoked creator (lookup fails) and stop
	-- delivering, as the subscription is documented to do.
	token_id  INTEGER,
	grants    TEXT    NOT NULL DEFAULT '',
	client_id TEXT,
	expires   INTEGER
);
CREATE INDEX webhook_subscriptions_user_id ON webhook_subscriptions (user_id, id);

CREATE TABLE webhook_deliveries (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	uuid             TEXT    NOT NULL UNIQUE,
	created          INTEGER NOT NULL,
	subscription_id  INTEGER NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
	event            TEXT    NOT NULL,
	-- The job the event was about. Not a foreign key: the delivery is a
	-- record of what was sent and belongs to the subscription.
	job_id           INTEGER NOT NULL,
	request_body     TEXT    NOT NULL,
	response_body    TEXT,
	response_headers TEXT,
	response_status  INTEGER,
	attempts         INTEGER NOT NULL DEFAULT 0,
	next_attempt     INTEGER,
	state            TEXT    NOT NULL CONSTRAINT delivery_state CHECK (state IN ('pending', 'delivered', 'failed'))
);
-- The delivery worker's "what is due" scan.
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, next_attempt);
CREATE INDEX webhook_deliveries_subscription_id ON webhook_deliveries (subscription_id, id);

CREATE TABLE trigger_deliveries (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	created  INTEGER NOT NULL,
	job_id   INTEGER REFERENCES jobs (id) ON DELETE CASCADE,
	group_id INTEGER REFERENCES job_groups (id) ON DELETE CASCADE,
	action   TEXT    NOT NULL,
	target   TEXT    NOT NULL DEFAULT '',
	status   TEXT    NOT NULL CONSTRAINT trigger_delivery_status CHECK (status IN ('sent', 'failed', 'skipped')),
	message  TEXT    NOT NULL DEFAULT '',
	attempts INTEGER NOT NULL DEFAULT 0,
	CONSTRAINT trigger_delivery_owner CHECK (job_id IS NOT NULL OR group_id IS NOT NULL)
);
CREATE INDEX trigger_deliveries_job_id ON trigger_deliveries (job_id);
CREATE INDEX trigger_deliveries_group_id ON trigger_deliveries (group_id);
