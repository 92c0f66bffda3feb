package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// get fetches url with an optional bearer token.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// parseMetrics parses a /metrics answer with Prometheus' text parser.
func parseMetrics(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, text)
	}
	return fams
}

// sample returns the value (a histogram's count) of the sample of name
// with the label pair, or -1.
func sample(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	for _, m := range fams[name].GetMetric() {
		ok := label == ""
		for _, l := range m.GetLabel() {
			ok = ok || l.GetName() == label && l.GetValue() == value
		}
		if !ok {
			continue
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
	return -1
}

// adminToken returns the API token serve printed on its first start.
func adminToken(t *testing.T, s *served) string {
	t.Helper()
	out := s.out.String()
	i := strings.Index(out, "API token: ")
	if i < 0 {
		t.Fatalf("no token printed: %q", out)
	}
	return strings.Fields(out[i+len("API token: "):])[0]
}

// TestMetricsEndpoint: with [metrics] listen, /metrics is served there (and
// not on the main listener) in Prometheus' format, with the jobs in the
// database, request latency by route class and GraphQL errors.
func TestMetricsEndpoint(t *testing.T) {
	mport := freePort(t)
	cfg := testConfig(t, "")
	appendConfig(t, cfg, fmt.Sprintf("[metrics]\nlisten = 127.0.0.1:%d\n", mport))
	s := serveConfig(t, cfg, freePort(t))
	token := adminToken(t, s)
	for range 2 {
		gql(t, s.base, token, `mutation s($m: String!) { submit(manifest: $m) { id } }`,
			map[string]any{"m": "image: debian/stable\ntasks:\n  - a: echo hi\n"})
	}
	// a query that fails validation
	req, _ := http.NewRequest("POST", s.base+"/query", strings.NewReader(`{"query":"{ nosuchfield }"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	if st, _ := get(t, s.base+"/metrics", ""); st != 404 {
		t.Errorf("/metrics on the main listener: %d, want 404", st)
	}
	if st, _ := get(t, s.base+"/metrics", token); st != 404 {
		t.Errorf("/metrics on the main listener with an API token: %d, want 404", st)
	}
	st, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), "")
	if st != 200 {
		t.Fatalf("metrics: %d %s", st, body)
	}
	fams := parseMetrics(t, body)
	for _, tc := range []struct {
		name, label, value string
		min                float64
	}{
		{"builds_jobs", "status", "queued", 2},
		{"builds_queue_length", "", "", 2},
		{"builds_queue_oldest_wait_seconds", "", "", 0},
		{"builds_http_request_duration_seconds", "route", "graphql", 3},
		{"builds_graphql_errors_total", "code", "GRAPHQL_VALIDATION_FAILED", 1},
		{"builds_vms_running", "", "", 0},
	} {
		if got := sample(fams, tc.name, tc.label, tc.value); got < tc.min {
			t.Errorf("%s{%s=%q} = %v, want >= %v", tc.name, tc.label, tc.value, got, tc.min)
		}
	}
	if got := sample(fams, "builds_jobs", "status", "running"); got != 0 {
		t.Errorf("running jobs = %v", got)
	}
}

// TestMetricsToken: with [metrics] token, /metrics is on the main listener
// for that bearer token only; an API token does not open it and the
// metrics token is no API token; the config dump hides it.
func TestMetricsToken(t *testing.T) {
	const mtoken = "metrics-0123456789abcdef"
	cfg := testConfig(t, "")
	appendConfig(t, cfg, "[metrics]\ntoken = "+mtoken+"\n")
	s := serveConfig(t, cfg, freePort(t))
	api := adminToken(t, s)
	if st, _ := get(t, s.base+"/metrics", ""); st != 401 {
		t.Errorf("no token: %d", st)
	}
	if st, _ := get(t, s.base+"/metrics", api); st != 401 {
		t.Errorf("API token: %d", st)
	}
	st, body := get(t, s.base+"/metrics", mtoken)
	if st != 200 {
		t.Fatalf("metrics token: %d %s", st, body)
	}
	if sample(parseMetrics(t, body), "builds_jobs", "status", "pending") != 0 {
		t.Error("no job counts")
	}
	req, _ := http.NewRequest("POST", s.base+"/query", strings.NewReader(`{"query":"{ me { canonicalName } }"}`))
	req.Header.Set("Authorization", "Bearer "+mtoken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("metrics token on the API: %d", resp.StatusCode)
	}
	out, _, err := run(t, cfg, "", "config", "dump")
	if err != nil || strings.Contains(out, mtoken) || !strings.Contains(out, "token = (set)") {
		t.Errorf("config dump shows the token or fails: %v\n%s", err, out)
	}
	if strings.Contains(s.errb.String(), mtoken) {
		t.Error("metrics token in the server log")
	}
	t.Run("ErrShortToken", func(t *testing.T) {
		cfg := testConfig(t, "")
		appendConfig(t, cfg, "[metrics]\ntoken = short\n")
		if _, _, err := run(t, cfg, "", "config", "dump"); err == nil || !strings.Contains(err.Error(), "metrics.token") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("ErrListen", func(t *testing.T) {
		cfg := testConfig(t, "")
		appendConfig(t, cfg, "[metrics]\nlisten = nonsense\n")
		if _, _, err := run(t, cfg, "", "config", "dump"); err == nil || !strings.Contains(err.Error(), "metrics.listen") {
			t.Errorf("err = %v", err)
		}
	})
}
