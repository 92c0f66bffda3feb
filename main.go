// Command builds is a self-hosted, builds.sr.ht-compatible CI appliance:
// GraphQL API, web UI, SQLite storage and a QEMU job runner in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"builds/app"
)

// Build information, set with -ldflags "-X main.version=...".
var (
	version = "0.1.0-dev"
	commit  = ""
)

const usage = `usage: builds <command> [arguments] [-config FILE]

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
  manifest check FILE...       validate build manifests
  image build|list|rm|export|import|check ...
  config dump                  print the effective configuration
  version

The configuration is read from -config FILE, else $BUILDS_CONFIG, else
./builds.ini if present, else built-in defaults.
`

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
	if len(args) == 0 {
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "builds %s%s\n", version, commitSuffix())
		return nil
	}
	m := NewMain(stdin, stdout, stderr)
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
	}
	return usagef("unknown command %q", cmd)
}

func commitSuffix() string {
	if commit == "" {
		return ""
	}
	return " (" + commit + ")"
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
