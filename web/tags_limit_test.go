package web

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"builds/app"
)

func TestSubmitTagLimits(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	many := make([]string, 50000)
	for i := range many {
		many[i] = strings.Repeat("t", 99) + fmt.Sprint(i%10)
	}
	tests := []struct {
		name string
		tags []string
		want string
	}{
		{"Flood", many, "Too many tags: 50000 given, at most 16 are accepted"},
		{"Seventeen", strings.Split(strings.Repeat("a/", 16)+"a", "/"), "Too many tags: 17 given, at most 16 are accepted"},
		{"TooLong", []string{strings.Repeat("x", 129)}, "is too long: 129 characters, at most 128 are accepted"},
		{"Slash", []string{"a/b"}, "Invalid tag name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.query(tok, hutSubmit, map[string]any{"manifest": testManifest, "tags": tt.tags, "note": "", "secrets": true, "visibility": "PUBLIC"})
			if !strings.Contains(r.errText(), tt.want) || get(r.Data, "submit") != nil {
				t.Fatalf("errors %q, data %v", r.errText(), r.Data)
			}
		})
	}
	d := e.mustQuery(tok, hutSubmit, map[string]any{"manifest": testManifest, "tags": strings.Split(strings.Repeat("tag/", 15)+"last", "/"),
		"note": "", "secrets": true, "visibility": "PUBLIC"})
	if get(d, "submit", "id") == nil {
		t.Fatal("sixteen tags refused")
	}
}

// TestPagesWithHugeTags: a job stored with tags from before the limits
// (thousands, long) renders pages whose size does not grow with them.
func TestPagesWithHugeTags(t *testing.T) {
	e := newAPIEnv(t)
	alice, _ := e.user("alice")
	job := e.submit(alice, app.Public)
	huge := strings.TrimSuffix(strings.Repeat(strings.Repeat("t", 100)+"/", 5000), "/")
	if _, err := openRaw(t, e).Exec("UPDATE jobs SET tags = ? WHERE id = ?", huge, job.ID); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 100000)
	if _, err := openRaw(t, e).Exec("UPDATE jobs SET tags = ? WHERE id = ?", long, e.submit(alice, app.Public).ID); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fmt.Sprintf("/~alice/job/%d", job.ID), "/~alice", "/~alice/" + strings.Repeat("t", 100)} {
		resp, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) > 100<<10 {
			t.Errorf("GET %s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		if !strings.Contains(string(body), "…") {
			t.Errorf("GET %s: no elision mark", path)
		}
	}
	// a tag path longer than any job's tags can be is not looked up
	resp, err := http.Get(e.url + "/~alice/" + strings.Repeat("a/", 5000) + "a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("huge tag path: %d", resp.StatusCode)
	}
}
