package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// served is a `builds serve` running in the test process.
type served struct {
	base, cfg string
	out, errb *syncBuffer
	cancel    context.CancelFunc
	done      chan error
	stopped   bool
}

// startServe runs `builds serve` with the config file cfg on port, waits
// until it answers HTTP and returns what it printed on stdout. It is
// stopped at the end of the test.
func startServe(t *testing.T, cfg string, port int) string {
	t.Helper()
	return serveConfig(t, cfg, port).out.String()
}

// serveConfig starts serve with the config file cfg, listening on port
// (testConfig's [builds] section is overridden by a repeated one).
func serveConfig(t *testing.T, cfg string, port int, args ...string) *served {
	t.Helper()
	appendConfig(t, cfg, fmt.Sprintf("[builds]\nlisten = 127.0.0.1:%d\norigin = http://127.0.0.1:%d\n", port, port))
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{base: fmt.Sprintf("http://127.0.0.1:%d", port), cfg: cfg, out: &syncBuffer{}, errb: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- Run(ctx, append([]string{"serve", "-config", cfg}, args...), strings.NewReader(""), s.out, s.errb)
	}()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/query/api-meta.json")
		if err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case err := <-s.done:
			s.stopped = true
			t.Fatalf("serve exited: %v\nstderr: %s", err, s.errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v\nstderr: %s", err, s.errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the server down (SIGTERM's path) and returns serve's error.
func (s *served) stop(t *testing.T) error {
	t.Helper()
	if s.stopped {
		return nil
	}
	s.stopped = true
	s.cancel()
	select {
	case err := <-s.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("serve did not shut down")
	}
	return nil
}

// appendConfig adds text to the config file at path.
func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, "\n"+text...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
