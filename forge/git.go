package forge

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"builds/app"
)

// FetchTimeout bounds all of one commit's git commands together.
const FetchTimeout = 2 * time.Minute

// maxGitOutput bounds what is read from one git command besides a
// manifest's blob (ls-remote of a repository with many refs, ls-tree).
const maxGitOutput = 4 << 20

// FetchCommit implements app.Forge: into an empty private repository it
// fetches the one commit (depth 1), then lists and reads its manifests.
// Credentials reach git through its environment, a key file of mode 0600
// in that private directory and config from GIT_CONFIG_* variables: never
// on a command line other users can read, never in an error.
func (a *Adapter) FetchCommit(ctx context.Context, req app.FetchRequest) (*app.ForgeCommit, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	g, cleanup, err := a.newGit(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("fetch commit: %w", err)
	}
	defer cleanup()
	c := &app.ForgeCommit{}
	want := req.Rev
	if !app.IsCommitSHA(req.Rev) {
		ref, sha, err := g.resolve(ctx, req.URL, req.Rev)
		if err != nil {
			return nil, err
		}
		c.Ref, want = ref, sha
	}
	if _, err := g.run(ctx, "fetch", "-q", "--depth=1", "--no-tags", "--", req.URL, want); err != nil {
		fallback := req.Ref
		if fallback == "" {
			fallback = c.Ref
		}
		if fallback == "" {
			return nil, app.Errorf(app.EINVALID, "fetch %s from %s: %s", app.ShortSHA(want), redact(req.URL), gitMessage(err))
		}
		// a server that hands out no commit by its id: fetch the ref
		if _, err := g.run(ctx, "fetch", "-q", "--depth=1", "--no-tags", "--", req.URL, fallback); err != nil {
			return nil, app.Errorf(app.EINVALID, "fetch %s from %s: %s", fallback, redact(req.URL), gitMessage(err))
		}
	}
	info, err := g.run(ctx, "log", "-1", "--format=%H%x00%an%x00%ae%x00%s", want, "--")
	if err != nil {
		return nil, app.Errorf(app.EINVALID, "commit %s is not in what %s sent (the ref moved on?)", app.ShortSHA(want), redact(req.URL))
	}
	parts := strings.SplitN(strings.TrimSuffix(string(info), "\n"), "\x00", 4)
	if len(parts) != 4 {
		return nil, fmt.Errorf("fetch commit: unexpected git log output")
	}
	c.SHA, c.AuthorName, c.AuthorEmail, c.Subject = parts[0], parts[1], parts[2], parts[3]
	if c.Manifests, err = g.manifests(ctx, c.SHA, req.MaxManifests, req.MaxSize); err != nil {
		return nil, err
	}
	return c, nil
}

// newGit makes an empty private repository to run git in, with req's
// credentials in its environment; cleanup removes it.
func (a *Adapter) newGit(ctx context.Context, req app.FetchRequest) (g *gitRun, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "builds-fetch-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	g = &gitRun{git: a.Git, dir: filepath.Join(dir, "repo.git"), env: gitEnv(dir)}
	if g.git == "" {
		g.git = "git"
	}
	if req.SSHKey != nil {
		key := filepath.Join(dir, "key")
		if err := os.WriteFile(key, req.SSHKey, 0o600); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("write key: %w", err)
		}
		g.env = append(g.env, "GIT_SSH_COMMAND=ssh -i "+key+" -o IdentitiesOnly=yes -o BatchMode=yes"+
			" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null")
	}
	if p, ok := localRepoPath(req.URL); ok {
		if g.env, err = trustRepository(dir, p, g.env); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	if req.Token != "" {
		cred := base64.StdEncoding.EncodeToString([]byte(req.TokenUser + ":" + req.Token))
		g.env = append(g.env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader",
			"GIT_CONFIG_VALUE_0=Authorization: Basic "+cred)
	}
	if _, err := g.run(ctx, "init", "-q", "--bare", g.dir); err != nil {
		cleanup()
		return nil, nil, err
	}
	return g, cleanup, nil
}

