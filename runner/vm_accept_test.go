package runner

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
)

// The acceptance suite: real-world build styles, each manifest written as
// its author would for builds.sr.ht (only the source URLs point at servers
// on this host), each run unchanged in a real guest of the test image.
// Nothing here reaches the network beyond the host's own test servers.

// writeTree writes files (path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// commitTree makes a git repository of files with one commit.
func commitTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	git(t, "", "init", "-q", "-b", "main", dir)
	writeTree(t, dir, files)
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "initial")
}

// hgServer serves a new Mercurial repository with files over hg's HTTP
// protocol (hg serve) on the host's loopback.
func hgServer(t *testing.T, files map[string]string) (guestURL string, addr netip.AddrPort) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hgrepo")
	hg := func(args ...string) {
		t.Helper()
		cmd := exec.Command("hg", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HGUSER=t <t@example.org>", "HGRCPATH=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hg %v: %v\n%s", args, err, out)
		}
	}
	os.MkdirAll(dir, 0o755)
	hg("init")
	writeTree(t, dir, files)
	hg("add", ".")
	hg("commit", "-q", "-m", "initial")
	for try := 0; try < 5; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		cmd := exec.Command("hg", "serve", "-R", dir, "--address", "127.0.0.1", "--port", fmt.Sprint(port), "--prefix", "hgrepo")
		cmd.Env = append(os.Environ(), "HGRCPATH=")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				c.Close()
				addr = netip.MustParseAddrPort(ln.Addr().String())
				return fmt.Sprintf("http://10.0.2.2:%d/hgrepo", port), addr
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Kill()
	}
	t.Fatal("hg serve did not start")
	return "", addr
}

