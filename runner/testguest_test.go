package runner

import (
	"builds/app"

	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// testGuestServer is an in-process SSH server standing in for a VM: it
// runs each session's command with bash in a temporary directory that is
// the build user's home. It supports exec and shell requests, stdin,
// pty-req and window-change, signals, and reports exit-status. Closing a
// session kills its process group, as tearing down a VM would.
type testGuestServer struct {
	home    string
	ln      net.Listener
	conf    *ssh.ServerConfig
	hostKey ssh.PublicKey

	mu     sync.Mutex
	conns  map[net.Conn]bool
	procs  map[int]bool // process group ids
	closed bool
	wg     sync.WaitGroup
}

// newTestGuestServer listens on 127.0.0.1 and accepts only clientKey.
func newTestGuestServer(home string, clientKey ssh.PublicKey) (*testGuestServer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	want := string(clientKey.Marshal())
	conf := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) != want {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	conf.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &testGuestServer{home: home, ln: ln, conf: conf, hostKey: signer.PublicKey(),
		conns: map[net.Conn]bool{}, procs: map[int]bool{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *testGuestServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// Close kills every command and drops every connection.
func (s *testGuestServer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	for pg := range s.procs {
		syscall.Kill(-pg, syscall.SIGKILL)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *testGuestServer) handle(c net.Conn) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, s.conf)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(ch, creqs)
		}()
	}
	wg.Wait()
}

type testSession struct {
	s    *testGuestServer
	ch   ssh.Channel
	mu   sync.Mutex
	cmd  *exec.Cmd
	ptmx *os.File
	pty  *ptyRequest
	env  []string
	done chan struct{}
	// replied is closed once the exec/shell request got its reply.
	replied   chan struct{}
	replyOnce sync.Once
}

func (s *testGuestServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	ts := &testSession{s: s, ch: ch, done: make(chan struct{}), replied: make(chan struct{})}
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var p ptyRequest
			ok := ssh.Unmarshal(req.Payload, &p) == nil
			if ok {
				ts.pty = &p
			}
			req.Reply(ok, nil)
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil {
				ts.env = append(ts.env, kv.Name+"="+kv.Value)
			}
			req.Reply(true, nil)
		case "window-change":
			var w struct{ Columns, Rows, Width, Height uint32 }
			if ssh.Unmarshal(req.Payload, &w) == nil {
				ts.resize(int(w.Rows), int(w.Columns))
			}
		case "signal":
			ts.kill()
		case "exec", "shell":
			var cmd struct{ Command string }
			if req.Type == "exec" {
				ssh.Unmarshal(req.Payload, &cmd)
			}
			err := ts.start(cmd.Command)
			req.Reply(err == nil, nil)
			// Like sshd, report the exit only after the reply.
			ts.replyOnce.Do(func() { close(ts.replied) })
			if err != nil {
				ch.Close()
			}
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the channel: the command dies with it.
	ts.kill()
}

func (ts *testSession) start(command string) error {
	args := []string{"-c", command}
	if command == "" {
		args = []string{"-i"}
		if ts.pty == nil {
			args = []string{"-s"}
		}
	}
	cmd := exec.Command("bash", args...)
	cmd.Dir = ts.s.home
	cmd.Env = append([]string{
		"HOME=" + ts.s.home, "USER=build", "LOGNAME=build", "SHELL=/bin/bash",
		"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8",
	}, ts.env...)
	if ts.pty != nil {
		cmd.Env = append(cmd.Env, "TERM="+ts.pty.Term)
		ptmx, pts, err := openPTY()
		if err != nil {
			return err
		}
		setWinsize(ptmx, int(ts.pty.Rows), int(ts.pty.Columns))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		if err := cmd.Start(); err != nil {
			ptmx.Close()
			pts.Close()
			return err
		}
		pts.Close()
		ts.mu.Lock()
		ts.ptmx = ptmx
		ts.mu.Unlock()
		go func() {
			io.Copy(ptmx, ts.ch)
		}()
		copied := make(chan struct{})
		go func() {
			io.Copy(ts.ch, ptmx) // ends with EIO once the shell is gone
			close(copied)
		}()
		ts.track(cmd)
		go func() {
			err := cmd.Wait()
			select {
			case <-copied:
			case <-time.After(time.Second):
			}
			ts.mu.Lock()
			ptmx.Close()
			ts.ptmx = nil
			ts.mu.Unlock()
			ts.exit(err)
		}()
		return nil
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = ts.ch, ts.ch.Stderr()
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		io.Copy(stdin, ts.ch)
		stdin.Close()
	}()
	ts.track(cmd)
	go func() { ts.exit(cmd.Wait()) }()
	return nil
}

func (ts *testSession) track(cmd *exec.Cmd) {
	ts.mu.Lock()
	ts.cmd = cmd
	ts.mu.Unlock()
	ts.s.mu.Lock()
	ts.s.procs[cmd.Process.Pid] = true
	ts.s.mu.Unlock()
}

// exit reports the command's status and closes the channel.
func (ts *testSession) exit(err error) {
	<-ts.replied
	ts.s.mu.Lock()
	delete(ts.s.procs, ts.cmd.Process.Pid)
	ts.s.mu.Unlock()
	status := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ts.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}{Signal: strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")}))
			ts.ch.Close()
			close(ts.done)
			return
		}
		status = ee.ExitCode()
	} else if err != nil {
		status = 255
	}
	ts.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	ts.ch.Close()
	close(ts.done)
}

