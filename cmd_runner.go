package main

import (
	"context"
	"fmt"

	"builds/images"
	"builds/notify"
	"builds/runner"
	"builds/web"
)

// startRunner wires everything behind the web server: notifications
// (triggers, user webhooks), the runner pool with its QEMU booter, and
// builds' own SSH server for `connect`. The pool always starts, even with
// [runner] slots = 0, so jobs a crashed process left running are failed.
func (m *Main) startRunner(ctx context.Context) error {
	cfg := m.Config
	m.Web = &web.Server{Addr: cfg.Builds.Listen, Service: m.Service, Config: cfg, Log: m.Log}

	d, err := notify.NewDispatcher(m.Service, cfg, m.Log, m.Web)
	if err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	m.Web.WebhookPublicKey = d.PublicKey()
	d.Start(ctx)
	m.closers = append(m.closers, d.Close)
	m.Service.Events = d

	catalog := &images.Catalog{Dir: cfg.Images.Dir, Aliases: cfg.Images.Aliases}
	booter, err := runner.NewQEMUBooter(cfg, catalog, cfg.Runner.Accel)
	if err != nil {
		return err
	}
	booter.Log = m.Log
	pool := runner.NewPool(m.Service, cfg, booter, m.Log)
	m.Service.Runner = pool
	m.Service.Wake = pool.Wake
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
		sshd := runner.NewSSHServer(m.Service, cfg, pool, m.Log)
		if err := sshd.Open(); err != nil {
			return fmt.Errorf("ssh server: %w", err)
		}
		m.closers = append(m.closers, sshd.Close)
		m.Log.Info("ssh server listening", "addr", sshd.Addr().String(), "connect", fmt.Sprintf("ssh -t %s@%s connect <job>", cfg.Runner.SSHUser, cfg.RunnerName()))
	}
	return nil
}
