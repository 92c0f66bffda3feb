-- Web UI sessions. The cookie holds a random token; only its SHA-256 is
-- stored, so a leaked database does not hand out live sessions. Logging
-- out deletes the row, which is what makes logout final.
CREATE TABLE sessions (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hash      TEXT    NOT NULL UNIQUE,
	created   INTEGER NOT NULL,
	expires   INTEGER NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);
-- Expired sessions are swept when new ones are created.
CREATE INDEX sessions_expires ON sessions (expires);
