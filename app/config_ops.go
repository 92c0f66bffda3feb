package app

import (
	"strings"
	"time"
)

// The sections for running builds unattended: [retention] and [metrics].

// RetentionConfig is the [retention] section: how long job data is kept.
// A zero age keeps it forever.
type RetentionConfig struct {
	Artifacts time.Duration // artifacts' files (API url: null after)
	Logs      time.Duration // jobs' log text (a note stays in its place)
	Jobs      time.Duration // whole jobs: rows, logs and artifacts
	MaxSize   int64         // bytes the data dir may hold; 0 = no cap
	Interval  time.Duration // how often the pruner runs
}

// MetricsConfig is the [metrics] section: the Prometheus endpoint.
type MetricsConfig struct {
	Listen string // an address of its own for /metrics; "" = none
	Token  string // bearer token that opens /metrics on the main listener; "" = not there
}

// retentionDefaults are builds.sr.ht's: artifacts for 90 days, logs and
// jobs for good.
func retentionDefaults() RetentionConfig {
	return RetentionConfig{Artifacts: 90 * 24 * time.Hour, Interval: time.Hour}
}

// opsSections are the ini keys of [retention] and [metrics].
func opsSections() []configSection {
	return []configSection{
		{"retention", []configField{
			durationField("artifacts", func(c *Config) *time.Duration { return &c.Retention.Artifacts }),
			durationField("logs", func(c *Config) *time.Duration { return &c.Retention.Logs }),
			durationField("jobs", func(c *Config) *time.Duration { return &c.Retention.Jobs }),
			sizeField("max-size", func(c *Config) *int64 { return &c.Retention.MaxSize }),
			durationField("interval", func(c *Config) *time.Duration { return &c.Retention.Interval }),
		}},
		{"metrics", []configField{
			stringField("listen", func(c *Config) *string { return &c.Metrics.Listen }),
			secretField("token", func(c *Config) *string { return &c.Metrics.Token }),
		}},
	}
}

func (c *Config) validateOps() error {
	r, m := c.Retention, c.Metrics
	switch {
	case r.Artifacts < 0:
		return bad("retention", "artifacts", "must not be negative, got %s", r.Artifacts)
	case r.Logs < 0:
		return bad("retention", "logs", "must not be negative, got %s", r.Logs)
	case r.Jobs < 0:
		return bad("retention", "jobs", "must not be negative, got %s", r.Jobs)
	case r.MaxSize < 0:
		return bad("retention", "max-size", "must not be negative, got %d", r.MaxSize)
	case r.Interval <= 0:
		return bad("retention", "interval", "must be positive, got %s", r.Interval)
	case m.Listen != "" && checkAddr(m.Listen) != nil:
		return bad("metrics", "listen", "%v", checkAddr(m.Listen))
	case m.Token != "" && (len(m.Token) < 16 || strings.ContainsFunc(m.Token, func(r rune) bool { return r <= ' ' || r == 0x7f })):
		return bad("metrics", "token", "must be at least 16 characters without spaces or control characters")
	case c.Runner.MinFreeDisk < 0:
		return bad("runner", "min-free-disk", "must not be negative, got %d", c.Runner.MinFreeDisk)
	case c.Runner.ShutdownGrace < 0:
		return bad("runner", "shutdown-grace", "must not be negative, got %s", c.Runner.ShutdownGrace)
	}
	return nil
}
