// Package metrics is builds' Prometheus instrumentation: it implements
// app.Metrics with the official client library, reads the job counts
// from the Service at each scrape, and serves /metrics, on a listener of
// its own or through the web server behind a bearer token.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"builds/app"
)

// JobStatser reads the job counts at each scrape (the Service).
type JobStatser interface {
	JobStats(ctx context.Context) (*app.JobStats, error)
}

// Metrics holds builds' metrics in a registry of their own.
type Metrics struct {
	reg *prometheus.Registry

	queueWait     prometheus.Histogram
	vmStart       *prometheus.HistogramVec
	vmsRunning    prometheus.Gauge
	logBytes      prometheus.Counter
	artifactBytes prometheus.Counter
	deliveries    *prometheus.CounterVec
	httpLatency   *prometheus.HistogramVec
	gqlErrors     *prometheus.CounterVec
}

var _ app.Metrics = (*Metrics)(nil)

// Route classes of HTTP requests (web's logRequests names them).
var RouteClasses = []string{"graphql", "log", "artifact", "api", "worker", "events", "ui", "static", "unmatched"}

// VMStarts are the ways a job's guest starts (app.Metrics.VMStarted).
var VMStarts = []string{"boot", "snapshot", "warm", "layer"}

// scrapeTimeout bounds the database reads of one scrape.
const scrapeTimeout = 10 * time.Second

// New returns the metrics, reading job counts from stats at each scrape.
func New(stats JobStatser) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "builds_queue_wait_seconds",
			Help:    "Time from a job's submission to its start on a runner.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600},
		}),
		vmStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "builds_vm_start_seconds",
			Help:    "Time until a job's guest is ready, by how it started (boot, snapshot resume, warm guest, package layer).",
			Buckets: []float64{0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120},
		}, []string{"how"}),
		vmsRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "builds_vms_running",
			Help: "Job guests (VMs) up now, kept ones of failed jobs included.",
		}),
		logBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "builds_log_bytes_written_total",
			Help: "Bytes written to job logs.",
		}),
		artifactBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "builds_artifact_bytes_total",
			Help: "Bytes of artifacts stored.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "builds_deliveries_total",
			Help: "Trigger (email, webhook) and user webhook delivery attempts, by outcome.",
		}, []string{"kind", "outcome"}),
		httpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "builds_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route class.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		gqlErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "builds_graphql_errors_total",
			Help: "Errors in GraphQL answers, by error code.",
		}, []string{"code"}),
	}
	for _, how := range VMStarts {
		m.vmStart.WithLabelValues(how)
	}
	for _, r := range RouteClasses {
		m.httpLatency.WithLabelValues(r)
	}
	m.reg.MustRegister(m.queueWait, m.vmStart, m.vmsRunning, m.logBytes, m.artifactBytes,
		m.deliveries, m.httpLatency, m.gqlErrors, newJobCollector(stats),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text (or protobuf, when
// asked) format. A failed job count is reported in the answer; the other
// metrics are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Registry returns the registry (tests gather from it directly).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) JobStarted(wait time.Duration) { m.queueWait.Observe(max(wait, 0).Seconds()) }

func (m *Metrics) VMStarted(how string, took time.Duration) {
	m.vmStart.WithLabelValues(how).Observe(took.Seconds())
}

func (m *Metrics) VMRunning(delta int)   { m.vmsRunning.Add(float64(delta)) }
func (m *Metrics) LogBytes(n int)        { m.logBytes.Add(float64(n)) }
func (m *Metrics) ArtifactBytes(n int64) { m.artifactBytes.Add(float64(n)) }

func (m *Metrics) Delivery(kind, outcome string) { m.deliveries.WithLabelValues(kind, outcome).Inc() }

func (m *Metrics) HTTPRequest(route string, took time.Duration) {
	m.httpLatency.WithLabelValues(route).Observe(took.Seconds())
}

func (m *Metrics) GraphQLError(code string) { m.gqlErrors.WithLabelValues(code).Inc() }

// jobCollector reads the job counts from the database at each scrape.
type jobCollector struct {
	stats                   JobStatser
	jobs, queue, oldestWait *prometheus.Desc
}

func newJobCollector(stats JobStatser) *jobCollector {
	return &jobCollector{
		stats:      stats,
		jobs:       prometheus.NewDesc("builds_jobs", "Jobs by status.", []string{"status"}, nil),
		queue:      prometheus.NewDesc("builds_queue_length", "Jobs queued, waiting for a runner.", nil, nil),
		oldestWait: prometheus.NewDesc("builds_queue_oldest_wait_seconds", "How long the oldest queued job has waited since its submission (0 with none queued).", nil, nil),
	}
}

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.queue
	ch <- c.oldestWait
}

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := c.stats.JobStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.jobs, err)
		return
	}
	for _, s := range app.JobStatuses {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(st.ByStatus[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.ByStatus[app.JobQueued]))
	wait := 0.0
	if st.OldestQueued != nil {
		wait = max(time.Since(*st.OldestQueued).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.oldestWait, prometheus.GaugeValue, wait)
}
