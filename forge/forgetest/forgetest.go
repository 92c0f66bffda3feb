// Package forgetest is a forge for tests on 127.0.0.1: real repositories
// served over git's smart HTTP protocol (git http-backend through CGI),
// optionally only to clients presenting an access token, with room for
// the forge's API (commit statuses) next to them.
package forgetest

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Server serves the bare repositories under Root at URL/<owner>/<name>.git.
type Server struct {
	t    testing.TB
	Root string // GIT_PROJECT_ROOT
	URL  string
	srv  *httptest.Server
	// Token, if set, is required as the password of HTTP basic auth
	// (user x-access-token or oauth2), as forges take access tokens.
	Token string
	// API, if set, answers every request that is not git's.
	API http.Handler
}

// NewServer starts a server; it skips the test when git or its
// http-backend is missing.
func NewServer(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	backend := filepath.Join(Git(t, "", "--exec-path"), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("no %s", backend)
	}
	s := &Server{t: t, Root: t.TempDir()}
	git := &cgi.Handler{Path: backend, Root: "/", Env: []string{"GIT_PROJECT_ROOT=" + s.Root, "GIT_HTTP_EXPORT_ALL=1"}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isGit(r) {
			if s.API != nil {
				s.API.ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
			return
		}
		if s.Token != "" {
			user, pass, ok := r.BasicAuth()
			if !ok || pass != s.Token || (user != "x-access-token" && user != "oauth2") {
				w.Header().Set("WWW-Authenticate", `Basic realm="forge"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		git.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	return s
}

// isGit reports whether r is git's smart HTTP protocol.
func isGit(r *http.Request) bool {
	p := r.URL.Path
	return strings.HasSuffix(p, "/info/refs") || strings.HasSuffix(p, "/git-upload-pack") || strings.HasSuffix(p, "/git-receive-pack")
}

// Git runs git in dir with a fixed identity and no user config, and
// returns its trimmed output.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Ada Lovelace", "GIT_AUTHOR_EMAIL=ada@example.org",
		"GIT_COMMITTER_NAME=Ada Lovelace", "GIT_COMMITTER_EMAIL=ada@example.org", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Repo is one repository of the server and a work tree that pushes to it.
type Repo struct {
	t          testing.TB
	Bare, Work string
	CloneURL   string
}

// Repo creates the repository path ("owner/name") with an empty main
// branch to come.
func (s *Server) Repo(path string) *Repo {
	t := s.t
	t.Helper()
	r := &Repo{t: t, Bare: filepath.Join(s.Root, path+".git"), Work: t.TempDir(), CloneURL: s.URL + "/" + path + ".git"}
	Git(t, "", "init", "-q", "--bare", "-b", "main", r.Bare)
	Git(t, r.Work, "init", "-q", "-b", "main")
	return r
}

// NewLocal makes a bare repository <name>.git in a temporary directory,
// with a main branch to come and a work tree pushing to it; its clone URL
// is its path.
func NewLocal(t testing.TB, name string) *Repo {
	t.Helper()
	dir := t.TempDir()
	r := &Repo{t: t, Bare: filepath.Join(dir, name+".git"), Work: filepath.Join(dir, "work")}
	r.CloneURL = r.Bare
	Git(t, "", "init", "-q", "--bare", "-b", "main", r.Bare)
	Git(t, "", "init", "-q", "-b", "main", r.Work)
	return r
}

// Git runs git in dir as Git does.
func (r *Repo) Git(dir string, args ...string) string {
	r.t.Helper()
	return Git(r.t, dir, args...)
}

// Commit writes files ("" removes one), commits them, pushes the commit
// to branch and returns it.
func (r *Repo) Commit(branch, msg string, files map[string]string) string {
	t := r.t
	t.Helper()
	for name, text := range files {
		p := filepath.Join(r.Work, name)
		if text == "" {
			os.Remove(p)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, r.Work, "add", "-A")
	Git(t, r.Work, "commit", "-q", "--allow-empty", "-m", msg)
	Git(t, r.Work, "push", "-q", "-f", r.Bare, "HEAD:refs/heads/"+branch)
	return Git(t, r.Work, "rev-parse", "HEAD")
}
