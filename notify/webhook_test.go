package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"builds/app"
)

func webhookManifest(url string) string {
	return fmt.Sprintf(`image: debian/stable
tasks:
  - build: make
  - test: make check
triggers:
  - action: webhook
    condition: always
    url: %s
`, url)
}

func TestWebhookTrigger(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	note := "release candidate"
	job := e.runToEnd(jobSpec{manifest: webhookManifest(hook.URL + "/hook"), tags: "proj/main", note: &note,
		tasks: map[string]app.TaskStatus{"build": app.TaskSuccess, "test": app.TaskFailed}}, app.JobFailed)
	recs := e.deliveries(job.ID, 1)
	if r := recs[0]; r.Status != "sent" || r.Action != "webhook" || r.Target != hook.URL+"/hook" || r.Attempts != 1 || r.Message != "200 thanks" {
		t.Fatalf("record %+v", r)
	}
	reqs := hook.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	req := reqs[0]
	if !req.verified {
		t.Error("signature does not verify with the public key")
	}
	if ct := req.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(req.body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id":        float64(job.ID),
		"status":    "failed",
		"setup_log": fmt.Sprintf("https://ci.example.org/query/log/%d/log", job.ID),
		"tasks": []any{
			map[string]any{"name": "build", "status": "success", "log": fmt.Sprintf("https://ci.example.org/query/log/%d/build/log", job.ID)},
			map[string]any{"name": "test", "status": "failed", "log": fmt.Sprintf("https://ci.example.org/query/log/%d/test/log", job.ID)},
		},
		"note":   "release candidate",
		"runner": "runner1",
		"tags":   "proj/main",
		"owner":  map[string]any{"canonical_name": "~alice", "name": "alice"},
	}
	if g, w := mustJSON(got), mustJSON(want); g != w {
		t.Errorf("payload\n%s\nwant\n%s", g, w)
	}
	log := e.setupLog(job.ID)
	for _, line := range []string{"Processing post-failed triggers...\n", "Sending webhook...\n", "Webhook response: 200\nthanks\n"} {
		if !strings.Contains(log, line) {
			t.Errorf("setup log lacks %q:\n%s", line, log)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

func TestWebhookTriggerRetries(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		want     []string // record statuses, in order
	}{
		{name: "RecoversAfter5xx", statuses: []int{503, 500, 200}, want: []string{"failed", "failed", "sent"}},
		{name: "GivesUpAfterMaxAttempts", statuses: []int{502, 502, 502, 200}, want: []string{"failed", "failed", "failed"}},
		{name: "ClientErrorIsFinal", statuses: []int{404, 200}, want: []string{"failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, testConfig(t))
			hook := newHookServer(t, e.publicKey(), tt.statuses...)
			job := e.runToEnd(jobSpec{manifest: webhookManifest(hook.URL)}, app.JobSuccess)
			recs := e.deliveries(job.ID, len(tt.want))
			waitFor(t, "retries to stop", func() bool { return strings.Contains(e.setupLog(job.ID), "Webhook response") })
			var got []string
			for i, r := range recs {
				got = append(got, r.Status)
				if r.Attempts != i+1 {
					t.Errorf("record %d has attempt %d", i, r.Attempts)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("records %v, want %v", got, tt.want)
			}
			reqs := hook.requests()
			if len(reqs) != len(tt.want) {
				t.Errorf("%d requests, want %d", len(reqs), len(tt.want))
			}
			for _, r := range reqs {
				if !r.verified {
					t.Error("unsigned retry")
				}
			}
			if n := strings.Count(e.setupLog(job.ID), "Retrying webhook in "); n != len(tt.want)-1 {
				t.Errorf("%d retry lines:\n%s", n, e.setupLog(job.ID))
			}
		})
	}
}

// nonLoopbackIP returns an address of this host that is not loopback, to
// run a server the delivery policy accepts while loopback is refused.
func nonLoopbackIP(t *testing.T) netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			ip := p.Addr()
			if ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip
			}
		}
	}
	t.Skip("needs a non-loopback IPv4 address on this host to serve the redirecting endpoint")
	return netip.Addr{}
}

