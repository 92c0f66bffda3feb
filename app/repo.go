package app

import (
	"context"
	"io"
	"net/http"
	"path"
	"strings"
	"time"
)

// ForgeKind is where a connected repository lives, which decides how its
// webhooks are signed and parsed.
type ForgeKind string

// Forge kinds. Forgejo and Gitea sign alike but name their headers apart;
// ForgeGit is a bare repository reached by `builds hook post-receive`.
const (
	ForgeGitHub  ForgeKind = "github"
	ForgeGitLab  ForgeKind = "gitlab"
	ForgeForgejo ForgeKind = "forgejo"
	ForgeGitea   ForgeKind = "gitea"
	ForgeGit     ForgeKind = "git"
)

// Valid reports whether k is a known forge kind.
func (k ForgeKind) Valid() bool {
	switch k {
	case ForgeGitHub, ForgeGitLab, ForgeForgejo, ForgeGitea, ForgeGit:
		return true
	}
	return false
}

// Repo is a repository connected to builds: each push to it submits
// the manifests of the pushed commit as one job group owned by OwnerID.
type Repo struct {
	ID         int64
	Created    time.Time
	OwnerID    int64
	Name       string // tags' first part and the manifest source it pins
	Kind       ForgeKind
	CloneURL   string
	DeployKey  *string  // the owner's ssh_key secret (UUID or name) for private clones
	Token      []byte   // sealed access token for private HTTPS clones; nil = none
	Branches   []string // path.Match patterns on branch names; empty = all
	Visibility Visibility
	HookID     string // the random last part of the webhook URL
	Secret     []byte // the sealed webhook secret
	// PullRequests builds pull (merge) requests, fork ones without
	// secrets (repo_pull.go).
	PullRequests bool
	// Schedule is a cron schedule building the tips of the default
	// branch, or of Branches; "" = none (repo_schedule.go).
	Schedule string
	// ScheduleLast is when Schedule last ran or was set.
	ScheduleLast *time.Time
}

// BuildsBranch reports whether pushes to branch are built.
func (r *Repo) BuildsBranch(branch string) bool {
	if len(r.Branches) == 0 {
		return true
	}
	for _, p := range r.Branches {
		if ok, _ := path.Match(p, branch); ok {
			return true
		}
	}
	return false
}

// RepoPush is one push a repository received (or one build started by
// hand), and what came of it: a job group, or why none.
type RepoPush struct {
	ID           int64
	Created      time.Time
	RepositoryID int64
	Delivery     *string // the forge's delivery id; nil for hooks and manual builds
	Ref          string  // refs/heads/... or refs/tags/...
	Commit       string
	GroupID      *int64
	Error        string
}

// RepoStore is the part of Store that keeps repositories and their pushes
// (store/repo.go).
type RepoStore interface {
	// CreateRepository inserts r (ECONFLICT if the owner has one of that
	// name), setting its ID and Created.
	CreateRepository(ctx context.Context, r *Repo) error
	FindRepositoryByID(ctx context.Context, id int64) (*Repo, error)
	FindRepositoryByHookID(ctx context.Context, hookID string) (*Repo, error)
	FindRepositoryByName(ctx context.Context, ownerID int64, name string) (*Repo, error)
	FindRepositories(ctx context.Context, ownerID int64) ([]*Repo, error)
	// FindScheduledRepositories returns every repository with a schedule.
	FindScheduledRepositories(ctx context.Context) ([]*Repo, error)
	// UpdateRepository changes a repository's settings (the non-nil
	// fields of upd).
	UpdateRepository(ctx context.Context, id int64, upd RepoUpdate) error
	// DeleteRepository removes a repository and, by cascade, its pushes.
	DeleteRepository(ctx context.Context, id int64) error
	// CreateRepoPush inserts p; ECONFLICT if the repository already had
	// a push of the same delivery id (a replay).
	CreateRepoPush(ctx context.Context, p *RepoPush) error
	// FinishRepoPush records the group a push started, or its error.
	FinishRepoPush(ctx context.Context, id int64, groupID *int64, errText string) error
	// FindRepoPushes returns a repository's latest pushes, newest first.
	FindRepoPushes(ctx context.Context, repoID int64, limit int) ([]*RepoPush, error)
	// FindRepoPushByGroup returns the push that started a job group
	// (ENOTFOUND if none did).
	FindRepoPushByGroup(ctx context.Context, groupID int64) (*RepoPush, error)
}

