-- Repositories connected to builds (forge webhooks, post-receive hooks):
-- each push to one submits its manifests as a job group. The webhook
-- secret and an access token are sealed by the Service (app/crypto.go);
-- hook_id is the public, random part of the webhook URL.
CREATE TABLE repositories (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	created    INTEGER NOT NULL,
	owner_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name       TEXT    NOT NULL,
	kind       TEXT    NOT NULL CHECK (kind IN ('github', 'gitlab', 'forgejo', 'gitea', 'git')),
	clone_url  TEXT    NOT NULL,
	deploy_key TEXT,             -- reference (UUID or name) of the owner's ssh_key secret
	token      BLOB,             -- sealed access token for private HTTPS clones
	branches   TEXT    NOT NULL DEFAULT '', -- space-separated patterns; '' = every branch
	visibility TEXT    NOT NULL,
	hook_id    TEXT    NOT NULL UNIQUE,
	secret     BLOB    NOT NULL, -- sealed webhook secret
	UNIQUE (owner_id, name)
);

-- One row per push received (or per build started by hand): the forge's
-- delivery id, unique per repository, is how a replayed delivery is
-- refused; the row then records what the push started, or why nothing.
CREATE TABLE repository_pushes (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	created       INTEGER NOT NULL,
	repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
	delivery      TEXT,
	ref           TEXT    NOT NULL,
	commit_sha    TEXT    NOT NULL,
	group_id      INTEGER REFERENCES job_groups (id) ON DELETE SET NULL,
	error         TEXT    NOT NULL DEFAULT '',
	UNIQUE (repository_id, delivery)
);
CREATE INDEX repository_pushes_repository_id ON repository_pushes (repository_id, id);
