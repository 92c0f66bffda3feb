package runner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"builds/app"

	"golang.org/x/crypto/ssh"
)

// HostKeyFile is the SSH server's host key, kept in the data dir so the
// fingerprint users accept stays the same across restarts.
const HostKeyFile = "ssh_host_ed25519_key"

// SSHServer is builds' own SSH server for `ssh -t <user>@<runner> connect
// <id>` and `tail <id>` (behaviour.md §1.11). Users log in with the SSH
// keys on their account; only a job's owner may connect to it.
type SSHServer struct {
	srv  Server
	cfg  *app.Config
	pool *Pool
	log  *slog.Logger

	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// NewSSHServer returns a server for cfg.Runner.SSHListen; Open starts it.
func NewSSHServer(srv Server, cfg *app.Config, pool *Pool, log *slog.Logger) *SSHServer {
	if log == nil {
		log = slog.Default()
	}
	return &SSHServer{srv: srv, cfg: cfg, pool: pool, log: log, conns: map[net.Conn]bool{}}
}

// Open loads (or creates) the host key and starts listening. Listen errors
// are returned here, not from a goroutine.
func (s *SSHServer) Open() error {
	key, err := loadHostKey(filepath.Join(s.cfg.Builds.DataDir, HostKeyFile))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Runner.SSHListen)
	if err != nil {
		return fmt.Errorf("ssh server: listen: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve(key)
	return nil
}

// Addr returns the listening address (useful with port 0).
func (s *SSHServer) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening and drops every connection.
func (s *SSHServer) Close() error {
	s.mu.Lock()
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *SSHServer) serve(hostKey ssh.Signer) {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("ssh server: accept", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handleConn(c, s.serverConfig(hostKey))
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// checkKey accepts keys registered on an account.
func (s *SSHServer) checkKey(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := s.srv.UserBySSHKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("unknown key %s", ssh.FingerprintSHA256(key))
	}
	return &ssh.Permissions{Extensions: map[string]string{"user-id": strconv.FormatInt(u.ID, 10), "username": u.Username}}, nil
}

// serverConfig returns the configuration for one connection. After every
// offered key was refused, the keyboard-interactive step explains why
// (OpenSSH prints the instruction) once per connection, and refuses.
func (s *SSHServer) serverConfig(hostKey ssh.Signer) *ssh.ServerConfig {
	told := false
	conf := &ssh.ServerConfig{
		PublicKeyCallback: s.checkKey,
		KeyboardInteractiveCallback: func(_ ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			if !told {
				told = true
				client("", fmt.Sprintf("We don't recognize your SSH key. Make sure you've added it to your account.\n%s/keys\n", s.cfg.Builds.Origin), nil, nil)
			}
			return nil, errors.New("no recognised key")
		},
		ServerVersion: "SSH-2.0-builds",
	}
	conf.AddHostKey(hostKey)
	return conf
}

func (s *SSHServer) handleConn(c net.Conn, conf *ssh.ServerConfig) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	defer conn.Close()
	c.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs)
	uid, _ := strconv.ParseInt(conn.Permissions.Extensions["user-id"], 10, 64)
	user := &app.User{ID: uid, Username: conn.Permissions.Extensions["username"]}
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels are supported")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(user, ch, creqs)
		}()
	}
	wg.Wait()
}

// ptyRequest is an RFC 4254 pty-req payload.
type ptyRequest struct {
	Term          string
	Columns, Rows uint32
	Width, Height uint32
	Modes         string
}

// sshSession is one session channel of a logged-in user.
type sshSession struct {
	user   *app.User
	ch     ssh.Channel
	pty    *ptyRequest
	resize chan [2]int // rows, columns
}

// session serves one session channel: requests are read until the
// channel closes; the command runs in its own goroutine.
func (s *SSHServer) session(user *app.User, ch ssh.Channel, reqs <-chan *ssh.Request) {
	ss := &sshSession{user: user, ch: ch, resize: make(chan [2]int, 8)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := false
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var p ptyRequest
			if err := ssh.Unmarshal(req.Payload, &p); err != nil || started {
				req.Reply(false, nil)
				continue
			}
			ss.pty = &p
			req.Reply(true, nil)
		case "window-change":
			var w struct{ Columns, Rows, Width, Height uint32 }
			if ssh.Unmarshal(req.Payload, &w) == nil {
				select {
				case ss.resize <- [2]int{int(w.Rows), int(w.Columns)}:
				default:
				}
			}
		case "env":
			req.Reply(true, nil)
		case "shell", "exec":
			var cmd struct{ Command string }
			if req.Type == "exec" && ssh.Unmarshal(req.Payload, &cmd) != nil || started {
				req.Reply(false, nil)
				continue
			}
			started = true
			req.Reply(true, nil)
			go func() {
				st := s.command(ctx, ss, cmd.Command)
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(st)}))
				ch.Close()
			}()
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the channel: cancel stops a tail or guest shell.
}

