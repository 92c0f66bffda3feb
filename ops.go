package main

// Running builds unattended: the root check, metrics, the pruner, the
// scheduler and the graceful stop of `builds serve`.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"builds/metrics"
	"builds/runner"
)

// opsState is what serve starts besides the service proper.
type opsState struct {
	allowRoot bool             // serve (or runner) --allow-root
	euid      func() int       // os.Geteuid; tests replace it
	metrics   *metrics.Metrics // nil: metrics off
	pool      *runner.Pool     // drained at a stop
}

// errRoot explains why serve does not run as root.
const errRoot = `refusing to run as root: builds runs untrusted build jobs, and a bug in QEMU,
the SSH server or the web UI would then own the host. Run it as an unprivileged
user in the kvm group (see contrib/builds.service), or, knowing this, pass
--allow-root or set [builds] allow-root = true`

// checkRoot refuses to serve (or run jobs as a runner) as root unless
// told so.
func (m *Main) checkRoot() error {
	euid := os.Geteuid
	if m.ops.euid != nil {
		euid = m.ops.euid
	}
	if euid() != 0 || m.ops.allowRoot || m.Config.Builds.AllowRoot {
		return nil
	}
	return fmt.Errorf("%s", errRoot)
}

// startOps sets up metrics (before the runner and web server, which
// report to them), the pruner and the repositories' scheduler.
func (m *Main) startOps(ctx context.Context) error {
	mc := m.Config.Metrics
	if mc.Listen != "" || mc.Token != "" {
		m.ops.metrics = metrics.New(m.Service)
		m.Service.Metrics = m.ops.metrics
	}
	if mc.Listen != "" {
		srv := &metrics.Server{Addr: mc.Listen, Handler: m.ops.metrics.Handler(), Log: m.Log}
		if err := srv.Open(); err != nil {
			return err
		}
		m.closers = append(m.closers, srv.Close)
		m.Log.Info("metrics listening", "url", srv.URL()+"/metrics")
	}
	p := m.Service.StartPruner(ctx)
	m.closers = append(m.closers, p.Close)
	// connected repositories' schedules (builds repo add --schedule)
	sc := m.Service.StartScheduler(ctx)
	m.closers = append(m.closers, sc.Close)
	return nil
}

// metricsOnWeb returns the handler /metrics is served with on the main
// listener: behind [metrics] token, or nil (not there).
func (m *Main) metricsOnWeb() http.Handler {
	if m.ops.metrics == nil || m.Config.Metrics.Token == "" {
		return nil
	}
	return metrics.RequireToken(m.Config.Metrics.Token, m.ops.metrics.Handler())
}

// drain is the graceful part of a stop: the runner takes no new job
// (queued ones stay queued for the next start) and running jobs get
// [runner] shutdown-grace to finish before they are cancelled, while the
// web UI and API stay up to show them.
func (m *Main) drain() {
	if m.ops.pool == nil {
		return
	}
	grace := m.Config.Runner.ShutdownGrace
	m.Log.Info("stopping: running jobs may finish", "shutdown_grace", grace)
	start := time.Now()
	n := m.ops.pool.Drain(grace)
	if n > 0 {
		m.Log.Warn("stopping: cancelled jobs still running after the grace period", "jobs", n, "waited", time.Since(start).Round(time.Second))
	}
}
