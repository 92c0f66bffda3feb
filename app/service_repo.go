package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// RepoInput is what connecting a repository takes.
type RepoInput struct {
	Kind       ForgeKind
	CloneURL   string
	Name       string   // "" = the clone URL's last path element
	DeployKey  string   // the owner's ssh_key secret (UUID or name), or ""
	Token      string   // access token for private HTTPS clones, or ""
	Branches   []string // path.Match patterns; empty = every branch
	Visibility Visibility
	// PullRequests builds pull (merge) requests (fork ones without secrets).
	PullRequests bool
	// Schedule is a cron schedule building the default branch (or
	// Branches) now and then; "" = none (ParseSchedule).
	Schedule string
}

// RepoUpdate changes a repository's settings: each non-nil field.
type RepoUpdate struct {
	PullRequests *bool
	// Schedule is a cron schedule, "" for none (ParseSchedule).
	Schedule *string
	// ScheduleLast is when the schedule last ran, or was set; the
	// Service sets it with Schedule.
	ScheduleLast *time.Time
}

// NewRepo is a repository just connected, with the webhook secret in
// the clear: it is shown once, to its owner, and never again.
type NewRepo struct {
	*Repo
	WebhookSecret string
}

// maxRepoURL bounds a clone URL (it goes to git's command line).
const maxRepoURL = 2048

// validateCloneURL accepts the URLs git may fetch from here: https, http,
// ssh and git URLs, scp-like "user@host:path", and (for local is true)
// file URLs and absolute paths of repositories on this machine. Anything
// else, "ext::" above all, which runs commands, is refused.
func validateCloneURL(raw string, local bool) error {
	if raw == "" || len(raw) > maxRepoURL || strings.ContainsAny(raw, "\x00\n\r ") || strings.HasPrefix(raw, "-") {
		return Errorf(EINVALID, "invalid clone URL %q", raw)
	}
	if strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "file://") {
		if !local {
			return Errorf(EFORBIDDEN, "only an administrator may connect a repository by a local path or file:// URL")
		}
		return nil
	}
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" && strings.Contains(raw, "://") {
		switch u.Scheme {
		case "https", "http", "ssh", "git":
			if u.Host == "" {
				return Errorf(EINVALID, "clone URL %q has no host", raw)
			}
			return nil
		}
		return Errorf(EINVALID, "clone URL scheme %q is not accepted (use https, http, ssh or git)", u.Scheme)
	}
	// scp-like: [user@]host:path
	if host, p, ok := strings.Cut(raw, ":"); ok && host != "" && p != "" && !strings.Contains(host, "/") {
		return nil
	}
	return Errorf(EINVALID, "invalid clone URL %q", raw)
}

