package notify

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"builds/app"
)

const hookQuery = `query {
  webhook {
    uuid
    event
    ... on JobEvent { job { id status tasks { name status } } }
  }
}`

// subscribe creates a webhook subscription of e.user through the Service.
func (e *env) subscribe(url string, events ...app.WebhookEvent) *app.WebhookSubscription {
	e.t.Helper()
	sub, err := e.svc.CreateWebhook(e.userContext(), app.WebhookInput{URL: url, Events: events, Query: hookQuery})
	if err != nil {
		e.t.Fatal(err)
	}
	return sub
}

// submit submits a job as e.user (JOB_CREATED).
func (e *env) submit() *app.Job {
	e.t.Helper()
	job, err := e.svc.Submit(e.userContext(), app.SubmitInput{Manifest: "image: debian/stable\ntasks:\n  - build: make\n"})
	if err != nil {
		e.t.Fatal(err)
	}
	return job
}

// hookDeliveries returns a subscription's delivery rows once every one of
// them is no longer pending and there are at least n.
func (e *env) hookDeliveries(sub *app.WebhookSubscription, n int) []*app.WebhookDelivery {
	e.t.Helper()
	var list []*app.WebhookDelivery
	waitFor(e.t, "webhook deliveries", func() bool {
		var err error
		list, err = e.db.FindWebhookDeliveries(context.Background(), sub.ID, app.Page{})
		if err != nil {
			e.t.Fatal(err)
		}
		if len(list) < n {
			return false
		}
		for _, d := range list {
			if d.State == statePending {
				return false
			}
		}
		return true
	})
	return list
}

type hookBody struct {
	Data struct {
		Webhook struct {
			UUID  string `json:"uuid"`
			Event string `json:"event"`
			Job   struct {
				ID     int64  `json:"id"`
				Status string `json:"status"`
			} `json:"job"`
		} `json:"webhook"`
	} `json:"data"`
	Errors []any `json:"errors"`
}

func TestUserWebhookEvents(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	sub := e.subscribe(hook.URL+"/events", app.EventJobCreated, app.EventJobUpdated)
	created := e.subscribe(hook.URL+"/created", app.EventJobCreated)

	job := e.submit()
	claimed, err := e.svc.ClaimJob(context.Background(), "runner1", nil)
	if err != nil || claimed.Job.ID != job.ID {
		t.Fatalf("claim: %v", err)
	}
	e.finish(job, app.JobSuccess)

	dels := e.hookDeliveries(sub, 3)
	if len(dels) != 3 {
		t.Fatalf("%d deliveries, want 3", len(dels))
	}
	if n := len(e.hookDeliveries(created, 1)); n != 1 {
		t.Errorf("JOB_CREATED-only subscription got %d deliveries", n)
	}
	var seen []string
	for _, d := range dels {
		if d.State != stateDelivered || d.Attempts != 1 || d.ResponseStatus == nil || *d.ResponseStatus != 200 {
			t.Errorf("delivery %+v", d)
		}
		if d.ResponseBody == nil || *d.ResponseBody != "thanks\n" {
			t.Errorf("response body %v", d.ResponseBody)
		}
		if d.ResponseHeaders == nil || !strings.Contains(*d.ResponseHeaders, "Content-Type: text/plain; charset=utf-8\n") {
			t.Errorf("response headers %v", d.ResponseHeaders)
		}
		var body hookBody
		if err := json.Unmarshal([]byte(d.RequestBody), &body); err != nil || len(body.Errors) > 0 {
			t.Fatalf("request body %s (%v)", d.RequestBody, err)
		}
		w := body.Data.Webhook
		if w.UUID != d.UUID || w.Event != string(d.Event) || w.Job.ID != job.ID {
			t.Errorf("payload %+v for delivery %s %s", w, d.UUID, d.Event)
		}
		seen = append(seen, w.Event+":"+w.Job.Status)
	}
	slices.Sort(seen)
	if want := "JOB_CREATED:QUEUED JOB_UPDATED:RUNNING JOB_UPDATED:SUCCESS"; strings.Join(seen, " ") != want {
		t.Errorf("events %v, want %s", seen, want)
	}
	for _, r := range hook.requests() {
		if !r.verified {
			t.Error("signature does not verify")
		}
		var body hookBody
		json.Unmarshal([]byte(r.body), &body)
		if r.header.Get("X-Webhook-Delivery") != body.Data.Webhook.UUID || r.header.Get("X-Webhook-Event") != body.Data.Webhook.Event {
			t.Errorf("headers %v for body %s", r.header, r.body)
		}
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
		}
	}
}

