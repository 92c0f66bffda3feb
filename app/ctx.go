package app

import (
	"context"
	"sync"
)

type ctxKey int

const authKey ctxKey = iota

// AuthKind says how a request was authenticated.
type AuthKind int

// Authentication kinds.
const (
	AuthNone    AuthKind = iota
	AuthToken            // personal access token (Bearer)
	AuthSession          // web session cookie
	AuthWebhook          // evaluating a webhook query: read-only, creator's grants
	AuthSystem           // the appliance itself (runner, CLI)
	AuthRunner           // a remote runner (runner token): worker calls on the jobs it holds
)

// Auth is the identity attached to a request context.
type Auth struct {
	Kind   AuthKind
	User   *User
	Grants Grants // for AuthToken/AuthWebhook; sessions and system have all grants
	// TokenID is the token used (AuthToken), for webhook ownership.
	TokenID int64
	// Runner is the remote runner (AuthRunner) and held the jobs it
	// holds, as of the request's start and its own claims since.
	Runner *Runner
	mu     sync.Mutex
	held   map[int64]bool
}

// holds reports whether a is a runner holding job id.
func (a *Auth) holds(id int64) bool {
	if a == nil || a.Kind != AuthRunner {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held[id]
}

// hold records that runner a now holds job id.
func (a *Auth) hold(id int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held == nil {
		a.held = map[int64]bool{}
	}
	a.held[id] = true
}

// Can reports whether the identity may use scope with the given access kind.
// Webhook contexts are read-only.
func (a *Auth) Can(scope Scope, kind Access) bool {
	if a == nil || a.User == nil && a.Kind != AuthSystem && a.Kind != AuthRunner {
		return false
	}
	switch a.Kind {
	case AuthSession, AuthSystem:
		return true
	case AuthWebhook:
		return kind == RO && a.Grants.Has(scope, RO)
	case AuthToken:
		return a.Grants.Has(scope, kind)
	case AuthRunner:
		// reads of the jobs it holds and their owners (CanView and
		// isOwner say which; it has no user of its own)
		return kind == RO
	}
	return false
}

// NewContextWithAuth returns a context carrying auth.
func NewContextWithAuth(ctx context.Context, auth *Auth) context.Context {
	return context.WithValue(ctx, authKey, auth)
}

// AuthFromContext returns the request's identity, or nil when anonymous.
func AuthFromContext(ctx context.Context) *Auth {
	a, _ := ctx.Value(authKey).(*Auth)
	return a
}

// UserFromContext returns the authenticated user, or nil.
func UserFromContext(ctx context.Context) *User {
	if a := AuthFromContext(ctx); a != nil {
		return a.User
	}
	return nil
}

// SystemContext marks ctx as the appliance acting on its own behalf (runner,
// command line); visibility and grant checks pass.
func SystemContext(ctx context.Context) context.Context {
	return NewContextWithAuth(ctx, &Auth{Kind: AuthSystem})
}
