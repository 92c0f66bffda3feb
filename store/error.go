package store

import (
	"database/sql"
	"errors"
	"strings"

	"builds/app"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The message tables below are read-only lookups.

// uniqueMessages names each UNIQUE constraint, keyed by the column list
// SQLite reports ("UNIQUE constraint failed: users.username"); for
// PostgreSQL, pgConstraintDetail builds the same key.
var uniqueMessages = map[string]string{
	"users.username":                "a user with this username already exists",
	"ssh_keys.fingerprint":          "this SSH key is already registered",
	"tokens.hash":                   "a token with this hash already exists",
	"tasks.job_id, tasks.name":      "task names must be unique within a job",
	"tasks.job_id, tasks.seq":       "task positions must be unique within a job",
	"secrets.user_id, secrets.uuid": "secret already exists for this user",
	"secrets.user_id, secrets.name": "a secret with this name already exists for this user",
	"webhook_deliveries.uuid":       "a webhook delivery with this UUID already exists",
}

// foreignKeyMessages explains a failed foreign key for each kind of row
// written; SQLite does not say which reference was missing.
var foreignKeyMessages = map[string]string{
	"job":              "job owner or job group does not exist",
	"task":             "job does not exist",
	"artifact":         "job does not exist",
	"SSH key":          "user does not exist",
	"token":            "user does not exist",
	"secret":           "secret owner or sharing user does not exist",
	"webhook":          "user does not exist",
	"webhook delivery": "webhook subscription does not exist",
	"job group":        "group owner does not exist",
	"group trigger":    "job group does not exist",
	"trigger delivery": "job or job group does not exist",
	"session":          "user does not exist",
}

// checkMessages names each CHECK constraint of the schema, by the
// constraint name both databases report.
var checkMessages = map[string]string{
	"user_admin":              "invalid admin flag",
	"group_fired":             "invalid fired flag",
	"trigger_action":          `invalid trigger action: must be "email" or "webhook"`,
	"trigger_condition":       `invalid trigger condition: must be "always", "success" or "failure"`,
	"job_visibility":          "invalid job visibility: must be PUBLIC, UNLISTED or PRIVATE",
	"job_status":              "invalid job status",
	"job_secrets":             "invalid secrets flag",
	"task_status":             "invalid task status",
	"artifact_size":           "artifact size must not be negative",
	"secret_uuid":             "secret UUID is required",
	"secret_type":             "invalid secret type: must be ssh_key, pgp_key or plaintext_file",
	"webhook_events":          "webhook events must be a JSON array",
	"delivery_state":          `invalid webhook delivery state: must be "pending", "delivered" or "failed"`,
	"trigger_delivery_status": `invalid trigger delivery status: must be "sent", "failed" or "skipped"`,
	"trigger_delivery_owner":  "trigger delivery needs a job or a job group",
}

// formatError maps a database error about a row of kind thing ("job",
// "user", "SSH key", ...) to an *app.Error: no rows is ENOTFOUND ("no such
// job"), a unique or foreign key violation ECONFLICT, a CHECK or NOT NULL
// violation EINVALID. *app.Error values pass through, and any other error
// is returned unchanged (callers wrap it). It is the one place where
// database errors become domain errors.
func formatError(err error, thing string) error {
	if err == nil {
		return nil
	}
	var ae *app.Error
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return app.Errorf(app.ENOTFOUND, "no such %s", thing)
	}
	var (
		se *sqlite.Error
		pe *pgconn.PgError
	)
	switch {
	case errors.As(err, &se):
		detail := constraintDetail(se.Error())
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return uniqueError(detail, thing)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return foreignKeyError(thing)
		case sqlite3.SQLITE_CONSTRAINT_CHECK:
			return checkError(detail, thing)
		case sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			_, col, _ := strings.Cut(detail, ".")
			return app.Errorf(app.EINVALID, "invalid %s: %s is required", thing, col)
		}
	case errors.As(err, &pe):
		// SQLSTATE class 23, integrity constraint violation
		switch pe.Code {
		case "23505": // unique_violation
			return uniqueError(pgConstraintDetail(pe), thing)
		case "23503": // foreign_key_violation
			return foreignKeyError(thing)
		case "23514": // check_violation
			return checkError(pe.ConstraintName, thing)
		case "23502": // not_null_violation
			return app.Errorf(app.EINVALID, "invalid %s: %s is required", thing, pe.ColumnName)
		}
	}
	return err
}

func uniqueError(detail, thing string) error {
	if msg, ok := uniqueMessages[detail]; ok {
		return app.Errorf(app.ECONFLICT, "%s", msg)
	}
	return app.Errorf(app.ECONFLICT, "%s already exists", thing)
}

func foreignKeyError(thing string) error {
	if msg, ok := foreignKeyMessages[thing]; ok {
		return app.Errorf(app.ECONFLICT, "%s", msg)
	}
	return app.Errorf(app.ECONFLICT, "%s refers to a row that does not exist", thing)
}

func checkError(constraint, thing string) error {
	if msg, ok := checkMessages[constraint]; ok {
		return app.Errorf(app.EINVALID, "%s", msg)
	}
	return app.Errorf(app.EINVALID, "invalid %s", thing)
}

// pgConstraintDetail builds, from a PostgreSQL unique violation, the key
// SQLite's message gives ("tasks.job_id, tasks.name"): the table and the
// columns of its detail, `Key (job_id, name)=(...) already exists.`. The
// values in that detail are never used (they may be a token's hash).
func pgConstraintDetail(pe *pgconn.PgError) string {
	cols, ok := strings.CutPrefix(pe.Detail, "Key (")
	if !ok || pe.TableName == "" {
		return ""
	}
	cols, _, ok = strings.Cut(cols, ")=(")
	if !ok {
		return ""
	}
	parts := strings.Split(cols, ", ")
	for i, c := range parts {
		parts[i] = pe.TableName + "." + c
	}
	return strings.Join(parts, ", ")
}

// constraintDetail extracts what follows "constraint failed: " in a
// modernc error message, without the trailing " (code)":
// "constraint failed: UNIQUE constraint failed: users.username (2067)"
// gives "users.username".
func constraintDetail(msg string) string {
	const marker = "constraint failed: "
	i := strings.LastIndex(msg, marker)
	if i < 0 {
		return ""
	}
	s := msg[i+len(marker):]
	if j := strings.LastIndex(s, " ("); j >= 0 && strings.HasSuffix(s, ")") {
		s = s[:j]
	}
	return s
}
