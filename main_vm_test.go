package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/images/imagestest"
)

// server is a running `builds serve` for an end-to-end test.
type server struct {
	t     *testing.T
	base  string
	token string
}

// startServer runs `builds serve` with extra builds.ini text and returns
// it once the API answers, with the admin token it printed.
func startServer(t *testing.T, extra string) *server {
	t.Helper()
	port := freePort(t)
	cfg := testConfig(t, fmt.Sprintf("[builds]\nlisten = 127.0.0.1:%d\norigin = http://127.0.0.1:%d\n%s", port, port, extra))
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"serve", "-config", cfg}, strings.NewReader(""), &out, &errb) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not shut down")
		}
	})
	s := &server{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/query/api-meta.json")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v\nstderr: %s", err, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	text := out.String()
	i := strings.Index(text, "API token: ")
	if i < 0 {
		t.Fatalf("no token printed: %q", text)
	}
	s.token = strings.Fields(text[i+len("API token: "):])[0]
	return s
}

// query runs a GraphQL query with the admin token into out.
func (s *server) query(q string, vars map[string]any, out any) {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": q, "variables": vars})
	req, _ := http.NewRequest("POST", s.base+"/query", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Data   json.RawMessage
		Errors []struct{ Message string }
	}
	if err := json.Unmarshal(b, &env); err != nil || len(env.Errors) > 0 {
		s.t.Fatalf("query %q: %d %s", q, resp.StatusCode, b)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		s.t.Fatal(err)
	}
}

// submit queues a manifest and waits for the job's final status; it
// returns the status and the logs (setup log first, then each task's).
func (s *server) submit(manifest string, timeout time.Duration) (string, string) {
	s.t.Helper()
	var sub struct{ Submit struct{ ID int64 } }
	s.query(`mutation($m: String!) { submit(manifest: $m) { id } }`, map[string]any{"m": manifest}, &sub)
	deadline := time.Now().Add(timeout)
	for {
		var j struct {
			Job struct {
				Status string
				Log    struct{ FullURL string }
				Tasks  []struct {
					Name string
					Log  struct{ FullURL string }
				}
			}
		}
		s.query(`query($id: Int!) { job(id: $id) { status log { fullURL } tasks { name log { fullURL } } } }`,
			map[string]any{"id": sub.Submit.ID}, &j)
		switch j.Job.Status {
		case "SUCCESS", "FAILED", "TIMEOUT", "CANCELLED":
			logs := s.get(j.Job.Log.FullURL)
			for _, tk := range j.Job.Tasks {
				logs += "\n--- task " + tk.Name + "\n" + s.get(tk.Log.FullURL)
			}
			return j.Job.Status, logs
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("job %d still %s after %s", sub.Submit.ID, j.Job.Status, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *server) get(url string) string {
	s.t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// banner serves line to every connection on addr.
func banner(t *testing.T, addr, line string) int {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, line+"\n")
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// hostAddr returns one of the host's own non-loopback IPv4 addresses.
func hostAddr(t *testing.T) string {
	as, _ := net.InterfaceAddrs()
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	t.Skip("the host has no non-loopback IPv4 address")
	return ""
}

// vmConfig is the builds.ini text for VM jobs on the test image.
func vmConfig(t *testing.T) string {
	img := imagestest.Bookworm(t)
	// the image lives in <catalogue>/debian/bookworm/amd64
	cat := filepath.Dir(filepath.Dir(filepath.Dir(img.Dir)))
	return fmt.Sprintf("[runner]\nslots = 2\naccel = tcg\ncpus = 1\nmemory = 1024\nboot-timeout = 2m\n[images]\ndir = %s\n", cat)
}

// TestVMGuestCannotReachHost runs a build script that attacks the host
// from inside a real guest: builds' own HTTP API and SSH server, another
// loopback service, the host's own LAN address and the cloud metadata
// address are all closed; the one allow-listed service is open.
func TestVMGuestCannotReachHost(t *testing.T) {
	base := vmConfig(t)
	sshPort := freePort(t)
	closed := banner(t, "127.0.0.1:0", "secret-loopback-service")
	wild := banner(t, "0.0.0.0:0", "secret-wildcard-service")
	allowed := banner(t, "127.0.0.1:0", "allowed-service-ok")
	lan := hostAddr(t)
	s := startServer(t, base+fmt.Sprintf("[runner]\nssh-listen = 127.0.0.1:%d\nguest-allow = 127.0.0.1:%d\n", sshPort, allowed))
	httpPort := strings.TrimPrefix(s.base, "http://127.0.0.1:")
	status, logs := s.submit(fmt.Sprintf(`image: debian/bookworm
tasks:
  - attack: |
      probe() {
        if out=$(timeout 15 bash -c "exec 3<>/dev/tcp/$1/$2 && timeout 3 cat <&3" 2>&1); then
          echo "REACHED $1:$2 $out"
        else
          echo "closed $1:$2"
        fi
      }
      probe 10.0.2.2 %[1]s
      probe 10.0.2.2 %[2]d
      probe 10.0.2.2 %[3]d
      probe 10.0.2.2 %[4]d
      probe %[5]s %[4]d
      probe %[5]s %[1]s
      probe 169.254.169.254 80
      probe 127.0.0.1 %[1]s
      cat < /dev/tcp/10.0.2.2/%[6]d
`, httpPort, sshPort, closed, wild, lan, allowed), 8*time.Minute)
	if status != "SUCCESS" {
		t.Fatalf("status %s\n%s", status, logs)
	}
	if testing.Verbose() {
		t.Logf("logs:\n%s", logs)
	}
	if strings.Contains(logs, "REACHED") || strings.Contains(logs, "secret-") {
		t.Errorf("the guest reached a host service:\n%s", logs)
	}
	if !strings.Contains(logs, "allowed-service-ok") {
		t.Errorf("the allow-listed service was not reachable:\n%s", logs)
	}
	for _, want := range []string{
		"Guest network refused tcp 10.0.2.2:" + httpPort + ": the host's own services are closed to guests",
		fmt.Sprintf("Guest network refused tcp %s:%d: the host's own addresses are closed to guests", lan, wild),
		"Guest network refused tcp 169.254.169.254:80: link-local addresses",
		"guest network: internet",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("setup log lacks %q:\n%s", want, logs)
		}
	}
	if _, err := netip.ParseAddr(lan); err != nil {
		t.Fatal(err)
	}
}
