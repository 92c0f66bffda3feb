package store

import (
	"context"
	"fmt"
	"strings"

	"builds/app"
)

const repoColumns = `id, created, owner_id, name, kind, clone_url, deploy_key, token, branches, visibility, hook_id, secret,
	pull_requests, schedule, schedule_last`

// branchesCol scans the space-separated branch patterns.
type branchesCol struct{ p *[]string }

// Scan implements sql.Scanner.
func (c branchesCol) Scan(v any) error {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case []byte:
		s = string(v)
	default:
		return fmt.Errorf("scan branches: want text, got %T", v)
	}
	*c.p = nil
	if f := strings.Fields(s); len(f) > 0 {
		*c.p = f
	}
	return nil
}

func scanRepo(r rowScanner) (*app.Repo, error) {
	var repo app.Repo
	var token []byte
	var pulls int
	err := r.Scan(&repo.ID, timeCol{&repo.Created}, &repo.OwnerID, &repo.Name, &repo.Kind, &repo.CloneURL,
		nullCol[string]{&repo.DeployKey}, &token, branchesCol{&repo.Branches}, &repo.Visibility, &repo.HookID, &repo.Secret,
		&pulls, &repo.Schedule, nullTimeCol{&repo.ScheduleLast})
	if err != nil {
		return nil, err
	}
	repo.PullRequests = pulls != 0
	if len(token) > 0 {
		repo.Token = token
	}
	return &repo, nil
}

// CreateRepository inserts r, setting its ID and Created.
func (db *DB) CreateRepository(ctx context.Context, r *app.Repo) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create repository: %w", err)
	}
	defer t.Rollback()
	var token any
	if r.Token != nil {
		token = r.Token
	}
	id, err := insert(ctx, t, `INSERT INTO repositories (created, owner_id, name, kind, clone_url, deploy_key, token, branches, visibility, hook_id, secret,
			pull_requests, schedule, schedule_last)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		unix(t.now), r.OwnerID, r.Name, string(r.Kind), r.CloneURL, nullable(r.DeployKey), token,
		strings.Join(r.Branches, " "), string(r.Visibility), r.HookID, r.Secret,
		flag(r.PullRequests), r.Schedule, unixPtr(r.ScheduleLast))
	if err != nil {
		return fmt.Errorf("create repository %s: %w", r.Name, formatError(err, "repository"))
	}
	r.ID, r.Created = id, t.now
	return t.commit("create repository")
}

// findRepo reads one repository by a unique condition.
func (db *DB) findRepo(ctx context.Context, what, cond string, args ...any) (*app.Repo, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find repository: %w", err)
	}
	defer t.Rollback()
	r, err := scanRepo(t.QueryRowContext(ctx, `SELECT `+repoColumns+` FROM repositories WHERE `+cond, args...))
	if err != nil {
		return nil, fmt.Errorf("find repository %s: %w", what, formatError(err, "repository"))
	}
	return r, t.commit("find repository")
}

// FindRepositoryByID returns the repository with the given id.
func (db *DB) FindRepositoryByID(ctx context.Context, id int64) (*app.Repo, error) {
	return db.findRepo(ctx, fmt.Sprint(id), `id = ?`, id)
}

// FindRepositoryByHookID returns the repository whose webhook URL ends in hookID.
func (db *DB) FindRepositoryByHookID(ctx context.Context, hookID string) (*app.Repo, error) {
	return db.findRepo(ctx, "by hook", `hook_id = ?`, hookID)
}

// FindRepositoryByName returns the owner's repository of that name.
func (db *DB) FindRepositoryByName(ctx context.Context, ownerID int64, name string) (*app.Repo, error) {
	return db.findRepo(ctx, name, `owner_id = ? AND name = ?`, ownerID, name)
}

// FindRepositories returns the owner's repositories by name.
func (db *DB) FindRepositories(ctx context.Context, ownerID int64) ([]*app.Repo, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find repositories: %w", err)
	}
	defer t.Rollback()
	list, err := queryList(ctx, t, scanRepo, `SELECT `+repoColumns+` FROM repositories WHERE owner_id = ? ORDER BY name`, ownerID)
	if err != nil {
		return nil, fmt.Errorf("find repositories of user %d: %w", ownerID, formatError(err, "repository"))
	}
	return list, t.commit("find repositories")
}

// UpdateRepository sets the non-nil fields of upd.
func (db *DB) UpdateRepository(ctx context.Context, id int64, upd app.RepoUpdate) error {
	var set []string
	var args []any
	add := func(col string, v any) { set, args = append(set, col+" = ?"), append(args, v) }
	if upd.PullRequests != nil {
		add("pull_requests", flag(*upd.PullRequests))
	}
	if upd.Schedule != nil {
		add("schedule", *upd.Schedule)
	}
	if upd.ScheduleLast != nil {
		add("schedule_last", unix(*upd.ScheduleLast))
	}
	if len(set) == 0 {
		return nil
	}
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("update repository: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `UPDATE repositories SET `+strings.Join(set, ", ")+` WHERE id = ?`, append(args, id)...); err != nil {
		return fmt.Errorf("update repository %d: %w", id, formatError(err, "repository"))
	}
	return t.commit("update repository")
}

// FindScheduledRepositories returns every repository with a schedule,
// whoever owns it, by id.
func (db *DB) FindScheduledRepositories(ctx context.Context) ([]*app.Repo, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find scheduled repositories: %w", err)
	}
	defer t.Rollback()
	list, err := queryList(ctx, t, scanRepo, `SELECT `+repoColumns+` FROM repositories WHERE schedule <> '' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("find scheduled repositories: %w", formatError(err, "repository"))
	}
	return list, t.commit("find scheduled repositories")
}

