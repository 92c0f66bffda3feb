// Command builds is a self-hosted, builds.sr.ht-compatible CI appliance:
// GraphQL API, web UI, SQLite storage and a QEMU job runner in one binary.
//
// This file holds Main, the wired application, and the wiring of
// "builds serve"; cli.go parses command lines; cmd_*.go are the other
// commands.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"builds/app"
	"builds/forge"
	"builds/images"
	"builds/notify"
	"builds/runner"
	"builds/store"
	"builds/web"
)

// Build information, set with -ldflags "-X main.version=...".
var (
	version = "0.1.0-dev"
	commit  = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "builds: %s\n\n%s", ue.msg, usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "builds: %s\n", errorText(err))
		os.Exit(1)
	}
}

// Main holds the wired application: configuration, storage, service,
// web server and runner. NewMain sets defaults; the cmd methods fill in
// the rest.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	ConfigPath string
	Debug      bool
	Config     *app.Config
	Log        *slog.Logger
	DB         *store.DB
	Service    *app.Service
	Web        *web.Server
	closers    []func() error // run in reverse order by Close
	ops        opsState       // root check, metrics, pruner, drain (ops.go)
}

// NewMain returns a Main writing to the given streams.
func NewMain(stdin io.Reader, stdout, stderr io.Writer) *Main {
	return &Main{Stdin: stdin, Stdout: stdout, Stderr: stderr}
}

// open loads the configuration, opens the database and builds the Service.
func (m *Main) open(ctx context.Context) error {
	if m.Config == nil {
		if err := m.loadConfig(); err != nil {
			return err
		}
	}
	if err := privateDir(m.Config.Builds.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	db, err := store.Open(ctx, m.Config.DatabaseSource())
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	m.DB = db
	m.closers = append(m.closers, db.Close)
	key, err := loadSecretKey(m.Config)
	if err != nil {
		return err
	}
	svc, err := app.NewService(db, m.Config, key, m.Log)
	if err != nil {
		return err
	}
	svc.Forge = &forge.Adapter{}
	m.Service = svc
	return nil
}

// Close releases everything opened, in reverse order.
func (m *Main) Close() error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}

// withService parses the common flags, opens the service, runs fn with the
// remaining arguments and closes everything.
func (m *Main) withService(ctx context.Context, args []string, fn func(*app.Service, []string) error) error {
	pos, err := parseFlags(m.flagSet("builds"), args, true)
	if err != nil {
		return err
	}
	if err := m.open(ctx); err != nil {
		return err
	}
	defer m.Close()
	return fn(m.Service, pos)
}

// cmdServe runs the service until ctx is cancelled (SIGINT/SIGTERM).
func (m *Main) cmdServe(ctx context.Context, args []string) error {
	fs := m.flagSet("serve")
	fs.BoolVar(&m.ops.allowRoot, "allow-root", false, "run as root")
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments")
	}
	if m.Config == nil {
		if err := m.loadConfig(); err != nil {
			return err
		}
	}
	if err := m.checkRoot(); err != nil {
		return err
	}
	if err := privateDir(m.Config.Builds.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lock, err := lockDataDir(m.Config.Builds.DataDir)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	m.closers = append(m.closers, lock.Close)
	if err := m.open(ctx); err != nil {
		m.Close()
		return err
	}
	defer m.Close()
	if err := m.bootstrapAdmin(ctx); err != nil {
		return err
	}
	if err := m.startOps(ctx); err != nil {
		return err
	}
	if err := m.startServices(ctx); err != nil {
		return err
	}
	m.Web.Metrics = m.metricsOnWeb()
	if err := m.Web.Open(); err != nil {
		return err
	}
	m.closers = append(m.closers, m.Web.Close)
	m.Log.Info("builds is running", "version", version, "url", m.Config.Builds.Origin, "listen", m.Web.URL(), "data_dir", m.Config.Builds.DataDir, "config", configName(m.Config))
	<-ctx.Done()
	m.drain()
	m.Log.Info("shutting down")
	return m.Close()
}

// startServices wires everything behind the web server: notifications
// (triggers, user webhooks), the runner pool with its QEMU booter, and
// builds' own SSH server for `connect`. The pool always starts, even with
// [runner] slots = 0, so jobs a crashed process left running are failed.
func (m *Main) startServices(ctx context.Context) error {
	cfg := m.Config
	m.Web = &web.Server{Addr: cfg.Builds.Listen, Service: m.Service, Config: cfg, Log: m.Log}

	d, err := notify.NewDispatcher(m.Service, cfg, m.Log, m.Web)
	if err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	m.Web.WebhookPublicKey = d.PublicKey()
	d.Start(ctx)
	m.closers = append(m.closers, d.Close)
	m.Service.Listen(d)

	// remote runners' jobs whose runner stopped polling fail
	go m.Service.WatchLeases(ctx)
	return m.startRunner(ctx, func(images func() []app.RunnerImage) (runner.Server, error) {
		return runner.LocalServer(m.Service, images), nil
	})
}

