package app

import (
	"sort"
	"strings"
)

// Scope is an API access scope (GraphQL AccessScope).
type Scope string

// Access scopes.
const (
	ScopeProfile Scope = "PROFILE"
	ScopeJobs    Scope = "JOBS"
	ScopeLogs    Scope = "LOGS"
	ScopeSecrets Scope = "SECRETS"
)

// Scopes lists every scope in schema order.
var Scopes = []Scope{ScopeProfile, ScopeJobs, ScopeLogs, ScopeSecrets}

// Access is read-only or read-write (GraphQL AccessKind).
type Access string

// Access kinds.
const (
	RO Access = "RO"
	RW Access = "RW"
)

// Grants maps each granted scope to its access. A nil map means "all
// scopes, read-write", which is what a token created without --grants gets.
type Grants map[Scope]Access

// ParseGrants parses SourceHut's grant syntax: space-separated
// "SCOPE:RO" / "SCOPE:RW" entries, optionally prefixed "builds.sr.ht/"
// (a bare "SCOPE" means RO). An empty string means all grants (nil).
func ParseGrants(s string) (Grants, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, nil
	}
	g := Grants{}
	for _, f := range fields {
		if svc, rest, ok := strings.Cut(f, "/"); ok {
			if svc != "builds.sr.ht" {
				return nil, Errorf(EINVALID, "invalid grant %q: unknown service %q", f, svc)
			}
			f = rest
		}
		name, kind, hasKind := strings.Cut(f, ":")
		acc := RO
		if hasKind {
			switch Access(strings.ToUpper(kind)) {
			case RO:
			case RW:
				acc = RW
			default:
				return nil, Errorf(EINVALID, "invalid grant %q: access must be RO or RW", f)
			}
		}
		sc := Scope(strings.ToUpper(name))
		if !validScope(sc) {
			return nil, Errorf(EINVALID, "invalid grant %q: unknown scope %q (want PROFILE, JOBS, LOGS or SECRETS)", f, name)
		}
		if g[sc] != RW {
			g[sc] = acc
		}
	}
	return g, nil
}

func validScope(s Scope) bool {
	for _, v := range Scopes {
		if v == s {
			return true
		}
	}
	return false
}

// Has reports whether g allows scope with access kind; RW implies RO.
func (g Grants) Has(scope Scope, kind Access) bool {
	if g == nil {
		return true
	}
	a, ok := g[scope]
	if !ok {
		return false
	}
	return kind == RO || a == RW
}

// String renders g in the syntax ParseGrants accepts; "" for all grants.
func (g Grants) String() string {
	if g == nil {
		return ""
	}
	var parts []string
	for s, a := range g {
		parts = append(parts, string(s)+":"+string(a))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
