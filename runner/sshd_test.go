package runner

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"builds/app"

	"golang.org/x/crypto/ssh"
)

// sshHarness is a harness with builds' SSH server running.
type sshHarness struct {
	*harness
	srv   *SSHServer
	alice ssh.Signer
}

func newSSHHarness(t *testing.T, opts ...func(*app.Config)) *sshHarness {
	t.Helper()
	opts = append(opts, func(c *app.Config) { c.Runner.SSHListen = "127.0.0.1:0" })
	h := newHarness(t, opts...)
	srv := NewSSHServer(LocalServer(h.svc, nil), h.cfg, h.pool, h.svc.Log)
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	alice := newSigner(t)
	if _, err := h.svc.AddSSHKey(h.ctx, h.user.ID, string(ssh.MarshalAuthorizedKey(alice.PublicKey()))); err != nil {
		t.Fatal(err)
	}
	return &sshHarness{harness: h, srv: srv, alice: alice}
}

func newSigner(t testing.TB) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dial logs in with key; instruction receives a keyboard-interactive
// message if the server sends one.
func (h *sshHarness) dial(key ssh.Signer, instruction *string) (*ssh.Client, error) {
	return ssh.Dial("tcp", h.srv.Addr().String(), &ssh.ClientConfig{
		User: "builds",
		Auth: []ssh.AuthMethod{
			ssh.PublicKeys(key),
			ssh.KeyboardInteractive(func(_, instr string, _ []string, _ []bool) ([]string, error) {
				if instruction != nil {
					*instruction = instr
				}
				return nil, nil
			}),
		},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
}

// run executes a command on builds' SSH server and returns its output
// and exit status.
func (h *sshHarness) run(key ssh.Signer, cmd string) (string, int) {
	h.t.Helper()
	c, err := h.dial(key, nil)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitStatus()
	}
	h.t.Fatalf("run %q: %v", cmd, err)
	return "", 0
}

func TestSSHAuth(t *testing.T) {
	h := newSSHHarness(t)
	bob, err := h.svc.CreateUser(context.Background(), "bob", "bob@example.org", false, "")
	if err != nil {
		t.Fatal(err)
	}
	bobKey := newSigner(t)
	if _, err := h.svc.AddSSHKey(h.ctx, bob.ID, string(ssh.MarshalAuthorizedKey(bobKey.PublicKey()))); err != nil {
		t.Fatal(err)
	}
	job := h.submit("image: debian/stable\ntasks:\n  - a: echo hi from a\n")
	h.wait(job.ID)

	var instr string
	if _, err := h.dial(newSigner(t), &instr); err == nil {
		t.Fatal("unknown key accepted")
	}
	if want := "We don't recognize your SSH key. Make sure you've added it to your account.\nhttp://builds.test/keys\n"; instr != want {
		t.Errorf("message for an unknown key = %q, want %q", instr, want)
	}
	id := job.ID
	tests := []struct {
		name   string
		key    ssh.Signer
		cmd    string
		out    string
		status int
	}{
		// someone else's job answers exactly as a missing one
		{name: "NotOwner", key: bobKey, cmd: "connect " + itoa(id), out: "No such job found.\n", status: 1},
		{name: "NotOwnerTail", key: bobKey, cmd: "tail " + itoa(id), out: "No such job found.\n", status: 1},
		{name: "NoSuchJob", key: h.alice, cmd: "connect 999", out: "No such job found.\n", status: 1},
		{name: "BadID", key: h.alice, cmd: "connect abc", out: "No such job found.\n", status: 1},
		{name: "Usage", key: h.alice, cmd: "ls -l", out: "Usage: ssh -t builds@runner.test connect <job ID>\n       ssh builds@runner.test tail <job ID>\n", status: 1},
		{name: "NoVM", key: h.alice, cmd: "connect " + itoa(id),
			out: "Connected to build job #" + itoa(id) + " (success): http://builds.test/~alice/job/" + itoa(id) + "\nThis job has no running build environment to connect to.\n", status: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, st := h.run(tt.key, tt.cmd)
			if out != tt.out || st != tt.status {
				t.Errorf("%q: %q, status %d; want %q, %d", tt.cmd, out, st, tt.out, tt.status)
			}
		})
	}
	t.Run("TailFinished", func(t *testing.T) {
		out, st := h.run(h.alice, "tail "+itoa(id))
		if st != 0 {
			t.Fatalf("status %d", st)
		}
		linesInOrder(t, out, "Running task a", "Tearing down build VM", "[a] [#", "[a] hi from a\n")
	})
}

