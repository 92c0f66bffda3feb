package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"builds/app"
)

// aliasedLogs is the attack of the security issue: n aliases of every
// job's log tail.
func aliasedLogs(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		fmt.Fprintf(&b, " a%d: jobs { results { log { last128KiB } } }", i)
	}
	b.WriteString(" }")
	return b.String()
}

func TestGraphQLCostLimit(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	tests := []struct {
		name, query string
		refused     bool
	}{
		{"OneLogPage", "{ jobs { results { id log { last128KiB } } } }", false},
		{"HutList", hutJobs, false},
		{"Introspection", introspectionQuery, false},
		{"AliasedLogs", aliasedLogs(250), true},
		{"FewAliasedLogs", aliasedLogs(4), true},
		{"FragmentSpreads", "query { a: jobs { results { ...L } } b: jobs { results { ...L } } c: jobs { results { ...L } } d: jobs { results { ...L } } } " +
			"fragment L on Job { log { last128KiB } tasks { log { last128KiB } } }", true},
		{"NestedPages", "{ jobs { results { owner { ... on User { jobs { results { manifest } } } } } } }", true},
		{"InlineOnInterface", "{ secrets { results { ... on SecretFile { path } } } }", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.query(tok, tt.query, nil)
			if !tt.refused {
				if len(r.Errors) > 0 && r.Errors[0].Extensions["code"] == "QUERY_TOO_COMPLEX" {
					t.Fatalf("refused: %s", r.errText())
				}
				return
			}
			if len(r.Errors) != 1 || r.Errors[0].Extensions["code"] != "QUERY_TOO_COMPLEX" ||
				!strings.Contains(r.Errors[0].Message, "the limit is 10000") || r.Data != nil {
				t.Fatalf("not refused up front: %.500s", r.Raw)
			}
		})
	}
}

// TestGraphQLResponseBudget: estimates can be beaten (a job with far
// more tasks than the estimate), the runtime budget cannot.
func TestGraphQLResponseBudget(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	job := e.bigJob(alice, 100, 128<<10)
	q := fmt.Sprintf("{ job(id: %d) { id tasks { name log { last128KiB } } } }", job.ID)
	r := e.query(tok, q, nil)
	if r.Status != http.StatusOK || !strings.Contains(r.errText(), "response too large: the limit is 4 MiB per request") {
		t.Fatalf("status %d, errors %q", r.Status, r.errText())
	}
	if len(r.Raw) > maxResponseBytes+1<<20 {
		t.Errorf("response is %d bytes", len(r.Raw))
	}
	// the same job, asked for less, answers in full
	d := e.mustQuery(tok, fmt.Sprintf("{ job(id: %d) { tasks { name status } } }", job.ID), nil)
	if n := len(get(d, "job", "tasks").([]any)); n != 100 {
		t.Errorf("%d tasks", n)
	}
}

// bigJob makes a job of n running tasks, each with a log of size bytes.
func (e *apiEnv) bigJob(u *app.User, n, size int) *app.Job {
	e.t.Helper()
	var m strings.Builder
	m.WriteString("image: alpine/latest\ntasks:\n")
	for i := range n {
		fmt.Fprintf(&m, "  - t%d: \"true\"\n", i)
	}
	execute := false
	job, err := e.svc.Submit(as(u), app.SubmitInput{Manifest: m.String(), Execute: &execute})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx := app.SystemContext(context.Background())
	tasks, err := e.db.FindTasks(ctx, job.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	text := strings.Repeat("x", size-1) + "\n"
	for _, tk := range tasks {
		if err := e.svc.SetTaskStatus(ctx, tk, app.TaskSuccess); err != nil {
			e.t.Fatal(err)
		}
		writeFile(e.t, e.svc.LogPath(job.ID, tk.Name), text)
	}
	writeFile(e.t, e.svc.LogPath(job.ID, ""), text)
	return job
}

func TestWebhookQueryCost(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	r := e.query(tok, `mutation($q: String!) { createUserWebhook(config: {url: "https://hooks.example.org/x", events: [JOB_CREATED], query: $q}) { id } }`,
		map[string]any{"q": "query { webhook { uuid } " + strings.TrimPrefix(aliasedLogs(40), "{")})
	if !strings.Contains(r.errText(), "Error validating webhook query: query is too expensive") {
		t.Fatalf("expensive webhook query accepted: %s", r.Raw)
	}
}

// BenchmarkGraphQLCostlyQueries reports how much the server's heap grows
// (peak over idle, sampled while the requests run) under the attacks of
// the security issue: 250 aliases of every job's log, and three at once;
// and under three requests the estimate lets through that the runtime
// budget has to stop. The target is under 100 MB.
func BenchmarkGraphQLCostlyQueries(b *testing.B) {
	e := newAPIEnv(b)
	alice, tok := e.user("alice")
	for range 25 {
		e.run(e.submit(alice, app.Public), strings.Repeat("s", 128<<10), strings.Repeat("t", 128<<10))
	}
	big := e.bigJob(alice, 100, 128<<10)
	cases := []struct {
		name  string
		query string
	}{
		{"AliasedLogs", aliasedLogs(250)},
		{"OverBudgetTasks", fmt.Sprintf("{ job(id: %d) { tasks { log { last128KiB } } } }", big.ID)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			runtime.GC()
			var idle runtime.MemStats
			runtime.ReadMemStats(&idle)
			peak := sampleHeap()
			for b.Loop() {
				var wg sync.WaitGroup
				for range 3 {
					wg.Go(func() { e.discardQuery(tok, c.query) })
				}
				wg.Wait()
			}
			top := peak()
			b.ReportMetric(float64(top-idle.HeapInuse)/(1<<20), "peak-heap-MB-over-idle")
		})
	}
}

// discardQuery sends a query and throws the answer away unread, so that
// only the server's side of the process holds memory.
func (e *apiEnv) discardQuery(token, query string) {
	body, _ := json.Marshal(map[string]any{"query": query})
	req, _ := http.NewRequest("POST", e.url+"/query", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// sampleHeap samples HeapInuse every 2 ms until the returned func is
// called, which returns the peak.
func sampleHeap() func() uint64 {
	stop := make(chan struct{})
	res := make(chan uint64)
	go func() {
		var top uint64
		var ms runtime.MemStats
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			top = max(top, ms.HeapInuse)
			select {
			case <-stop:
				res <- top
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(stop); return <-res }
}

// TestWebhookQueryCostAtRun: a stored query (say, from before the limit)
// is costed again each time it runs; the delivery carries the refusal.
func TestWebhookQueryCostAtRun(t *testing.T) {
	e := newAPIEnv(t)
	alice, _ := e.user("alice")
	job := e.submit(alice, app.Public)
	auth := &app.Auth{Kind: app.AuthWebhook, User: alice, Grants: nil}
	ev := e.srv.sampleEvent(alice.ID, app.WebhookEvent("JOB_CREATED"))
	ev.job.job = job
	body, err := e.srv.runWebhookQuery(context.Background(), auth, "query "+aliasedLogs(40), ev)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"code":"QUERY_TOO_COMPLEX"`) || !strings.Contains(string(body), "the limit is 10000") {
		t.Fatalf("delivery body: %.300s", body)
	}
}