func TestVMAcceptance(t *testing.T) {
	src, root := t.TempDir(), t.TempDir()
	gitURL, gitAddr := gitServer(t, root)

	// a C project built with its Makefile, no packages: (samurai, qbe)
	commitTree(t, filepath.Join(src, "hello-c"), map[string]string{
		"Makefile": "CFLAGS = -O2 -Wall\nhello: hello.c\n\t$(CC) $(CFLAGS) -o $@ hello.c\ncheck: hello\n\t./hello | grep -q 'hello from C'\n",
		"hello.c":  "#include <stdio.h>\nint main(void) { puts(\"hello from C\"); return 0; }\n",
	})
	bareRepo(t, filepath.Join(src, "hello-c"), root, "hello-c")
	// a Python project tested with the system python3
	commitTree(t, filepath.Join(src, "pyproj"), map[string]string{
		"calc.py":      "def add(a, b):\n    return a + b\n",
		"test_calc.py": "import unittest\nimport calc\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n\nif __name__ == '__main__':\n    unittest.main()\n",
	})
	bareRepo(t, filepath.Join(src, "pyproj"), root, "pyproj")
	// a project with a submodule
	lib := filepath.Join(src, "lib")
	commitTree(t, lib, map[string]string{"lib.h": "#define LIB_VERSION 7\n"})
	bareRepo(t, lib, root, "lib")
	app1 := filepath.Join(src, "withsub")
	commitTree(t, app1, map[string]string{"main.c": "#include \"vendor/lib/lib.h\"\nint main(void) { return LIB_VERSION == 7 ? 0 : 1; }\n"})
	git(t, app1, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib, "vendor/lib")
	git(t, app1, "config", "-f", ".gitmodules", "submodule.vendor/lib.url", gitURL+"/lib.git")
	git(t, app1, "add", ".gitmodules")
	git(t, app1, "commit", "-q", "-m", "add lib")
	bareRepo(t, app1, root, "withsub")
	// a file curl fetches
	writeTree(t, root, map[string]string{"release/VERSION": "1.2.3\n"})
	hgURL, hgAddr := hgServer(t, map[string]string{"README": "hello from mercurial\n"})

	h, _ := newVMHarness(t, func(c *app.Config) {
		c.Runner.GuestAllow = []netip.AddrPort{gitAddr, hgAddr}
	})
	pgp := h.secret(app.SecretInput{Type: app.SecretPGPKey, Name: "signing", Data: newPGPKey(t)})

	cases := []struct {
		name     string
		manifest string
		want     map[string][]string // task -> lines its log must hold
	}{
		{"CMakefile", fmt.Sprintf(`image: debian/bookworm
sources:
  - %s/hello-c.git
tasks:
  - build: |
      make -C hello-c
  - check: |
      make -C hello-c check
      ./hello-c/hello
`, gitURL), map[string][]string{"check": {"hello from C"}}},
		{"Python", fmt.Sprintf(`image: debian/bookworm
sources:
  - %s/pyproj.git
tasks:
  - test: |
      cd pyproj
      python3 --version
      python3 -m unittest -v
`, gitURL), map[string][]string{"test": {"test_add (test_calc.T", "OK"}}},
		{"LocaleGen", `image: debian/bookworm
tasks:
  - setup: |
      echo "en_US.UTF-8 UTF-8" | sudo tee -a /etc/locale.gen
      sudo locale-gen
  - check: |
      locale -a | grep -i '^en_US.utf8$'
      LC_ALL=en_US.UTF-8 python3 -c 'import locale; locale.setlocale(locale.LC_ALL, ""); print("locale", locale.getlocale()[1])'
`, map[string][]string{"check": {"locale UTF-8"}}},
		{"Curl", fmt.Sprintf(`image: debian/bookworm
tasks:
  - fetch: |
      curl -fsSL %s/release/VERSION -o VERSION
      echo "fetched $(cat VERSION)"
`, gitURL), map[string][]string{"fetch": {"fetched 1.2.3"}}},
		{"Mercurial", fmt.Sprintf(`image: debian/bookworm
sources:
  - hg+%s
tasks:
  - show: |
      cat hgrepo/README
      hg -R hgrepo log -l 1
`, hgURL), map[string][]string{"show": {"hello from mercurial"}}},
		{"GPGSecret", fmt.Sprintf(`image: debian/bookworm
secrets:
  - %s
tasks:
  - sign: |
      gpg --list-secret-keys
      echo signed-content > file.txt
      gpg --batch --pinentry-mode loopback --passphrase '' --detach-sign file.txt
      gpg --verify file.txt.sig file.txt
`, pgp.UUID), map[string][]string{"sign": {"bot@example.org", "Good signature"}}},
		{"Submodule", fmt.Sprintf(`image: debian/bookworm
sources:
  - %s/withsub.git
tasks:
  - build: |
      cd withsub
      cc -o main main.c
      ./main && echo "submodule ok"
`, gitURL), map[string][]string{"build": {"submodule ok"}}},
		{"Environment", `image: debian/bookworm
tasks:
  - env: |
      echo "path=$PATH"
      echo "home=$HOME pwd=$(pwd)"
      echo "flags=$-"
      echo "user=$(id -un) host=$(hostname) tz=$(date +%Z)"
      echo "ci=$CI_NAME job=$JOB_ID"
      echo "git=$(git config user.name) <$(git config user.email)>"
      sudo -n true && echo "sudo=ok"
      for tool in make gcc cc g++ curl python3 hg gpg ssh; do command -v $tool >/dev/null || echo "missing=$tool"; done
      sudo sh -c 'command -v locale-gen' >/dev/null || echo "missing=locale-gen (as root)"
      echo "nproc=$(nproc)"
`, map[string][]string{"env": {"path=/usr/local/bin:/usr/bin:/bin:/usr/games", "home=/home/build pwd=/home/build",
			"user=build host=build tz=UTC", "ci=sourcehut", "git=builds.sr.ht <builds@sr.ht>", "sudo=ok", "nproc=1"}}},
	}
	jobs := make([]*app.Job, len(cases))
	for i, c := range cases {
		jobs[i] = h.submit(c.manifest)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := h.wait(jobs[i].ID)
			var logs strings.Builder
			logs.WriteString(h.log(jobs[i].ID, ""))
			for task := range c.want {
				logs.WriteString("\n--- " + task + "\n" + h.log(jobs[i].ID, task))
			}
			if got.Status != app.JobSuccess {
				t.Fatalf("status %s\n%s", got.Status, logs.String())
			}
			for task, lines := range c.want {
				tl := h.log(jobs[i].ID, task)
				for _, l := range lines {
					if !strings.Contains(tl, l) {
						t.Errorf("task %s lacks %q:\n%s", task, l, tl)
					}
				}
				if strings.Contains(tl, "missing=") {
					t.Errorf("tools missing in the guest:\n%s", tl)
				}
			}
			// setup commands see no terminal, as on builds.sr.ht: a clone
			// prints no progress bars into the setup log
			if _, clone, ok := strings.Cut(h.log(jobs[i].ID, ""), "Cloning repositories"); ok && strings.Contains(clone, "\r") {
				t.Errorf("progress output in the setup log:\n%q", clone)
			}
			if c.name == "Environment" {
				_, rest, _ := strings.Cut(h.log(jobs[i].ID, "env"), "\nflags=")
				flags, _, _ := strings.Cut(rest, "\n")
				if !strings.Contains(flags, "e") || !strings.Contains(flags, "x") {
					t.Errorf("task shell flags %q, want -e and -x as builds.sr.ht's preamble sets", flags)
				}
			}
		})
	}
}