// ListBranches implements app.Forge: the repository's branch names, by
// name, from git ls-remote.
func (a *Adapter) ListBranches(ctx context.Context, req app.FetchRequest) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	g, cleanup, err := a.newGit(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list branches: %w", err)
	}
	defer cleanup()
	out, err := g.run(ctx, "ls-remote", "--heads", "--", req.URL)
	if err != nil {
		return nil, app.Errorf(app.EINVALID, "list branches of %s: %s", redact(req.URL), gitMessage(err))
	}
	var list []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if _, ref, ok := strings.Cut(line, "\t"); ok {
			if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
				list = append(list, b)
			}
		}
	}
	slices.Sort(list)
	return list, nil
}

// gitEnv is git's whole environment: no config of this host's users, no
// prompts, and only protocols that run no commands of the URL's choosing.
func gitEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"LANG=C", "LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false",
		"GIT_ALLOW_PROTOCOL=file:git:http:https:ssh",
	}
}

// localRepoPath is the path a clone URL names when it is an absolute
// path or a file:// URL of this machine.
func localRepoPath(raw string) (string, bool) {
	if strings.HasPrefix(raw, "/") {
		return filepath.Clean(raw), true
	}
	if u, err := url.Parse(raw); err == nil && u.Scheme == "file" && (u.Host == "" || u.Host == "localhost") && strings.HasPrefix(u.Path, "/") {
		return filepath.Clean(u.Path), true
	}
	return "", false
}

// trustRepository lets git fetch from the local repository at p when
// another user owns it (the git account pushes go to): upload-pack
// refuses such a repository ("dubious ownership") unless safe.directory
// in the global config names it, and the global config is then a file
// of ours in home holding only that, instead of /dev/null. It names
// nothing but the connected repository (and its .git, for one with a
// work tree).
func trustRepository(home, p string, env []string) ([]string, error) {
	quote := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	conf := fmt.Sprintf("[safe]\n\tdirectory = \"%s\"\n\tdirectory = \"%s\"\n",
		quote.Replace(p), quote.Replace(filepath.Join(p, ".git")))
	file := filepath.Join(home, "gitconfig")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("write git config: %w", err)
	}
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "GIT_CONFIG_GLOBAL=") {
			kv = "GIT_CONFIG_GLOBAL=" + file
		}
		out = append(out, kv)
	}
	return out, nil
}

type gitRun struct {
	git, dir string
	env      []string
}

// gitError is a failed git command with its standard error.
type gitError struct {
	args   []string
	stderr string
	err    error
}

func (e *gitError) Error() string {
	return fmt.Sprintf("git %s: %v: %s", e.args[0], e.err, e.stderr)
}

// gitMessage is what git said of its failure, for users.
func gitMessage(err error) string {
	var ge *gitError
	if errors.As(err, &ge) && ge.stderr != "" {
		return ge.stderr
	}
	return err.Error()
}

// limitedBuffer keeps at most max bytes and says whether it dropped any.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func (g *gitRun) run(ctx context.Context, args ...string) ([]byte, error) {
	return g.runLimit(ctx, maxGitOutput, args...)
}

func (g *gitRun) runLimit(ctx context.Context, limit int, args ...string) ([]byte, error) {
	full := args
	if args[0] != "init" {
		full = append([]string{"--git-dir=" + g.dir}, args...)
	}
	cmd := exec.CommandContext(ctx, g.git, full...)
	cmd.Env = g.env
	cmd.Dir = filepath.Dir(g.dir)
	out := &limitedBuffer{max: limit}
	errOut := &limitedBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %v", FetchTimeout)
		}
		return nil, &gitError{args: args, stderr: redactText(strings.TrimSpace(errOut.String())), err: err}
	}
	if out.over {
		return nil, app.Errorf(app.EINVALID, "git %s: output larger than %d bytes", args[0], limit)
	}
	return out.Bytes(), nil
}

