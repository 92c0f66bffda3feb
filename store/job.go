package store

import (
	"context"
	"fmt"
	"strings"

	"builds/app"
)

const jobColumns = `id, created, updated, owner_id, group_id, manifest, note, tags, visibility, image,
	runner, status, secrets, started, finished, deadline, reason`

func scanJob(r rowScanner) (*app.Job, error) {
	var j app.Job
	if err := r.Scan(jobDest(&j)...); err != nil {
		return nil, err
	}
	return &j, nil
}

// jobDest returns the scan destinations of jobColumns in j.
func jobDest(j *app.Job) []any {
	return []any{&j.ID, timeCol{&j.Created}, timeCol{&j.Updated}, &j.OwnerID, nullCol[int64]{&j.GroupID},
		&j.Manifest, nullCol[string]{&j.Note}, &j.Tags, &j.Visibility, &j.Image,
		nullCol[string]{&j.Runner}, &j.Status, &j.Secrets, nullTimeCol{&j.Started}, nullTimeCol{&j.Finished},
		nullTimeCol{&j.Deadline}, &j.Reason}
}

// jobFieldColumns are the columns of the fields a partial read
// (JobFilter.Fields) may leave out, in jobColumns order, with their scan
// destinations.
var jobFieldColumns = []struct {
	field app.JobFields
	col   string
	dest  func(*app.Job) any
}{
	{app.JobFieldCreated, "created", func(j *app.Job) any { return timeCol{&j.Created} }},
	{app.JobFieldUpdated, "updated", func(j *app.Job) any { return timeCol{&j.Updated} }},
	{app.JobFieldGroupID, "group_id", func(j *app.Job) any { return nullCol[int64]{&j.GroupID} }},
	{app.JobFieldManifest, "manifest", func(j *app.Job) any { return &j.Manifest }},
	{app.JobFieldNote, "note", func(j *app.Job) any { return nullCol[string]{&j.Note} }},
	{app.JobFieldTags, "tags", func(j *app.Job) any { return &j.Tags }},
	{app.JobFieldImage, "image", func(j *app.Job) any { return &j.Image }},
	{app.JobFieldRunner, "runner", func(j *app.Job) any { return nullCol[string]{&j.Runner} }},
	{app.JobFieldStatus, "status", func(j *app.Job) any { return &j.Status }},
	{app.JobFieldSecrets, "secrets", func(j *app.Job) any { return &j.Secrets }},
	{app.JobFieldStarted, "started", func(j *app.Job) any { return nullTimeCol{&j.Started} }},
	{app.JobFieldFinished, "finished", func(j *app.Job) any { return nullTimeCol{&j.Finished} }},
	{app.JobFieldDeadline, "deadline", func(j *app.Job) any { return nullTimeCol{&j.Deadline} }},
	{app.JobFieldReason, "reason", func(j *app.Job) any { return &j.Reason }},
}

// jobSelect returns the columns to read for fields (nil: all of them) and
// the function that gives their scan destinations in a Job.
func jobSelect(fields *app.JobFields) (string, func(*app.Job) []any) {
	if fields == nil {
		return jobColumns, jobDest
	}
	cols := []string{"id", "owner_id", "visibility"}
	var dests []func(*app.Job) any
	for _, c := range jobFieldColumns {
		if *fields&c.field != 0 {
			cols = append(cols, c.col)
			dests = append(dests, c.dest)
		}
	}
	return strings.Join(cols, ", "), func(j *app.Job) []any {
		d := make([]any, 0, 3+len(dests))
		d = append(d, &j.ID, &j.OwnerID, &j.Visibility)
		for _, f := range dests {
			d = append(d, f(j))
		}
		return d
	}
}

// CreateJob inserts job and one pending task per name, in manifest order,
// setting the IDs and times on job and returning the tasks.
func (db *DB) CreateJob(ctx context.Context, job *app.Job, taskNames []string) ([]*app.Task, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	defer t.Rollback()
	if err := createJob(ctx, t, job); err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	tasks, err := createTasks(ctx, t, job.ID, taskNames)
	if err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	if err := t.commit("create job"); err != nil {
		return nil, err
	}
	return tasks, nil
}