func (ts *testSession) kill() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.cmd != nil && ts.cmd.Process != nil {
		syscall.Kill(-ts.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (ts *testSession) resize(rows, cols int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.ptmx != nil {
		setWinsize(ts.ptmx, rows, cols)
	}
}

// openPTY allocates a pseudo-terminal pair.
func openPTY() (ptmx, pts *os.File, err error) {
	ptmx, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, err
	}
	return ptmx, pts, nil
}

func setWinsize(f *os.File, rows, cols int) {
	unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
}

// testGuest is a Guest backed by a testGuestServer.
type testGuest struct {
	srv    *testGuestServer
	client *ssh.Client
	closed chan struct{}
	once   sync.Once
}

func (g *testGuest) Client() *ssh.Client { return g.client }

// InstallCommand stands in for the image's package manager: it records
// the request in the home directory. The package "slow-package" takes
// five minutes to install (for cancel and timeout tests).
func (g *testGuest) InstallCommand(pkgs []string) string {
	q := make([]string, len(pkgs))
	slow := ""
	for i, p := range pkgs {
		q[i] = app.ShellQuote(p)
		if p == "slow-package" {
			slow = "sleep 300; "
		}
	}
	return slow + "echo installing " + strings.Join(q, " ") + " && echo " + strings.Join(q, " ") + " >> ~/.installed-packages"
}

func (g *testGuest) AddRepoCommand(name, source string) (string, error) {
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("repository name %q: use letters, digits, . _ -", name)
	}
	return fmt.Sprintf("echo adding %s && echo %s >> ~/.repositories", app.ShellQuote(name), app.ShellQuote(name+" "+source)), nil
}

func (g *testGuest) Close() error {
	g.once.Do(func() {
		g.client.Close()
		g.srv.Close()
		close(g.closed)
	})
	return nil
}

// testBooter boots testGuests. Boot takes BootDelay (honouring ctx), so
// tests can cancel a job while it boots.
type testBooter struct {
	t         testing.TB
	BootDelay time.Duration
	BootErr   error
	HomeSetup func(home string) // prepares a new guest's home

	mu     sync.Mutex
	guests map[int64]*testGuest
	booted chan int64
}

func newTestBooter(t testing.TB) *testBooter {
	return &testBooter{t: t, guests: map[int64]*testGuest{}, booted: make(chan int64, 100)}
}

func (b *testBooter) Boot(ctx context.Context, spec BootSpec) (Guest, error) {
	spec.Logf("Booting image %s (%s)", spec.Image, archOrDefault(spec.Arch))
	spec.Logf("Waiting for guest to settle")
	select {
	case <-time.After(b.BootDelay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.BootErr != nil {
		return nil, b.BootErr
	}
	home, err := os.MkdirTemp(b.t.TempDir(), "home")
	if err != nil {
		return nil, err
	}
	if b.HomeSetup != nil {
		b.HomeSetup(home)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	srv, err := newTestGuestServer(home, signer.PublicKey())
	if err != nil {
		return nil, err
	}
	client, err := ssh.Dial("tcp", srv.ln.Addr().String(), &ssh.ClientConfig{
		User:            "build",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(srv.hostKey),
		Timeout:         5 * time.Second,
	})
	if err != nil {
		srv.Close()
		return nil, err
	}
	g := &testGuest{srv: srv, client: client, closed: make(chan struct{})}
	b.mu.Lock()
	b.guests[spec.JobID] = g
	b.mu.Unlock()
	b.booted <- spec.JobID
	return g, nil
}

// guest returns the guest booted for a job.
func (b *testBooter) guest(id int64) *testGuest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.guests[id]
}

func archOrDefault(a string) string {
	if a == "" {
		return "default"
	}
	return a
}