// CreateRepository connects a repository for the caller: pushes to it will
// be built as the caller. The result holds the generated webhook secret.
func (s *Service) CreateRepository(ctx context.Context, in RepoInput) (*NewRepo, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	if !in.Kind.Valid() {
		return nil, Errorf(EINVALID, "unknown forge %q (want github, gitlab, forgejo, gitea or git)", in.Kind)
	}
	if err := validateCloneURL(in.CloneURL, isSystem(ctx) || u.Admin); err != nil {
		return nil, err
	}
	name := in.Name
	if name == "" {
		name = repoNameFromURL(in.CloneURL)
	}
	if name == "" || len(name) > MaxTagLength || !tagRE.MatchString(name) {
		return nil, Errorf(EINVALID, "invalid repository name %q: use letters, digits, '_', '-' and '.'", name)
	}
	for _, p := range in.Branches {
		if _, err := path.Match(p, ""); err != nil || p == "" || strings.ContainsAny(p, " \t\n") {
			return nil, Errorf(EINVALID, "invalid branch pattern %q", p)
		}
	}
	vis := Unlisted
	if in.Visibility != "" {
		if !in.Visibility.Valid() {
			return nil, Errorf(EINVALID, "invalid visibility %q", in.Visibility)
		}
		vis = in.Visibility
	}
	if in.PullRequests && in.Kind == ForgeGit {
		return nil, Errorf(EINVALID, "plain git repositories have no pull requests")
	}
	r := &Repo{OwnerID: u.ID, Name: name, Kind: in.Kind, CloneURL: in.CloneURL, Branches: in.Branches, Visibility: vis,
		PullRequests: in.PullRequests}
	if in.Schedule != "" {
		if _, err := ParseSchedule(in.Schedule); err != nil {
			return nil, err
		}
		now := s.now()
		r.Schedule, r.ScheduleLast = strings.TrimSpace(in.Schedule), &now
	}
	if in.DeployKey != "" {
		sec, err := s.Store.FindSecretByRef(ctx, u.ID, in.DeployKey)
		if ErrorCode(err) == ENOTFOUND {
			return nil, Errorf(EINVALID, "unknown secret %q: no secret with this UUID or name on your account", in.DeployKey)
		} else if err != nil {
			return nil, fmt.Errorf("find deploy key: %w", err)
		}
		if sec.Type != SecretSSHKey {
			return nil, Errorf(EINVALID, "secret %q is not an SSH key", in.DeployKey)
		}
		r.DeployKey = &sec.UUID
	}
	r.HookID = randomHex(16)
	secret := randomHex(24)
	r.Secret = s.sealer.seal([]byte(secret), repoAD("secret", u.ID, r.HookID))
	if in.Token != "" {
		if len(in.Token) > 1024 || strings.ContainsAny(in.Token, "\x00\r\n") {
			return nil, Errorf(EINVALID, "invalid access token")
		}
		r.Token = s.sealer.seal([]byte(in.Token), repoAD("token", u.ID, r.HookID))
	}
	if err := s.Store.CreateRepository(ctx, r); err != nil {
		return nil, err
	}
	s.Log.Info("repository connected", "repo_id", r.ID, "user", u.Username, "kind", r.Kind, "name", r.Name)
	return &NewRepo{Repo: r, WebhookSecret: secret}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func repoAD(what string, owner int64, hookID string) string {
	return fmt.Sprintf("repo-%s:%d:%s", what, owner, hookID)
}

// Repositories lists the caller's repositories.
func (s *Service) Repositories(ctx context.Context) ([]*Repo, error) {
	if err := requireGrant(ctx, ScopeJobs, RO); err != nil {
		return nil, err
	}
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	return s.Store.FindRepositories(ctx, u.ID)
}

// OwnRepository returns one of the caller's repositories by name or id.
func (s *Service) OwnRepository(ctx context.Context, ref string) (*Repo, error) {
	if err := requireGrant(ctx, ScopeJobs, RO); err != nil {
		return nil, err
	}
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.Store.FindRepositoryByName(ctx, u.ID, ref)
	if ErrorCode(err) == ENOTFOUND {
		return nil, Errorf(ENOTFOUND, "you have no repository named %q", ref)
	}
	return r, err
}

// UpdateRepository changes the settings of one of the caller's
// repositories and returns it as changed.
func (s *Service) UpdateRepository(ctx context.Context, ref string, upd RepoUpdate) (*Repo, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	r, err := s.OwnRepository(ctx, ref)
	if err != nil {
		return nil, err
	}
	if upd.PullRequests != nil && *upd.PullRequests && r.Kind == ForgeGit {
		return nil, Errorf(EINVALID, "plain git repositories have no pull requests")
	}
	if upd.Schedule != nil {
		text := strings.TrimSpace(*upd.Schedule)
		if text != "" {
			if _, err := ParseSchedule(text); err != nil {
				return nil, err
			}
		}
		// the new schedule's first run is its first time from now
		now := s.now()
		upd.Schedule, upd.ScheduleLast = &text, &now
	}
	if err := s.Store.UpdateRepository(ctx, r.ID, upd); err != nil {
		return nil, err
	}
	return s.Store.FindRepositoryByID(ctx, r.ID)
}

// DeleteRepository disconnects one of the caller's repositories; its
// webhook is refused from then on. Its jobs stay.
func (s *Service) DeleteRepository(ctx context.Context, ref string) (*Repo, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	r, err := s.OwnRepository(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := s.Store.DeleteRepository(ctx, r.ID); err != nil {
		return nil, err
	}
	return r, nil
}

// RepositoryPushes lists the latest pushes of one of the caller's
// repositories.
func (s *Service) RepositoryPushes(ctx context.Context, r *Repo, limit int) ([]*RepoPush, error) {
	if u := UserFromContext(ctx); !isSystem(ctx) && (u == nil || u.ID != r.OwnerID) {
		return nil, Errorf(ENOTFOUND, "no such repository")
	}
	return s.Store.FindRepoPushes(ctx, r.ID, limit)
}

// WebhookPath is the path of a repository's webhook on this server.
func (r *Repo) WebhookPath() string { return "/forge/hook/" + r.HookID }
