package web

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"builds/app"
)

func TestLogRanges(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	job := e.run(e.submit(alice, app.Public), "0123456789", "")
	url := LogURL(e.url, job.ID, "")
	empty := LogURL(e.url, job.ID, "build")
	notYet := LogURL(e.url, job.ID, "test") // pending task: no file yet
	tests := []struct {
		name, url, rng string
		wantStatus     int
		wantRange      string
		wantBody       string
	}{
		{"Whole", url, "", 200, "", "0123456789"},
		{"FromStart", url, "bytes=0-", 206, "bytes 0-9/10", "0123456789"},
		{"LastByte", url, "bytes=9-", 206, "bytes 9-9/10", "9"},
		{"Middle", url, "bytes=3-5", 206, "bytes 3-5/10", "345"},
		{"EndPastSize", url, "bytes=8-100", 206, "bytes 8-9/10", "89"},
		{"Suffix", url, "bytes=-4", 206, "bytes 6-9/10", "6789"},
		{"SuffixLongerThanLog", url, "bytes=-40", 206, "bytes 0-9/10", "0123456789"},
		{"PastEnd", url, "bytes=10-", 416, "bytes */10", ""},
		{"SeveralRanges", url, "bytes=0-1,4-5", 200, "", "0123456789"},
		{"OtherUnit", url, "items=0-", 200, "", "0123456789"},
		{"Garbage", url, "bytes=x-", 200, "", "0123456789"},
		{"Backwards", url, "bytes=5-3", 200, "", "0123456789"},
		{"EmptyFromStart", empty, "bytes=0-", 206, "bytes 0-0/0", ""},
		{"EmptyWhole", empty, "", 200, "", ""},
		{"EmptySuffix", empty, "bytes=-10", 206, "bytes 0-0/0", ""},
		{"EmptyPastStart", empty, "bytes=5-", 416, "bytes */0", ""},
		{"MissingFileFromStart", notYet, "bytes=0-", 206, "bytes 0-0/0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.fetch(tok, tt.url, tt.rng)
			if status != tt.wantStatus || h.Get("Content-Range") != tt.wantRange {
				t.Fatalf("got %d %q, want %d %q (body %q)", status, h.Get("Content-Range"), tt.wantStatus, tt.wantRange, body)
			}
			if status == 416 {
				if h.Get("Content-Type") != "application/json" {
					t.Errorf("416 Content-Type = %q", h.Get("Content-Type"))
				}
				return
			}
			if body != tt.wantBody || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Content-Length") != fmt.Sprint(len(tt.wantBody)) {
				t.Errorf("body %q, headers %v", body, h)
			}
		})
	}
	t.Run("HEAD", func(t *testing.T) {
		req, _ := http.NewRequest("HEAD", url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Range", "bytes=2-")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 206 || resp.Header.Get("Content-Range") != "bytes 2-9/10" || resp.ContentLength != 8 {
			t.Errorf("HEAD: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

func TestLogErrors(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	running := e.run(e.submit(alice, app.Public), "setup\n", "build\n")
	queued := e.submit(alice, app.Public)
	tests := []struct {
		name, token, path string
		wantStatus        int
		wantMsg           string
	}{
		{"BadID", tok, "/query/log/abc/log", 400, "Invalid job ID"},
		{"ZeroID", tok, "/query/log/0/log", 400, "Invalid job ID"},
		{"UnknownJob", tok, "/query/log/999999/log", 404, "Unknown build job"},
		{"UnknownTask", tok, fmt.Sprintf("/query/log/%d/nope/log", running.ID), 404, "Unknown build task"},
		{"NotStarted", tok, fmt.Sprintf("/query/log/%d/log", queued.ID), 404, "has not been started yet"},
		{"NoLogsGrant", e.token(alice, "JOBS:RO"), fmt.Sprintf("/query/log/%d/log", running.ID), 403, "lacks the LOGS:RO grant"},
		{"LogsGrant", e.token(alice, "LOGS:RO"), fmt.Sprintf("/query/log/%d/log", running.ID), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.fetch(tt.token, e.url+tt.path, "")
			if status != tt.wantStatus || !strings.Contains(body, tt.wantMsg) {
				t.Fatalf("got %d %s, want %d %q", status, body, tt.wantStatus, tt.wantMsg)
			}
			if status >= 400 && h.Get("Content-Type") != "application/json" {
				t.Errorf("error Content-Type = %q", h.Get("Content-Type"))
			}
		})
	}
}

// TestLogFollowLikeHut replays hut's log following against a growing log:
// Range from the last byte it has, 206 required, first byte of each later
// answer dropped, offset = end of the range.
func TestLogFollowLikeHut(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	job := e.run(e.submit(alice, app.Private), "", "")
	path := e.svc.LogPath(job.ID, "")
	chunks := []string{"", "", "Booting VM\n", "", "Installing packages\n", "build ok\n", ""}
	var written, printed strings.Builder
	var offset int64
	for i, c := range chunks {
		if c != "" {
			written.WriteString(c)
			if err := os.WriteFile(path, []byte(written.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		status, h, body := e.fetch(tok, LogURL(e.url, job.ID, ""), fmt.Sprintf("bytes=%d-", offset))
		if status != http.StatusPartialContent {
			t.Fatalf("poll %d: status %d (%s): hut would abort", i, status, body)
		}
		var start, end int64
		var total string
		if _, err := fmt.Sscanf(h.Get("Content-Range"), "bytes %d-%d/%s", &start, &end, &total); err != nil {
			t.Fatalf("poll %d: Content-Range %q: %v", i, h.Get("Content-Range"), err)
		}
		if start > 0 {
			body = body[1:]
		}
		printed.WriteString(body)
		offset = end
	}
	if printed.String() != written.String() {
		t.Errorf("hut would print %q, want %q", printed.String(), written.String())
	}
}
