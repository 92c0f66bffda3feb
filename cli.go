package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"builds/app"
)

const usage = `usage: builds [-config FILE] [-debug] <command> [arguments]

commands:
  serve                        run the service (API, web UI, runner)
  user add NAME --email E [--admin] [--password-stdin]
  user list
  user passwd NAME             read a new password from standard input
  user key add NAME KEY...     add an SSH public key (for 'ssh ... connect')
  token create NAME [--grants "JOBS:RW LOGS:RO"] [--expires 90d] [--comment C]
  token list NAME
  token revoke ID
  secret add --user U --type ssh|pgp|file [--name N] [--path P --mode 0600] < FILE
  secret list --user U
  repo add --user U --kind github|gitlab|forgejo|gitea|git --url URL [--name N]
       [--deploy-key SECRET] [--token-stdin] [--branches "main rel/*"] [--visibility V]
       [--pull-requests] [--schedule "0 3 * * *"]
  repo set --user U NAME [--pull-requests=true|false] [--schedule CRON|""]
                               change a repository's settings
  repo list --user U | repo rm --user U NAME   connected repositories (built on push)
  submit-repo --user U REPO [REF]  build a branch's tip (or tag, commit) of a repository
  hook post-receive --url URL --secret-file F  a bare repository's post-receive hook
       (repo add --kind git prints how to install it)
  manifest check FILE...       validate build manifests
  image build|import-cloud|list|rm|export|import|check ...
  layer list | rm KEY... | prune  manage the package layers jobs reuse
  runner -server URL [-token-file F]  run this host as a remote runner of a server
  runner-token create NAME | list | revoke NAME  manage remote runners (on the server)
  db copy --to DEST [--from SRC]  copy the database (to PostgreSQL, or back to SQLite)
  backup DIR                   back up the data dir into DIR (while the server runs)
  restore DIR                  restore a backup into the empty configured data dir
  config dump                  print the effective configuration
  version

The configuration is read from -config FILE, else $BUILDS_CONFIG, else
./builds.ini if present, else built-in defaults.
`

// errorText shows application errors by their message and others whole.
func errorText(err error) string {
	var ae *app.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Run executes one command line. It is main without the process exit, so
// tests can call it.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		args = []string{"version"}
	}
	m := NewMain(stdin, stdout, stderr)
	// the flags every command takes may come before the command too
	global := m.flagSet("builds")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return usagef("%v", err)
	}
	args = global.Args()
	if len(args) == 0 {
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version":
		fmt.Fprintf(stdout, "builds %s%s\n", version, commitSuffix())
		return nil
	}
	switch cmd {
	case "serve":
		return m.cmdServe(ctx, rest)
	case "user":
		return m.cmdUser(ctx, rest)
	case "token":
		return m.cmdToken(ctx, rest)
	case "secret":
		return m.withService(ctx, rest, func(svc *app.Service, args []string) error {
			return runSecret(app.SystemContext(ctx), svc, args, m.Stdin, m.Stdout, m.Stderr)
		})
	case "repo":
		return m.withService(ctx, rest, func(svc *app.Service, args []string) error {
			return runRepo(app.SystemContext(ctx), svc, args, m.Stdin, m.Stdout, m.Stderr)
		})
	case "submit-repo":
		return m.withService(ctx, rest, func(svc *app.Service, args []string) error {
			return runSubmitRepo(app.SystemContext(ctx), svc, args, m.Stdout, m.Stderr)
		})
	case "hook":
		return runHook(ctx, rest, os.Getenv, m.Stdin, m.Stdout, m.Stderr)
	case "manifest":
		return m.cmdManifest(ctx, rest)
	case "image":
		fs := m.flagSet("image")
		pos, err := parseFlags(fs, rest, true)
		if err != nil {
			return err
		}
		if err := m.loadConfig(); err != nil {
			return err
		}
		return runImage(ctx, m.Config, pos, m.Stdin, m.Stdout, m.Stderr)
	case "config":
		return m.cmdConfig(rest)
	case "layer":
		return m.cmdLayer(rest)
	case "runner":
		return m.cmdRunner(ctx, rest)
	case "runner-token":
		return m.cmdRunnerToken(ctx, rest)
	case "db":
		return m.cmdDB(ctx, rest)
	case "backup":
		return m.cmdBackup(ctx, rest)
	case "restore":
		return m.cmdRestore(ctx, rest)
	}
	return usagef("unknown command %q", cmd)
}

func commitSuffix() string {
	if commit == "" {
		return ""
	}
	return " (" + commit + ")"
}

// flagSet returns a FlagSet with the flags every command accepts.
func (m *Main) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// defaults are what the flags before the command set
	fs.StringVar(&m.ConfigPath, "config", m.ConfigPath, "configuration file")
	fs.BoolVar(&m.Debug, "debug", m.Debug, "debug logging")
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

// parseFlags parses fs allowing flags after positional arguments
// ("user add alice --email a@b"). With passUnknown, arguments that look
// like flags fs does not define are passed through as positional (for
// subcommands that parse their own flags).
func parseFlags(fs *flag.FlagSet, args []string, passUnknown bool) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			args = args[1:]
			continue
		}
		name := strings.TrimLeft(a, "-")
		name, _, _ = strings.Cut(name, "=")
		if fs.Lookup(name) == nil && passUnknown {
			pos = append(pos, a)
			args = args[1:]
			// keep an unknown flag's value with it unless it is a flag too
			if !strings.Contains(a, "=") && len(args) > 0 && !strings.HasPrefix(args[0], "-") && !isBoolFlagName(name) {
				pos = append(pos, args[0])
				args = args[1:]
			}
			continue
		}
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) > 0 && args[0] == a { // Parse stopped at a positional
			pos = append(pos, a)
			args = args[1:]
		}
	}
	return pos, nil
}

// isBoolFlagName lists value-less flags of subcommands that parse their own
// flags, so parseFlags does not swallow the next argument.
func isBoolFlagName(name string) bool {
	switch name {
	case "admin", "password-stdin", "force", "progress", "no-progress", "json":
		return true
	}
	return false
}