func TestUserWebhookRetries(t *testing.T) {
	cfg := testConfig(t)
	e := newEnv(t, cfg, func(d *Dispatcher) { d.Backoff, d.MaxBackoff = 2*time.Second, time.Minute })
	hook := newHookServer(t, e.publicKey(), 503, 200)
	sub := e.subscribe(hook.URL, app.EventJobCreated)
	e.submit()

	var del *app.WebhookDelivery
	waitFor(t, "first attempt", func() bool {
		list, _ := e.db.FindWebhookDeliveries(context.Background(), sub.ID, app.Page{})
		if len(list) == 0 {
			return false
		}
		del = list[0]
		return del.Attempts == 1
	})
	if want := e.clock.Now().Add(2 * time.Second); del.State != statePending || del.NextAttempt == nil || !del.NextAttempt.Equal(want) {
		t.Fatalf("after a 503: %+v, want pending until %v", del, want)
	}
	if del.ResponseStatus == nil || *del.ResponseStatus != 503 {
		t.Errorf("recorded status %v", del.ResponseStatus)
	}
	// The retry waits for the (Service) clock to pass the backoff.
	e.clock.Add(2 * time.Second)
	dels := e.hookDeliveries(sub, 1)
	if d := dels[0]; d.State != stateDelivered || d.Attempts != 2 || *d.ResponseStatus != 200 {
		t.Errorf("after retry: %+v", d)
	}
	if n := len(hook.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestUserWebhookOutcomes(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String() + "/"
	dead.Close() // nothing listens there any more

	tests := []struct {
		name        string
		handler     http.HandlerFunc // nil: use url
		url         string
		loopbackOff bool
		wantState   string
		attempts    int
		wantStatus  int    // 0: no response
		wantBody    string // prefix; "<nil>" for none
		bodyLen     int    // exact length of the recorded body when set
	}{
		{name: "ClientErrorIsFinal", handler: status(404, "text/plain", "no such hook"), wantState: stateFailed, attempts: 1, wantStatus: 404, wantBody: "no such hook"},
		{name: "ServerErrorsUntilMaxAttempts", handler: status(502, "text/plain", "bad gateway"), wantState: stateFailed, attempts: 3, wantStatus: 502, wantBody: "bad gateway"},
		{name: "ConnectionRefused", url: deadURL, wantState: stateFailed, attempts: 3, wantBody: "no response: "},
		{name: "LinkLocalRefusedAtOnce", url: "http://169.254.169.254/", wantState: stateFailed, attempts: 1, wantBody: "no response: post webhook: "},
		{name: "LoopbackRefused", handler: status(200, "text/plain", "ok"), loopbackOff: true, wantState: stateFailed, attempts: 1, wantBody: "no response: "},
		{name: "BigBodyTruncated", handler: status(200, "text/plain", strings.Repeat("x", 100<<10)), wantState: stateDelivered, attempts: 1, wantStatus: 200, bodyLen: 64 << 10},
		{name: "BinaryBodyNotKept", handler: status(200, "application/octet-stream", "\x00\x01"), wantState: stateDelivered, attempts: 1, wantStatus: 200, wantBody: "<nil>"},
		{name: "InvalidUTF8NotKept", handler: status(200, "text/plain", "\xff\xfe"), wantState: stateDelivered, attempts: 1, wantStatus: 200, wantBody: "<nil>"},
		{name: "JSONBodyKept", handler: status(201, "application/json", `{"ok":true}`), wantState: stateDelivered, attempts: 1, wantStatus: 201, wantBody: `{"ok":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Webhooks.AllowLoopback = !tt.loopbackOff
			e := newEnv(t, cfg)
			url := tt.url
			if tt.handler != nil {
				srv := httptest.NewServer(tt.handler)
				t.Cleanup(srv.Close)
				url = srv.URL
			}
			sub := e.subscribe(url, app.EventJobCreated)
			e.submit()
			d := e.hookDeliveries(sub, 1)[0]
			if d.State != tt.wantState || d.Attempts != tt.attempts {
				t.Fatalf("delivery %+v, want %s after %d attempts", d, tt.wantState, tt.attempts)
			}
			if (tt.wantStatus == 0) != (d.ResponseStatus == nil) || d.ResponseStatus != nil && *d.ResponseStatus != tt.wantStatus {
				t.Errorf("status %v, want %d", d.ResponseStatus, tt.wantStatus)
			}
			switch {
			case tt.bodyLen > 0:
				if d.ResponseBody == nil || len(*d.ResponseBody) != tt.bodyLen {
					t.Errorf("body not truncated to %d", tt.bodyLen)
				}
			case tt.wantBody == "<nil>":
				if d.ResponseBody != nil {
					t.Errorf("body %q kept", *d.ResponseBody)
				}
			case d.ResponseBody == nil || !strings.HasPrefix(*d.ResponseBody, tt.wantBody):
				t.Errorf("body %v, want prefix %q", d.ResponseBody, tt.wantBody)
			}
		})
	}
}

func status(code int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(code)
		w.Write([]byte(body))
	}
}

// hangingServer accepts requests and answers none until released (or the
// client goes away).
type hangingServer struct {
	*httptest.Server
	got     chan string // delivery ids as requests arrive
	release chan struct{}
	once    sync.Once
}

func newHangingServer(t *testing.T) *hangingServer {
	h := &hangingServer{got: make(chan string, 10), release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the client leaving
		h.got <- r.Header.Get("X-Webhook-Delivery")
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { h.free(); h.Close() })
	return h
}

func (h *hangingServer) free() { h.once.Do(func() { close(h.release) }) }

func TestUserWebhookSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	e := newEnv(t, cfg)
	hook := newHookServer(t, e.publicKey())
	hook.hang.Store(true)
	sub := e.subscribe(hook.URL, app.EventJobCreated)

	// A delivery in flight when the service is killed...
	job := e.submit()
	var inFlight string
	select {
	case inFlight = <-hook.arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("delivery never sent")
	}
	e.close()

	// ...and one queued by a process that died before sending it.
	db, err := openStore(e.path)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	orphan := &app.WebhookDelivery{UUID: newUUID(), SubscriptionID: sub.ID, Event: app.EventJobCreated, JobID: job.ID,
		RequestBody: `{"data":{"orphan":true}}`, NextAttempt: &now, State: statePending}
	if err := db.CreateWebhookDelivery(context.Background(), orphan); err != nil {
		t.Fatal(err)
	}
	list, err := db.FindWebhookDeliveries(context.Background(), sub.ID, app.Page{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if d.State != statePending || d.Attempts != 0 {
			t.Fatalf("before restart: %+v", d)
		}
	}
	db.Close()
	hook.hang.Store(false) // the endpoint recovers while the service is down

	e.open()
	dels := e.hookDeliveries(sub, 2)
	got := map[string]string{}
	for _, r := range hook.requests() {
		if !r.verified {
			t.Error("signature does not verify")
		}
		got[r.header.Get("X-Webhook-Delivery")] = r.body
	}
	for _, d := range dels {
		if d.State != stateDelivered || d.Attempts != 1 || got[d.UUID] != d.RequestBody {
			t.Errorf("after restart: %+v (receiver got %q)", d, got[d.UUID])
		}
	}
	if _, ok := got[inFlight]; !ok || len(got) != 2 {
		t.Errorf("receiver got %v, want %s and %s", got, inFlight, orphan.UUID)
	}
}

func TestUserWebhookSlowEndpoint(t *testing.T) {
	cfg := testConfig(t)
	cfg.Webhooks.Timeout = time.Minute // the slow endpoint keeps its slot
	e := newEnv(t, cfg, func(d *Dispatcher) { d.Concurrency = 2 })
	slow := newHangingServer(t)
	hook := newHookServer(t, e.publicKey())
	e.subscribe(slow.URL, app.EventJobCreated, app.EventJobUpdated)
	fast := e.subscribe(hook.URL, app.EventJobCreated, app.EventJobUpdated)

	// The job's whole life goes by while the slow endpoint holds a
	// delivery; the fast one gets every event.
	job := e.submit()
	<-slow.got
	if _, err := e.svc.ClaimJob(context.Background(), "runner1", nil); err != nil {
		t.Fatal(err)
	}
	e.finish(job, app.JobFailed)
	if n := len(e.hookDeliveries(fast, 3)); n != 3 {
		t.Errorf("fast endpoint got %d deliveries", n)
	}
	select {
	case id := <-slow.got:
		t.Errorf("second delivery %s sent to the slow endpoint while the first hangs", id)
	default:
	}
	slow.free()
}

func TestUserWebhookRevokedToken(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	secret, tok, err := e.svc.CreateToken(context.Background(), e.user.ID, "JOBS:RO", nil, "hooks")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := e.svc.Authenticate(context.Background(), secret)
	if err != nil {
		t.Fatal(err)
	}
	ctx := app.NewContextWithAuth(context.Background(), auth)
	sub, err := e.svc.CreateWebhook(ctx, app.WebhookInput{URL: hook.URL, Events: []app.WebhookEvent{app.EventJobCreated}, Query: hookQuery})
	if err != nil {
		t.Fatal(err)
	}
	e.submit()
	e.hookDeliveries(sub, 1)
	if err := e.svc.RevokeToken(app.SystemContext(context.Background()), tok.ID); err != nil {
		t.Fatal(err)
	}
	e.submit()
	e.settle()
	list, _ := e.db.FindWebhookDeliveries(context.Background(), sub.ID, app.Page{})
	if len(list) != 1 {
		t.Errorf("%d deliveries after the token was revoked, want 1", len(list))
	}
}