func TestWebhookSSRF(t *testing.T) {
	cfg := testConfig(t)
	cfg.Webhooks.AllowLoopback = false
	e := newEnv(t, cfg)
	hook := newHookServer(t, e.publicKey())
	port := hook.Listener.Addr().(*net.TCPAddr).Port

	// A server on a routable address of this host that redirects to the
	// loopback receiver.
	ip := nonLoopbackIP(t)
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	redirector := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, hook.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	redirector.Listener = ln
	redirector.Start()
	t.Cleanup(redirector.Close)

	tests := []struct {
		name, url, want string
	}{
		{name: "Loopback", url: hook.URL, want: "127.0.0.1 is a loopback address"},
		{name: "LoopbackIPv6", url: fmt.Sprintf("http://[::1]:%d/", port), want: "::1 is a loopback address"},
		{name: "HostNameResolvingToLoopback", url: fmt.Sprintf("http://localhost:%d/", port), want: "is a loopback address"},
		{name: "CloudMetadata", url: "http://169.254.169.254/latest/meta-data/", want: "169.254.169.254 is a link-local address"},
		{name: "Unspecified", url: fmt.Sprintf("http://0.0.0.0:%d/", port), want: "0.0.0.0 is an unspecified address"},
		{name: "RedirectToLoopback", url: redirector.URL + "/hook", want: "127.0.0.1 is a loopback address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := e.runToEnd(jobSpec{manifest: webhookManifest(tt.url)}, app.JobSuccess)
			recs := e.deliveries(job.ID, 1)
			if r := recs[0]; r.Status != "failed" || !strings.Contains(r.Message, tt.want) {
				t.Errorf("record %+v, want failure mentioning %q", r, tt.want)
			}
			if log := e.setupLog(job.ID); strings.Contains(log, "Retrying") || !strings.Contains(log, tt.want) {
				t.Errorf("refused delivery retried or not logged:\n%s", log)
			}
		})
	}
	if n := len(hook.requests()); n != 0 {
		t.Errorf("loopback receiver was reached %d times", n)
	}
}

func TestAddrPolicy(t *testing.T) {
	tests := []struct {
		name          string
		addr          string
		allowPrivate  bool
		allowLoopback bool
		ok            bool
	}{
		{name: "Public", addr: "93.184.215.14", ok: true},
		{name: "PublicIPv6", addr: "2001:4860:4860::8888", ok: true},
		{name: "Loopback", addr: "127.0.0.2"},
		{name: "LoopbackAllowed", addr: "127.0.0.1", allowLoopback: true, ok: true},
		{name: "IPv4MappedLoopback", addr: "::ffff:127.0.0.1"},
		{name: "LinkLocal", addr: "169.254.169.254"},
		{name: "LinkLocalEvenWithLoopbackAllowed", addr: "169.254.169.254", allowLoopback: true, allowPrivate: true},
		{name: "LinkLocalIPv6", addr: "fe80::1"},
		{name: "Multicast", addr: "224.0.0.1"},
		{name: "Broadcast", addr: "255.255.255.255"},
		{name: "Unspecified", addr: "0.0.0.0"},
		{name: "ThisNetwork", addr: "0.1.2.3"},
		{name: "PrivateAllowed", addr: "10.1.2.3", allowPrivate: true, ok: true},
		{name: "PrivateRefused", addr: "192.168.1.10"},
		{name: "ULARefused", addr: "fd00::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := addrPolicy{allowPrivate: tt.allowPrivate, allowLoopback: tt.allowLoopback}
			err := p.check(netip.MustParseAddr(tt.addr))
			if (err == nil) != tt.ok {
				t.Errorf("check(%s) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
		})
	}
}

func TestTriggerNeverChangesJob(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey(), 500, 500, 500)
	job := e.runToEnd(jobSpec{manifest: webhookManifest(hook.URL)}, app.JobSuccess)
	e.deliveries(job.ID, 3)
	got, err := e.db.FindJobByID(context.Background(), job.ID)
	if err != nil || got.Status != app.JobSuccess {
		t.Fatalf("job is %v after failed triggers (%v)", got.Status, err)
	}
}