// DeleteRepository deletes the repository and, by cascade, its pushes.
func (db *DB) DeleteRepository(ctx context.Context, id int64) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("delete repository: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `DELETE FROM repositories WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete repository %d: %w", id, formatError(err, "repository"))
	}
	return t.commit("delete repository")
}

const pushColumns = `id, created, repository_id, delivery, ref, commit_sha, group_id, error`

func scanPush(r rowScanner) (*app.RepoPush, error) {
	var p app.RepoPush
	err := r.Scan(&p.ID, timeCol{&p.Created}, &p.RepositoryID, nullCol[string]{&p.Delivery}, &p.Ref, &p.Commit,
		nullCol[int64]{&p.GroupID}, &p.Error)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// CreateRepoPush inserts p, setting its ID and Created; a delivery id the
// repository had before is ECONFLICT.
func (db *DB) CreateRepoPush(ctx context.Context, p *app.RepoPush) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("create push: %w", err)
	}
	defer t.Rollback()
	id, err := insert(ctx, t, `INSERT INTO repository_pushes (created, repository_id, delivery, ref, commit_sha, group_id, error)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		unix(t.now), p.RepositoryID, nullable(p.Delivery), p.Ref, p.Commit, nullable(p.GroupID), p.Error)
	if err != nil {
		return fmt.Errorf("create push: %w", formatError(err, "push"))
	}
	p.ID, p.Created = id, t.now
	return t.commit("create push")
}

// FinishRepoPush records the group a push started, or why none.
func (db *DB) FinishRepoPush(ctx context.Context, id int64, groupID *int64, errText string) error {
	t, err := db.begin(ctx, true)
	if err != nil {
		return fmt.Errorf("finish push: %w", err)
	}
	defer t.Rollback()
	if err := execOne(ctx, t, `UPDATE repository_pushes SET group_id = ?, error = ? WHERE id = ?`, nullable(groupID), errText, id); err != nil {
		return fmt.Errorf("finish push %d: %w", id, formatError(err, "push"))
	}
	return t.commit("finish push")
}

// FindRepoPushes returns the repository's latest pushes, newest first.
func (db *DB) FindRepoPushes(ctx context.Context, repoID int64, limit int) ([]*app.RepoPush, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find pushes: %w", err)
	}
	defer t.Rollback()
	if limit <= 0 {
		limit = 50
	}
	list, err := queryList(ctx, t, scanPush, `SELECT `+pushColumns+` FROM repository_pushes WHERE repository_id = ? ORDER BY id DESC LIMIT ?`, repoID, limit)
	if err != nil {
		return nil, fmt.Errorf("find pushes of repository %d: %w", repoID, formatError(err, "push"))
	}
	return list, t.commit("find pushes")
}

// FindRepoPushByGroup returns the push (or manual or scheduled build)
// that started the job group; ENOTFOUND if none did.
func (db *DB) FindRepoPushByGroup(ctx context.Context, groupID int64) (*app.RepoPush, error) {
	t, err := db.begin(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find push: %w", err)
	}
	defer t.Rollback()
	p, err := scanPush(t.QueryRowContext(ctx, `SELECT `+pushColumns+` FROM repository_pushes WHERE group_id = ? ORDER BY id LIMIT 1`, groupID))
	if err != nil {
		return nil, fmt.Errorf("find push of group %d: %w", groupID, formatError(err, "push"))
	}
	return p, t.commit("find push")
}
