package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"builds/app"
	"builds/store"
	"builds/web"
)

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
}

// NewMain returns a Main writing to the given streams.
func NewMain(stdin io.Reader, stdout, stderr io.Writer) *Main {
	return &Main{Stdin: stdin, Stdout: stdout, Stderr: stderr}
}

// flagSet returns a FlagSet with the flags every command accepts.
func (m *Main) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&m.ConfigPath, "config", "", "configuration file")
	fs.BoolVar(&m.Debug, "debug", false, "debug logging")
	return fs
}

// loadConfig finds and loads the configuration (see usage).
func (m *Main) loadConfig() error {
	cfg, err := app.FindConfig(m.ConfigPath, os.Getenv)
	if err != nil {
		return err
	}
	if err := cfg.Abs(); err != nil {
		return err
	}
	if m.Debug {
		cfg.Builds.LogLevel = "debug"
	}
	m.Config = cfg
	m.Log = newLogger(cfg, m.Stderr)
	return nil
}

func newLogger(cfg *app.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Builds.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Builds.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
	db, err := store.Open(ctx, filepath.Join(m.Config.Builds.DataDir, "builds.db"))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	m.DB = db
	m.closers = append(m.closers, db.Close)
	key, err := loadSecretKey(m.Config)
	if err != nil {
		return err
	}
	svc, err := app.NewService(db, m.Config, key)
	if err != nil {
		return err
	}
	svc.Log = m.Log
	m.Service = svc
	return nil
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

// cmdServe runs the service until ctx is cancelled (SIGINT/SIGTERM).
func (m *Main) cmdServe(ctx context.Context, args []string) error {
	pos, err := parseFlags(m.flagSet("serve"), args, false)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve takes no arguments")
	}
	if err := m.open(ctx); err != nil {
		return err
	}
	defer m.Close()
	if err := m.bootstrapAdmin(ctx); err != nil {
		return err
	}
	if err := m.startRunner(ctx); err != nil {
		return err
	}
	if err := m.Web.Open(); err != nil {
		return err
	}
	m.closers = append(m.closers, m.Web.Close)
	m.Log.Info("builds is running", "version", version, "url", m.Config.Builds.Origin, "listen", m.Web.URL(), "data_dir", m.Config.Builds.DataDir, "config", configName(m.Config))
	<-ctx.Done()
	m.Log.Info("shutting down")
	return m.Close()
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
Use the token with hut (builds { origin %q }) or curl -H "Authorization: Bearer <token>".

`, pw, token, m.Config.Builds.Origin)
	return nil
}

func randomPassword() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