// command runs a user's command and returns the exit status to report.
func (s *SSHServer) command(ctx context.Context, ss *sshSession, line string) int {
	out := ss.out()
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "connect" && fields[0] != "tail" || fields[0] == "tail" && len(fields) > 2 {
		fmt.Fprintf(out, "Usage: ssh -t %[1]s connect <job ID>\n       ssh %[1]s tail <job ID>\n", s.cfg.SSHTarget())
		return 1
	}
	id, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || id <= 0 {
		fmt.Fprintf(out, "No such job found.\n")
		return 1
	}
	// Someone else's job answers as a missing one does: the reply must
	// not tell a stranger which job ids exist.
	r := s.pool.job(id)
	var (
		job   *app.Job
		owner *app.User
		tasks []*app.Task
	)
	if r != nil {
		job, owner, tasks = r.job, r.owner, r.tasks
	} else if job, owner, tasks, err = s.srv.LookupJob(ctx, id); err != nil {
		job = nil
	}
	if job == nil || job.OwnerID != ss.user.ID {
		fmt.Fprintf(out, "No such job found.\n")
		return 1
	}
	if r != nil {
		// the job as stored now (its status), when it can be had
		if cur, err := s.srv.CurrentJob(app.SystemContext(ctx), id); err == nil {
			job = cur
		}
	}
	url := s.cfg.JobURL(owner.Username, job.ID)
	names := make([]string, len(tasks))
	for i, t := range tasks {
		names[i] = t.Name
	}
	if fields[0] == "tail" {
		var until <-chan struct{}
		if r != nil {
			until = r.finished
		}
		followLogs(ctx, out, s.srv, job.ID, names, until)
		return 0
	}
	fmt.Fprintf(out, "Connected to build job #%d (%s): %s\n", job.ID, job.Status, url)
	if r == nil {
		fmt.Fprintf(out, "This job has no running build environment to connect to.\n")
		return 1
	}
	select {
	case <-r.stepsDone:
	default:
		followLogs(ctx, out, s.srv, job.ID, names, r.stepsDone)
		select {
		case <-r.stepsDone:
		default: // the user left while the tasks ran
			return 1
		}
	}
	return s.shell(ctx, ss, r, fields[2:])
}

// shell attaches the user to an interactive shell (or command) in the
// guest as the build user.
func (s *SSHServer) shell(ctx context.Context, ss *sshSession, r *jobRun, args []string) int {
	out := ss.out()
	if r.guest == nil || r.ctx.Err() != nil {
		fmt.Fprintf(out, "The build environment of this job is gone.\n")
		return 1
	}
	fmt.Fprintf(out, "Your VM will be terminated in %s, or when you log out.\n", humanDuration(time.Until(r.deadline)))
	detach := r.attach()
	defer detach()
	gs, err := r.guest.Client().NewSession()
	if err != nil {
		fmt.Fprintf(out, "Could not open a session in the build environment: %v\n", err)
		return 1
	}
	defer gs.Close()
	if p := ss.pty; p != nil {
		if err := gs.RequestPty(p.Term, int(p.Rows), int(p.Columns), parseModes(p.Modes)); err != nil {
			fmt.Fprintf(out, "Could not allocate a terminal in the build environment: %v\n", err)
			return 1
		}
	}
	gs.Stdin, gs.Stdout, gs.Stderr = ss.ch, ss.ch, ss.ch.Stderr()
	if len(args) == 0 {
		err = gs.Shell()
	} else {
		err = gs.Start(strings.Join(args, " "))
	}
	if err != nil {
		fmt.Fprintf(out, "Could not start a shell in the build environment: %v\n", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- gs.Wait() }()
	for {
		select {
		case sz := <-ss.resize:
			gs.WindowChange(sz[0], sz[1])
		case <-ctx.Done():
			gs.Close()
			return 1
		case <-r.ctx.Done():
			fmt.Fprintf(out, "\nThe build environment is shutting down.\n")
			gs.Close()
			return 1
		case err := <-done:
			var exit *ssh.ExitError
			switch {
			case err == nil:
				return 0
			case errors.As(err, &exit):
				return exit.ExitStatus()
			}
			return 1
		}
	}
}

// out is where messages to the user go: with a terminal in raw mode
// (ssh -t) lines need "\r\n".
func (ss *sshSession) out() io.Writer {
	if ss.pty != nil {
		return crlfWriter{ss.ch}
	}
	return ss.ch
}

// parseModes decodes RFC 4254 encoded terminal modes.
func parseModes(s string) ssh.TerminalModes {
	m := ssh.TerminalModes{}
	b := []byte(s)
	for len(b) >= 5 && b[0] != 0 && b[0] < 160 {
		m[b[0]] = binary.BigEndian.Uint32(b[1:5])
		b = b[5:]
	}
	return m
}

// crlfWriter turns "\n" into "\n" for terminals in raw mode (ssh -t).
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(string(p), "\n", "\n"), "\n", "\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// loadHostKey reads the server's host key, creating it on first start.
func loadHostKey(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("generate ssh host key: %w", gerr)
		}
		block, merr := ssh.MarshalPrivateKey(priv, "builds ssh host key")
		if merr != nil {
			return nil, fmt.Errorf("encode ssh host key: %w", merr)
		}
		b = pem.EncodeToMemory(block)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("write ssh host key: %w", err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("write ssh host key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read ssh host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse ssh host key %s: %w", path, err)
	}
	return signer, nil
}
