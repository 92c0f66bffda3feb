package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// fileMirrorHooks is mmdebstrap's own hook directory that makes file://
// mirrors visible inside the chroot (Debian package mmdebstrap).
const fileMirrorHooks = "/usr/share/mmdebstrap/hooks/file-mirror-automount"

// bootstrap runs mmdebstrap with the distro's customize hook into root.
func (bd *build) bootstrap(ctx context.Context, root, pub string) error {
	bd.progress("bootstrap", "checking mirror")
	sources, rel, err := bd.sources(ctx)
	if err != nil {
		return err
	}
	pkgs, err := Packages(bd.distro)
	if err != nil {
		return err
	}
	hook, err := recipeFile(bd.distro, "customize.sh")
	if err != nil {
		return err
	}
	script := filepath.Join(bd.work, "customize.sh")
	if err := os.WriteFile(script, hook, 0o755); err != nil {
		return fmt.Errorf("write customize hook: %w", err)
	}
	caDir := ""
	if len(bd.b.ExtraCA) > 0 {
		caDir = filepath.Join(bd.work, "ca")
		if err := os.Mkdir(caDir, 0o755); err != nil {
			return fmt.Errorf("stage extra CA: %w", err)
		}
		for i, f := range bd.b.ExtraCA {
			name := fmt.Sprintf("builds-%02d-%s.crt", i, sanitize(strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))))
			if err := copyFile(f, filepath.Join(caDir, name), 0o644); err != nil {
				return fmt.Errorf("stage extra CA %s: %w", f, err)
			}
		}
	}
	args := []string{
		"--mode=root", "--variant=minbase",
		"--include=" + strings.Join(pkgs, ","),
		`--aptopt=APT::Install-Recommends "false"`,
		"--skip=cleanup/apt",
		"--customize-hook=sh " + shellQuote(script) + ` "$1" ` + shellQuote(pub) + " " + shellQuote(caDir),
	}
	if rel.NoValidUntil {
		args = append(args, `--aptopt=Acquire::Check-Valid-Until "false"`)
	}
	for _, s := range sources {
		if strings.HasPrefix(s, "deb file:") {
			args = append(args, "--hook-dir="+fileMirrorHooks)
			bd.logf("warning: file: mirror; guests cannot reach it, jobs' apt-get needs another mirror in the image's sources")
			break
		}
	}
	args = append(args, bd.release, root)
	args = append(args, sources...)
	bd.progress("bootstrap", "mmdebstrap "+bd.release)
	cmd := exec.Command("mmdebstrap", args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	// A private mount namespace: the bind mounts mmdebstrap makes in the
	// tree (proc, sys, dev) vanish with it, even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Unshareflags: syscall.CLONE_NEWNS}
	err = bd.runCmd(ctx, cmd, func(line string) {
		switch {
		case strings.HasPrefix(line, "I: running --customize-hook"):
			bd.progress("bootstrap", "running the customize hook")
		case strings.HasPrefix(line, "I: "):
			bd.progress("bootstrap", strings.TrimPrefix(line, "I: "))
		case strings.HasPrefix(line, "customize: "):
			bd.progress("bootstrap", line)
		}
	})
	if err != nil {
		return fmt.Errorf("bootstrap %s: %w", bd.name, err)
	}
	return nil
}

