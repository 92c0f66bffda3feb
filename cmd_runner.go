package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"builds/app"
	"builds/runner"
)

// cmdRunner runs this host as a remote runner of a builds server:
// `builds runner -server URL [-token-file F]`. It needs no database: jobs,
// logs and artifacts go to the server; images, snapshots, layers and the
// spool of logs being sent live in the data dir.
func (m *Main) cmdRunner(ctx context.Context, args []string) error {
	fs := m.flagSet("runner")
	fs.BoolVar(&m.ops.allowRoot, "allow-root", false, "run as root")
	server := fs.String("server", "", "the builds server's URL (default: [runner] server)")
	tokenFile := fs.String("token-file", "", "file holding the runner token (default: [runner] token-file, else $BUILDS_RUNNER_TOKEN)")
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("runner takes no arguments (did you mean runner-token?)")
	}
	if err := m.loadConfig(); err != nil {
		return err
	}
	cfg := m.Config
	if *server != "" {
		cfg.Runner.Server = *server
	}
	if *tokenFile != "" {
		cfg.Runner.TokenFile = *tokenFile
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := m.checkRoot(); err != nil {
		return err
	}
	if cfg.Runner.Server == "" {
		return usagef("runner: no server; give -server URL or set [runner] server")
	}
	token, err := runnerToken(cfg)
	if err != nil {
		return err
	}
	if err := privateDir(cfg.Builds.DataDir); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	defer m.Close()
	err = m.startRunner(ctx, func(images func() []app.RunnerImage) (runner.Server, error) {
		return runner.NewRemoteServer(runner.RemoteOptions{URL: cfg.Runner.Server, Token: token, Config: cfg,
			Images: images, Version: version, Log: m.Log})
	})
	if err != nil {
		return err
	}
	m.Log.Info("runner is running", "version", version, "server", cfg.Runner.Server, "slots", cfg.Runner.Slots,
		"data_dir", cfg.Builds.DataDir, "config", configName(cfg))
	<-ctx.Done()
	m.Log.Info("shutting down")
	return m.Close()
}

// runnerToken reads the runner token from [runner] token-file, else from
// $BUILDS_RUNNER_TOKEN.
func runnerToken(cfg *app.Config) (string, error) {
	if cfg.Runner.TokenFile != "" {
		b, err := os.ReadFile(cfg.Runner.TokenFile)
		if err != nil {
			return "", fmt.Errorf("runner token: %w", err)
		}
		if fi, err := os.Stat(cfg.Runner.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("runner token: %s is readable by others (mode %04o); chmod 600 it", cfg.Runner.TokenFile, fi.Mode().Perm())
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := strings.TrimSpace(os.Getenv("BUILDS_RUNNER_TOKEN")); t != "" {
		return t, nil
	}
	return "", usagef("runner: no token; give -token-file FILE, set [runner] token-file, or set BUILDS_RUNNER_TOKEN")
}

// cmdRunnerToken manages remote runners' registrations on the server:
// `builds runner-token create NAME | list | revoke NAME`.
func (m *Main) cmdRunnerToken(ctx context.Context, args []string) error {
	pos, err := parseFlags(m.flagSet("runner-token"), args, false)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("runner-token: want create NAME, list or revoke NAME")
	}
	sys := app.SystemContext(ctx)
	switch pos[0] {
	case "create":
		if len(pos) != 2 {
			return usagef("runner-token create NAME")
		}
		return m.run(ctx, func(svc *app.Service) error {
			secret, r, err := svc.CreateRunner(sys, pos[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(m.Stdout, secret)
			fmt.Fprintf(m.Stderr, "runner %s (id %d); the token is shown only this once. On the runner host:\n"+
				"  install -m 600 /dev/stdin /etc/builds/runner.token   # paste the token\n"+
				"  builds runner -server %s -token-file /etc/builds/runner.token\n", r.Name, r.ID, m.Config.Builds.Origin)
			return nil
		})
	case "list":
		if len(pos) != 1 {
			return usagef("runner-token list")
		}
		return m.run(ctx, func(svc *app.Service) error {
			rs, err := svc.Runners(sys)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tCREATED\tLAST SEEN\tADDRESS\tSLOTS\tIMAGES\tSTATE")
			now := time.Now()
			for _, r := range rs {
				seen, state := "never", "waiting for its first poll"
				if r.LastSeen != nil {
					seen = r.LastSeen.UTC().Format(time.DateTime)
					state = "gone"
					if r.Live(now, m.Config.Runner.Lease) {
						state = "live"
					}
				}
				if r.Revoked != nil {
					state = "revoked " + r.Revoked.UTC().Format(time.DateTime)
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.ID, r.Name, r.Created.UTC().Format(time.DateTime), seen,
					dash(r.Report.Address), r.Report.Slots, len(r.Report.Images), state)
			}
			return w.Flush()
		})
	case "revoke":
		if len(pos) != 2 {
			return usagef("runner-token revoke NAME")
		}
		return m.run(ctx, func(svc *app.Service) error {
			r, err := svc.RevokeRunner(sys, pos[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(m.Stderr, "revoked runner %s; the jobs it held failed\n", r.Name)
			return nil
		})
	}
	return usagef("runner-token: unknown subcommand %q (want create, list or revoke)", pos[0])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