// resolve finds what a named revision is on the remote: HEAD's branch, or
// refs/heads/<rev>, or refs/tags/<rev> (peeled), or <rev> as a full ref.
func (g *gitRun) resolve(ctx context.Context, remote, rev string) (ref, sha string, err error) {
	out, err := g.run(ctx, "ls-remote", "--symref", "--", remote)
	if err != nil {
		return "", "", app.Errorf(app.EINVALID, "list refs of %s: %s", redact(remote), gitMessage(err))
	}
	refs := map[string]string{}
	head := ""
	for line := range strings.SplitSeq(string(out), "\n") {
		left, name, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		if target, ok := strings.CutPrefix(left, "ref: "); ok && name == "HEAD" {
			head = target
			continue
		}
		refs[name] = left
	}
	candidates := []string{rev}
	switch {
	case rev == "HEAD":
		if head == "" {
			return "", "", app.Errorf(app.EINVALID, "%s has no default branch", redact(remote))
		}
		candidates = []string{head}
	case !strings.HasPrefix(rev, "refs/"):
		candidates = []string{"refs/heads/" + rev, "refs/tags/" + rev}
	}
	for _, c := range candidates {
		if peeled, ok := refs[c+"^{}"]; ok {
			return c, peeled, nil
		}
		if sha, ok := refs[c]; ok {
			return c, sha, nil
		}
	}
	return "", "", app.Errorf(app.EINVALID, "%s has no branch or tag %q", redact(remote), rev)
}

// manifests lists and reads the commit's .build.yml, .build.yaml and
// .builds/*.yml|yaml blobs (symbolic links are not followed), one per
// base name, in name order.
func (g *gitRun) manifests(ctx context.Context, sha string, max, maxSize int) ([]app.ForgeManifest, error) {
	out, err := g.run(ctx, "ls-tree", "-z", "-l", sha, "--", ".build.yml", ".build.yaml", ".builds/")
	if err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	type entry struct {
		name, object string
		size         int64
	}
	var found []entry
	seen := map[string]bool{}
	for rec := range strings.SplitSeq(string(out), "\x00") {
		meta, p, ok := strings.Cut(rec, "\t")
		if !ok {
			continue
		}
		f := strings.Fields(meta) // mode type object size
		if len(f) != 4 || f[1] != "blob" || f[0] == "120000" {
			continue
		}
		dir, base := path.Split(p)
		ext := path.Ext(base)
		switch {
		case dir == "" && (base == ".build.yml" || base == ".build.yaml"):
		case dir == ".builds/" && (ext == ".yml" || ext == ".yaml") && base != ext:
		default:
			continue
		}
		stem := strings.TrimSuffix(base, ext)
		if seen[dir+stem] {
			continue
		}
		seen[dir+stem] = true
		size, _ := strconv.ParseInt(f[3], 10, 64)
		found = append(found, entry{name: base, object: f[2], size: size})
	}
	slices.SortFunc(found, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	if max > 0 && len(found) > max {
		return nil, app.Errorf(app.EINVALID, "refusing to submit %d builds: at most %d manifests are built per push ([limits] manifests-per-push)", len(found), max)
	}
	var list []app.ForgeManifest
	for _, e := range found {
		if maxSize > 0 && e.size > int64(maxSize) {
			return nil, app.Errorf(app.EINVALID, "%s: manifest is %d bytes, larger than the %d accepted", e.name, e.size, maxSize)
		}
		text, err := g.runLimit(ctx, max64(maxSize, 1<<20), "cat-file", "blob", e.object)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.name, err)
		}
		list = append(list, app.ForgeManifest{Name: e.name, Text: string(text)})
	}
	return list, nil
}

func max64(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// redact drops a URL's password, if it has one, for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

// redactText drops credentials of URLs git quoted in its messages.
func redactText(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		if strings.Contains(w, "://") && strings.Contains(w, "@") {
			words[i] = redact(strings.Trim(w, "'\"."))
		}
	}
	return strings.Join(words, " ")
}