// sources returns the apt source lines for the release, after checking that
// the mirror serves each suite. The main suite must exist; updates and
// security suites that are missing are skipped with a warning.
func (bd *build) sources(ctx context.Context) ([]string, Release, error) {
	rel := Release{Name: bd.release}
	known, err := Releases(bd.distro)
	if err != nil {
		return nil, rel, err
	}
	found := false
	for _, r := range known {
		if r.Name == bd.release {
			rel, found = r, true
		}
	}
	if !found {
		bd.logf("release %s is not in recipes/%s/releases.txt: main suite only", bd.release, bd.distro)
	}
	m := bd.b.Mirror
	type suite struct{ uri, name string }
	want := []suite{{m.Archive, bd.release}}
	if rel.Updates {
		want = append(want, suite{m.Archive, bd.release + "-updates"})
	}
	if rel.Security && m.Security != "" {
		want = append(want, suite{m.Security, bd.release + "-security"})
	}
	var lines []string
	for i, s := range want {
		ok, err := suiteExists(ctx, s.uri, s.name)
		if err != nil {
			return nil, rel, fmt.Errorf("check mirror: %w", err)
		}
		if !ok {
			if i == 0 {
				return nil, rel, fmt.Errorf("mirror %s does not serve suite %q", s.uri, s.name)
			}
			bd.logf("warning: %s has no suite %s; building without it", s.uri, s.name)
			continue
		}
		lines = append(lines, fmt.Sprintf("deb %s %s main", s.uri, s.name))
	}
	for _, l := range lines {
		bd.logf("source: %s", l)
	}
	return lines, rel, nil
}

// suiteExists reports whether a mirror has dists/<suite>/InRelease or Release.
func suiteExists(ctx context.Context, mirror, suite string) (bool, error) {
	u, err := url.Parse(mirror)
	if err != nil {
		return false, fmt.Errorf("mirror %q: %w", mirror, err)
	}
	switch u.Scheme {
	case "file":
		for _, f := range []string{"InRelease", "Release"} {
			if _, err := os.Stat(filepath.Join(u.Path, "dists", suite, f)); err == nil {
				return true, nil
			}
		}
		return false, nil
	case "http", "https":
	default:
		return true, nil // let apt judge other transports
	}
	client := &http.Client{Timeout: 20 * time.Second}
	for _, f := range []string{"InRelease", "Release"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(mirror, "/")+"/dists/"+suite+"/"+f, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, fmt.Errorf("reach mirror: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true, nil
		}
	}
	return false, nil
}

// cmd runs a command with its output in the build log.
func (bd *build) cmd(ctx context.Context, name string, args ...string) error {
	c := exec.Command(name, args...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return bd.runCmd(ctx, c, nil)
}

// runCmd runs cmd in its own process group, logging each output line and
// passing it to onLine. Cancelling ctx sends SIGTERM to the group, then
// SIGKILL after 20 s; the group is always killed before returning.
func (bd *build) runCmd(ctx context.Context, cmd *exec.Cmd, onLine func(string)) error {
	bd.logf("$ %s", strings.Join(cmd.Args, " "))
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	tail := &tailLines{max: 15}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			bd.logf("  %s", line)
			tail.add(line)
			if onLine != nil {
				onLine(line)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-done
		return fmt.Errorf("start %s: %w", cmd.Args[0], err)
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case err = <-waited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			err = <-waited
		}
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // stragglers
	pw.Close()
	<-done
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("%s: %w; last output:\n%s", filepath.Base(cmd.Args[0]), err, tail.String())
	}
	return nil
}

// tailLines keeps the last max lines written to it.
type tailLines struct {
	max   int
	lines []string
}

func (t *tailLines) add(l string) {
	t.lines = append(t.lines, l)
	if len(t.lines) > t.max {
		t.lines = t.lines[1:]
	}
}

func (t *tailLines) String() string { return "  " + strings.Join(t.lines, "\n  ") }

var sanitizeRe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// sanitize makes s safe as part of a file name.
func sanitize(s string) string { return sanitizeRe.ReplaceAllString(s, "_") }

// checkCertFile makes sure f holds at least one PEM certificate.
func checkCertFile(f string) error {
	b, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("images.extra-ca: %w", err)
	}
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("images.extra-ca: %s: %w", f, err)
		}
		n++
	}
	if n == 0 {
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			return fmt.Errorf("images.extra-ca: %s holds a private key, not a certificate", f)
		}
		return fmt.Errorf("images.extra-ca: %s holds no PEM certificate", f)
	}
	return nil
}

// checkFree refuses to start a build on a filesystem with too little space.
func checkFree(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("check free space: %w", err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free < minFreeBytes {
		return fmt.Errorf("image build needs %d GiB free in %s, have %.1f GiB", minFreeBytes>>30, dir, float64(free)/(1<<30))
	}
	return nil
}
