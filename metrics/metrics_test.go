package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"builds/app"
	"builds/metrics"
)

type statsFunc func(ctx context.Context) (*app.JobStats, error)

func (f statsFunc) JobStats(ctx context.Context) (*app.JobStats, error) { return f(ctx) }

// scrape fetches url and parses it with Prometheus' own text parser.
func scrape(t *testing.T, url string, header http.Header) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value returns the value of the family's sample whose labels include
// labels (name, value pairs); histograms give their sample count.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with %v", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	oldest := time.Now().Add(-90 * time.Second)
	m := metrics.New(statsFunc(func(ctx context.Context) (*app.JobStats, error) {
		return &app.JobStats{ByStatus: map[app.JobStatus]int64{app.JobQueued: 3, app.JobSuccess: 7}, OldestQueued: &oldest}, nil
	}))
	m.JobStarted(4 * time.Second)
	m.VMStarted("snapshot", 800*time.Millisecond)
	m.VMStarted("boot", 9*time.Second)
	m.VMRunning(1)
	m.VMRunning(1)
	m.VMRunning(-1)
	m.LogBytes(100)
	m.LogBytes(23)
	m.ArtifactBytes(4096)
	m.Delivery("webhook", "sent")
	m.Delivery("user_webhook", "retry")
	m.HTTPRequest("graphql", 3*time.Millisecond)
	m.GraphQLError("NOT_FOUND")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	fams := scrape(t, srv.URL, nil)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"builds_jobs", []string{"status", "queued"}, 3},
		{"builds_jobs", []string{"status", "success"}, 7},
		{"builds_jobs", []string{"status", "running"}, 0},
		{"builds_queue_length", nil, 3},
		{"builds_queue_wait_seconds", nil, 1},
		{"builds_vm_start_seconds", []string{"how", "snapshot"}, 1},
		{"builds_vm_start_seconds", []string{"how", "warm"}, 0},
		{"builds_vms_running", nil, 1},
		{"builds_log_bytes_written_total", nil, 123},
		{"builds_artifact_bytes_total", nil, 4096},
		{"builds_deliveries_total", []string{"kind", "webhook", "outcome", "sent"}, 1},
		{"builds_deliveries_total", []string{"kind", "user_webhook", "outcome", "retry"}, 1},
		{"builds_http_request_duration_seconds", []string{"route", "graphql"}, 1},
		{"builds_http_request_duration_seconds", []string{"route", "ui"}, 0},
		{"builds_graphql_errors_total", []string{"code", "NOT_FOUND"}, 1},
	} {
		if got := value(t, fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if w := value(t, fams, "builds_queue_oldest_wait_seconds"); w < 89 || w > 600 {
		t.Errorf("oldest wait %v", w)
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("no Go or process metrics")
	}

	t.Run("ErrStats", func(t *testing.T) {
		// a failing database read is reported; the rest is still served
		m := metrics.New(statsFunc(func(context.Context) (*app.JobStats, error) { return nil, errors.New("disk on fire") }))
		m.LogBytes(5)
		srv := httptest.NewServer(m.Handler())
		defer srv.Close()
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "builds_log_bytes_written_total 5") {
			t.Errorf("status %d, body:\n%s", resp.StatusCode, b)
		}
	})
}

func TestRequireToken(t *testing.T) {
	h := metrics.RequireToken("s3cret-token-0123456789", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"OK", "Bearer s3cret-token-0123456789", 200},
		{"OKLowerCase", "bearer s3cret-token-0123456789", 200},
		{"ErrNone", "", 401},
		{"ErrWrong", "Bearer s3cret-token-0123456788", 401},
		{"ErrPrefix", "Bearer s3cret-token", 401},
		{"ErrLonger", "Bearer s3cret-token-0123456789x", 401},
		{"ErrBasic", "Basic czNjcmV0LXRva2Vu", 401},
		{"ErrNoScheme", "s3cret-token-0123456789", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || tc.want == 401 && strings.Contains(string(b), "s3cret") {
				t.Errorf("status %d body %q", resp.StatusCode, b)
			}
		})
	}
}