// ForgeEventType is what a verified webhook delivery announces.
type ForgeEventType string

// Forge event types.
const (
	ForgePing    ForgeEventType = "ping"    // a forge checking the hook; answered, nothing built
	ForgePush    ForgeEventType = "push"    // a branch or tag push
	ForgeIgnored ForgeEventType = "ignored" // an event builds does not act on (issues, stars...)
	// ForgePullRequest is a pull (merge) request opened, reopened or
	// given new commits; ForgeEvent.Pull says which.
	ForgePullRequest ForgeEventType = "pull_request"
)

// ForgeEvent is a webhook delivery after its signature was verified.
type ForgeEvent struct {
	Type      ForgeEventType
	Delivery  string     // the forge's delivery id ("" if it sends none)
	Ref       string     // refs/heads/main, refs/tags/v1
	Commit    string     // the pushed commit (full hex SHA)
	Deleted   bool       // the ref was deleted: nothing to build
	CommitURL string     // the commit's page on the forge, for the job note
	Pull      *PullEvent // for ForgePullRequest
}

// ForgeCommit is a commit fetched for a push: what the note says of it,
// and its manifests.
type ForgeCommit struct {
	SHA string
	// Ref is the full ref a named revision resolved to (refs/heads/main
	// for "main" or "HEAD"); "" when the commit was asked for by SHA.
	Ref         string
	AuthorName  string
	AuthorEmail string
	Subject     string
	// Manifests are .build.yml or .builds/*.yml (and .yaml) as found at
	// the commit, by file name.
	Manifests []ForgeManifest
}

// ForgeManifest is one manifest file of a commit.
type ForgeManifest struct {
	Name string // ".build.yml" or the base name of .builds/<name>
	Text string
}

// FetchRequest asks for a commit's manifests.
type FetchRequest struct {
	URL string
	// Rev is a commit SHA, or a ref to resolve: a branch or tag, by its
	// short or full name, or HEAD (the default branch).
	Rev    string
	SSHKey []byte // private key for ssh:// and scp-like URLs, or nil
	Token  string // HTTP access token, or ""
	// TokenUser is the user name sent with Token (forges differ in what
	// they expect there).
	TokenUser string
	// Ref, if set, is fetched instead when the server refuses to hand
	// out Rev by its SHA; it must still resolve to Rev.
	Ref string
	// MaxManifests is the most manifests accepted; more is an error
	// (EINVALID) rather than a silent cut.
	MaxManifests int
	MaxSize      int // bytes per manifest
}

// Forge is what the Service needs from the forge adapter (forge/): webhook
// verification and parsing per forge, and reading a commit's manifests
// from its repository.
type Forge interface {
	// ParseWebhook verifies a delivery's signature with secret and decodes
	// it. An unsigned or wrongly signed delivery is EUNAUTHORIZED, one
	// without a delivery id or not JSON of the expected shape EINVALID;
	// an event builds does not act on is ForgeIgnored.
	ParseWebhook(kind ForgeKind, secret []byte, h http.Header, body []byte) (*ForgeEvent, error)
	// FetchCommit fetches one commit of a repository and reads its
	// manifests.
	FetchCommit(ctx context.Context, req FetchRequest) (*ForgeCommit, error)
	// ListBranches lists a repository's branch names (req's Rev and
	// manifest limits are unused).
	ListBranches(ctx context.Context, req FetchRequest) ([]string, error)
	// BundleRepository writes a git bundle of every ref of the local
	// repository at gitDir, holding commit too if it is not "", to w
	// (source.go: a plain git repository's source for a guest).
	BundleRepository(ctx context.Context, gitDir, commit string, w io.Writer) error
}

// repoNameFromURL is the last path element of a clone URL without ".git"
// ("https://codeberg.org/me/proj.git" -> "proj"), as git.sr.ht names the
// source a manifest clones.
func repoNameFromURL(u string) string {
	u = strings.TrimRight(u, "/")
	if i := strings.IndexAny(u, "#?"); i >= 0 {
		u = u[:i]
	}
	u = strings.TrimRight(u, "/")
	if i := strings.LastIndexAny(u, "/:"); i >= 0 {
		u = u[i+1:]
	}
	return strings.TrimSuffix(u, ".git")
}

// IsCommitSHA reports whether s is a full commit id: 40 (SHA-1) or 64
// (SHA-256) lower-case hex digits.
func IsCommitSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ShortSHA is a commit id cut to 12 digits for messages.
func ShortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
