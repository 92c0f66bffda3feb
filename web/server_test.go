package web_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"builds/app"
	"builds/store"
	"builds/store/storetest"
	"builds/web"
)

// syncBuffer is a log destination the server and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A live job stream ends when the server closes, so shutdown neither
// waits out its grace period nor cuts the stream mid-response.
func TestCloseEndsEventStreams(t *testing.T) {
	storetest.SQLiteOnly(t) // the UI reads through the same Service as the API
	dir := t.TempDir()
	cfg := app.DefaultConfig()
	cfg.Builds.DataDir = dir
	db, err := store.Open(context.Background(), filepath.Join(dir, "builds.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := app.NewService(db, cfg, bytes.Repeat([]byte{7}, 32), log)
	if err != nil {
		t.Fatal(err)
	}
	srv := &web.Server{Addr: "127.0.0.1:0", Service: svc, Config: cfg, Log: log}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := &uiEnv{t: t, cfg: cfg, db: db, svc: svc, srv: srv, url: srv.URL()}

	alice := e.user("alice")
	job := e.submit(alice, jobOpts{visibility: app.Public})
	e.start(job)
	e.svc.Logs.Open(job.ID, "")
	e.appendLog(job, "", "booting\n")

	const streams = 3
	bodies := make([]io.ReadCloser, streams)
	for i := range bodies {
		br, closeStream := openEvents(t, e, fmt.Sprintf("/~alice/job/%d/events?o=0,0,0", job.ID), "")
		defer closeStream()
		readEvents(t, br, func(ev sseEvent) bool { return ev.name == "log" })
		bodies[i] = io.NopCloser(br)
	}

	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	t.Logf("Close took %v with %d open streams", time.Since(start), streams)
	for i, b := range bodies {
		// The stream is over: a clean end of the chunked body, not a cut
		// connection (io.ErrUnexpectedEOF) or the client's own timeout.
		if _, err := io.ReadAll(b); err != nil {
			t.Errorf("stream %d: %v, want a clean end", i, err)
		}
	}
	if strings.Contains(logs.String(), "grace period") {
		t.Errorf("shutdown waited out its grace period:\n%s", logs.String())
	}
	// The server is gone.
	if resp, err := http.Get(e.url + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("request after Close: %s, want connection refused", resp.Status)
	}
}