func createJob(ctx context.Context, t *tx, j *app.Job) error {
	id, err := insert(ctx, t, `INSERT INTO jobs (created, updated, owner_id, group_id, manifest, note, tags,
			visibility, image, runner, status, secrets, started, finished, deadline, reason)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		unix(t.now), unix(t.now), j.OwnerID, nullable(j.GroupID), j.Manifest, nullable(j.Note), j.Tags,
		j.Visibility, j.Image, nullable(j.Runner), j.Status, flag(j.Secrets), unixPtr(j.Started), unixPtr(j.Finished),
		unixPtr(j.Deadline), j.Reason)
	if err != nil {
		return formatError(err, "job")
	}
	j.ID, j.Created, j.Updated = id, t.now, t.now
	return nil
}

// FindJobByID returns the job with the given id.
func (db *DB) FindJobByID(ctx context.Context, id int64) (*app.Job, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find job: %w", err)
	}
	defer t.Rollback()
	j, err := findJobByID(ctx, t, id)
	if err != nil {
		return nil, fmt.Errorf("find job %d: %w", id, err)
	}
	return j, t.commit("find job")
}

func findJobByID(ctx context.Context, t *tx, id int64) (*app.Job, error) {
	j, err := scanJob(t.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = ?`, id))
	return j, formatError(err, "job")
}

// FindJobs returns the jobs matching f, newest first. It is one
// statement, run without a transaction (see the package doc).
func (db *DB) FindJobs(ctx context.Context, f app.JobFilter) ([]*app.Job, error) {
	jobs, err := findJobs(ctx, db.autocommit(), f)
	if err != nil {
		return nil, fmt.Errorf("find jobs: %w", err)
	}
	return jobs, nil
}

func findJobs(ctx context.Context, q querier, f app.JobFilter) ([]*app.Job, error) {
	where, args, err := jobWhere(f)
	if err != nil {
		return nil, err
	}
	cols, dest := jobSelect(f.Fields)
	query := `SELECT ` + cols + ` FROM jobs`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id DESC`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	jobs, err := queryBlock(ctx, q, dest, min(f.Limit, app.PageSize+1), query, args...)
	return jobs, formatError(err, "job")
}

// jobWhere turns f into WHERE clauses, to be joined by AND, and their
// arguments. Values only ever travel as arguments, never inside the SQL.
func jobWhere(f app.JobFilter) (where []string, args []any, err error) {
	if v := f.ID; v != nil {
		where, args = append(where, "id = ?"), append(args, *v)
	}
	if v := f.OwnerID; v != nil {
		where, args = append(where, "owner_id = ?"), append(args, *v)
	}
	if v := f.GroupID; v != nil {
		where, args = append(where, "group_id = ?"), append(args, *v)
	}
	if v := f.Visibility; len(v) > 0 {
		where, args = append(where, "visibility IN ("+placeholders(len(v))+")"), append(args, anySlice(v)...)
	}
	if v := f.Status; len(v) > 0 {
		where, args = append(where, "status IN ("+placeholders(len(v))+")"), append(args, anySlice(v)...)
	}
	if v := f.TagPrefix; v != nil {
		where = append(where, `(tags = ? OR tags LIKE ? ESCAPE '\')`)
		args = append(args, *v, escapeLike(*v)+"/%")
	}
	if v := f.BeforeID; v != nil {
		where, args = append(where, "id <= ?"), append(args, *v)
	}
	for _, term := range f.Search {
		clause, arg, err := searchClause(term)
		if err != nil {
			return nil, nil, err
		}
		where, args = append(where, clause), append(args, arg)
	}
	return where, args, nil
}

// searchClause returns the WHERE clause and argument for one search term.
// LIKE matches are substring matches, case-insensitive for ASCII (ILIKE
// on PostgreSQL, dialect.go).
func searchClause(term app.SearchTerm) (string, any, error) {
	var clause string
	arg := any("%" + escapeLike(term.Value) + "%")
	switch term.Key {
	case "":
		// A job without a note matches "!word" but never "word".
		clause = `coalesce(note, '') LIKE ? ESCAPE '\'`
	case "image":
		clause = `image LIKE ? ESCAPE '\'`
	case "tags":
		clause = `tags LIKE ? ESCAPE '\'`
	case "status":
		// Statuses are stored lower-case; GraphQL spells them upper-case.
		clause, arg = `status = ?`, strings.ToLower(term.Value)
	default:
		return "", nil, app.Errorf(app.EINVALID, "unknown search key %q: use status, image or tags", term.Key)
	}
	if term.Negate {
		clause = "NOT (" + clause + ")"
	}
	return clause, arg, nil
}

// FindJobsByStatus returns every job in one of statuses, oldest first.
func (db *DB) FindJobsByStatus(ctx context.Context, statuses []app.JobStatus) ([]*app.Job, error) {
	if len(statuses) == 0 {
		return []*app.Job{}, nil
	}
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find jobs by status: %w", err)
	}
	defer t.Rollback()
	jobs, err := queryList(ctx, t, scanJob, `SELECT `+jobColumns+` FROM jobs
		WHERE status IN (`+placeholders(len(statuses))+`) ORDER BY id`, anySlice(statuses)...)
	if err != nil {
		return nil, fmt.Errorf("find jobs by status: %w", formatError(err, "job"))
	}
	return jobs, t.commit("find jobs by status")
}