// startRunner starts the runner: the pool with its QEMU booter, taking
// jobs from the server newServer returns (given the images this host can
// boot), and builds' own SSH server for `connect`.
func (m *Main) startRunner(ctx context.Context, newServer func(images func() []app.RunnerImage) (runner.Server, error)) error {
	cfg := m.Config
	catalog := &images.Catalog{Dir: cfg.Images.Dir, Aliases: cfg.Images.Aliases}
	booter, err := runner.NewQEMUBooter(cfg, catalog, cfg.Runner.Accel)
	if err != nil {
		return err
	}
	booter.Log = m.Log
	if cfg.Runner.Snapshots {
		booter.UseSnapshots(ctx, filepath.Join(cfg.Runner.CacheDir, "snapshots"), cfg.Runner.WarmGuests)
		if cfg.Runner.Layers {
			booter.UseLayers(layerStore(cfg, m.Log))
		}
		if m.Service != nil {
			m.Service.UseVMCache(booter)
		}
	}
	srv, err := newServer(runner.CatalogImages(catalog))
	if err != nil {
		return err
	}
	pool := runner.NewPool(srv, cfg, booter, m.Log)
	m.ops.pool = pool
	if m.Service != nil {
		booter.Metrics = m.Service.Metrics
	}
	m.closers = append(m.closers, booter.Close)
	if c, ok := srv.(interface{ Close() error }); ok {
		m.closers = append(m.closers, c.Close)
	}
	if err := pool.Start(ctx); err != nil {
		return err
	}
	m.closers = append(m.closers, pool.Close)
	if cfg.Runner.Slots > 0 {
		// Probe the accelerator now, so its verdict (and a TCG fallback
		// warning) shows at start-up rather than in the first job.
		go booter.Accel(ctx)
	}

	if cfg.Runner.SSHListen != "" {
		sshd := runner.NewSSHServer(srv, cfg, pool, m.Log)
		if err := sshd.Open(); err != nil {
			return fmt.Errorf("ssh server: %w", err)
		}
		m.closers = append(m.closers, sshd.Close)
		m.Log.Info("ssh server listening", "addr", sshd.Addr().String(), "connect", cfg.ConnectHint(sshd.Addr().String()))
	}
	return nil
}

func configName(cfg *app.Config) string {
	if cfg.Path == "" {
		return "(built-in defaults)"
	}
	return cfg.Path
}

// bootstrapAdmin creates an "admin" account with a password and an API
// token on the very first start, and prints both once.
func (m *Main) bootstrapAdmin(ctx context.Context) error {
	users, err := m.DB.FindUsers(ctx)
	if err != nil || len(users) > 0 {
		return err
	}
	pw := randomPassword()
	u, err := m.Service.CreateUser(ctx, "admin", "admin@localhost", true, pw)
	if err != nil {
		return fmt.Errorf("create admin: %w", err)
	}
	token, _, err := m.Service.CreateToken(ctx, u.ID, "", nil, "created on first start")
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	fmt.Fprintf(m.Stdout, `
First start: created the administrator account. These are shown only once.
  user:      admin
  password:  %s
  API token: %s
Use the token with curl -H "Authorization: Bearer <token>", or with hut
in ~/.config/hut/config:

%s
`, pw, token, hutConfig("local", m.Config.Builds.Origin, token))
	return nil
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// loadSecretKey reads the 32-byte key that encrypts secrets and signs
// cursors, creating it (mode 0600) on first start.
func loadSecretKey(cfg *app.Config) ([]byte, error) {
	path := cfg.Builds.SecretKey
	if path == "" {
		path = filepath.Join(cfg.Builds.DataDir, "secret.key")
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && cfg.Builds.SecretKey == "" {
		key := make([]byte, 32)
		rand.Read(key)
		enc := base64.StdEncoding.EncodeToString(key) + "\n"
		if err := os.WriteFile(path, []byte(enc), 0o600); err != nil {
			return nil, fmt.Errorf("write secret key: %w", err)
		}
		return key, nil
	} else if err != nil {
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret key %s must not be readable by group or others (chmod 600)", path)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("secret key %s: want 32 bytes, base64-encoded", path)
	}
	return key, nil
}

// privateDir creates dir (0700) or, for an existing install, takes group
// and others' access from it and from what lies directly in it: the data
// dir holds password hashes, private manifests, logs and keys. With the
// directory itself 0700 nothing deeper is reachable by other users;
// builds creates its own files 0600 and directories 0700.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || fi.Mode()&fs.ModeSymlink != 0 || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		mode := fs.FileMode(0o600)
		if fi.IsDir() {
			mode = 0o700
		}
		if err := os.Chmod(filepath.Join(dir, e.Name()), fi.Mode().Perm()&mode); err != nil {
			return err
		}
	}
	return nil
}

// layerStore opens the runner's package layers with their limits.
func layerStore(cfg *app.Config, log *slog.Logger) *runner.LayerStore {
	return runner.NewLayerStore(filepath.Join(cfg.Runner.CacheDir, "layers"), cfg.Runner.LayerMaxAge, cfg.Runner.LayerCacheSize, log)
}