func TestSSHConnectShell(t *testing.T) {
	h := newSSHHarness(t)
	flag := filepath.Join(t.TempDir(), "go")
	job := h.submit("image: debian/stable\nshell: true\ntasks:\n  - wait: |\n      echo waiting\n      while [ ! -e " + flag + " ]; do sleep 0.02; done\n")
	h.waitLog(job.ID, "", "\tssh -t builds@runner.test connect "+itoa(job.ID)+"\n")
	linesInOrder(t, h.log(job.ID, ""), "Shell access for this build was requested.", "To log in with SSH, use the following command:")
	h.waitLog(job.ID, "wait", "waiting")

	// Connecting while the tasks run tails the logs first.
	var out bytes.Buffer
	done := make(chan int)
	c, err := h.dial(h.alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	w := &lockedBuffer{b: &out}
	s.Stdout, s.Stderr = w, w
	go func() {
		err := s.Run("connect " + itoa(job.ID) + " echo hello from $USER in $PWD")
		var exit *ssh.ExitError
		st := 0
		if errors.As(err, &exit) {
			st = exit.ExitStatus()
		} else if err != nil {
			st = -1
		}
		done <- st
	}()
	h.waitFor("tail output", func() bool { return strings.Contains(w.String(), "[wait] waiting") })
	os.WriteFile(flag, nil, 0o644)
	if st := <-done; st != 0 {
		t.Fatalf("connect exit status %d; output:\n%s", st, w.String())
	}
	linesInOrder(t, w.String(),
		"Connected to build job #"+itoa(job.ID)+" (running): http://builds.test/~alice/job/"+itoa(job.ID)+"\n",
		"[wait] waiting",
		"Your VM will be terminated in 45 minutes, or when you log out.\n",
		"hello from build in "+h.home(job.ID)+"\n")
	// The last session logged out: the shell job ends successfully.
	if got := h.wait(job.ID); got.Status != app.JobSuccess {
		t.Fatalf("status = %s", got.Status)
	}
}

func TestSSHConnectStandbyPTY(t *testing.T) {
	h := newSSHHarness(t, func(c *app.Config) { c.Runner.FailedKeepalive = 10 * time.Minute })
	job := h.submit("image: debian/stable\ntasks:\n  - fail: echo broken > state.txt; false\n")
	h.waitLog(job.ID, "", "After logging in, the deadline is increased to your remaining build time.")
	linesInOrder(t, h.log(job.ID, ""), "Build failed.\n", "The build environment will be kept alive for 10 minutes.\n",
		"To log in with SSH and examine it, use the following command:\n", "\n\tssh -t builds@runner.test connect "+itoa(job.ID)+"\n\n")
	if j, _ := h.db.FindJobByID(context.Background(), job.ID); j.Status != app.JobFailed {
		t.Fatalf("status during standby = %s, want failed (triggers fire before standby)", j.Status)
	}

	c, err := h.dial(h.alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := s.StdinPipe()
	out := &lockedBuffer{b: &bytes.Buffer{}}
	s.Stdout, s.Stderr = out, out
	if err := s.Start("connect " + itoa(job.ID)); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the shell", func() bool { return strings.Contains(out.String(), "or when you log out.") })
	if err := s.WindowChange(40, 132); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdin, "cat state.txt; tty >/dev/null && echo has-tty; stty size; echo $((6*7)); exit 7\n")
	err = s.Wait()
	var exit *ssh.ExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 7 {
		t.Errorf("shell exit = %v, want status 7", err)
	}
	linesInOrder(t, out.String(), "Connected to build job #"+itoa(job.ID)+" (failed)", "\r\n", "broken", "has-tty", "40 132", "42")
	h.wait(job.ID)
	linesInOrder(t, h.log(job.ID, ""), "Logged out. Terminating build environment.", "Tearing down build VM")
}

func TestSSHHostKeyPersists(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadHostKey(filepath.Join(dir, HostKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadHostKey(filepath.Join(dir, HostKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.PublicKey().Marshal(), k2.PublicKey().Marshal()) {
		t.Error("host key changed between loads")
	}
	if fi, _ := os.Stat(filepath.Join(dir, HostKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %v", fi.Mode().Perm())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