// UpdateJob applies the non-nil fields of upd and returns the job.
func (db *DB) UpdateJob(ctx context.Context, id int64, upd app.JobUpdate) (*app.Job, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("update job: %w", err)
	}
	defer t.Rollback()
	if upd.Status != nil {
		return nil, app.Errorf(app.EINVALID, "update job %d: status changes go through TransitionJob", id)
	}
	j, err := updateJob(ctx, t, id, nil, upd)
	if err != nil {
		return nil, fmt.Errorf("update job %d: %w", id, err)
	}
	return j, t.commit("update job")
}

// TransitionJob applies upd only if the job's status is one of from. A job
// in any other status is ECONFLICT; a missing job ENOTFOUND.
func (db *DB) TransitionJob(ctx context.Context, id int64, from []app.JobStatus, upd app.JobUpdate) (*app.Job, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("transition job: %w", err)
	}
	defer t.Rollback()
	if from == nil {
		from = []app.JobStatus{} // nothing allowed, unlike nil (no condition)
	}
	j, err := updateJob(ctx, t, id, from, upd)
	if app.ErrorCode(err) == app.ENOTFOUND {
		// Tell a missing job from one in another status.
		cur, ferr := findJobByID(ctx, t, id)
		if ferr != nil {
			return nil, fmt.Errorf("transition job %d: %w", id, ferr)
		}
		err = app.Errorf(app.ECONFLICT, "job %d is %s, not %s", id, cur.Status, joinStatuses(from))
	}
	if err != nil {
		return nil, fmt.Errorf("transition job %d: %w", id, err)
	}
	return j, t.commit("transition job")
}

// updateJob applies upd to job id, if from is non-nil only when its status
// is one of from; ENOTFOUND when no row matched.
func updateJob(ctx context.Context, t *tx, id int64, from []app.JobStatus, upd app.JobUpdate) (*app.Job, error) {
	set, args := []string{"updated = ?"}, []any{unix(t.now)}
	add := func(col string, v any) {
		set = append(set, col+" = ?")
		args = append(args, v)
	}
	if v := upd.Status; v != nil {
		add("status", *v)
	}
	if v := upd.Visibility; v != nil {
		add("visibility", *v)
	}
	if v := upd.Runner; v != nil {
		add("runner", *v)
	}
	if v := upd.Started; v != nil {
		add("started", unix(*v))
	}
	if v := upd.Finished; v != nil {
		add("finished", unix(*v))
	}
	if v := upd.Deadline; v != nil {
		add("deadline", unix(*v))
	}
	if v := upd.Reason; v != nil {
		add("reason", *v)
	}
	query := `UPDATE jobs SET ` + strings.Join(set, ", ") + ` WHERE id = ?`
	args = append(args, id)
	if from != nil {
		if len(from) == 0 {
			query += ` AND 1 = 0`
		} else {
			query += ` AND status IN (` + placeholders(len(from)) + `)`
			args = append(args, anySlice(from)...)
		}
	}
	j, err := scanJob(t.QueryRowContext(ctx, query+` RETURNING `+jobColumns, args...))
	return j, formatError(err, "job")
}

// joinStatuses renders statuses as "queued or running".
func joinStatuses(ss []app.JobStatus) string {
	if len(ss) == 0 {
		return "in any allowed status"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, " or ")
}

// ClaimJob applies upd to the oldest job whose status is one of from, in
// one statement, so two runners never claim the same job. ENOTFOUND when
// no job is in those statuses.
func (db *DB) ClaimJob(ctx context.Context, from []app.JobStatus, upd app.JobUpdate) (*app.Job, error) {
	t, err := db.begin(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("claim job: %w", err)
	}
	defer t.Rollback()
	if len(from) == 0 {
		return nil, app.Errorf(app.ENOTFOUND, "no job to claim")
	}
	// On PostgreSQL, a job another claim has locked is passed over rather
	// than waited for (and then lost); SQLite has one writer at a time.
	q := `SELECT id FROM jobs WHERE status IN (` + placeholders(len(from)) + `) ORDER BY id LIMIT 1`
	if db.postgres {
		q += ` FOR UPDATE SKIP LOCKED`
	}
	var id int64
	err = t.QueryRowContext(ctx, q, anySlice(from)...).Scan(&id)
	if err != nil {
		// No row means an empty queue: "no such queued job".
		return nil, fmt.Errorf("claim job: %w", formatError(err, "queued job"))
	}
	j, err := updateJob(ctx, t, id, from, upd)
	if err != nil {
		return nil, fmt.Errorf("claim job: %w", err)
	}
	return j, t.commit("claim job")
}
