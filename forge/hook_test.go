package forge_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/forge"
)

const zeroSHA = "0000000000000000000000000000000000000000"

func hookHeaders(secret string, body []byte) http.Header {
	return http.Header{
		forge.HookEventHeader:     {"push"},
		forge.HookDeliveryHeader:  {"d-1"},
		forge.HookSignatureHeader: {forge.SignHook([]byte(secret), body)},
	}
}

func TestParseGitHook(t *testing.T) {
	a := &forge.Adapter{}
	body := []byte(`{"ref":"refs/heads/main","before":"` + zeroSHA + `","after":"` + testSHA + `"}`)
	t.Run("OK", func(t *testing.T) {
		ev, err := a.ParseWebhook(app.ForgeGit, []byte(testSecret), hookHeaders(testSecret, body), body)
		if err != nil {
			t.Fatal(err)
		}
		want := app.ForgeEvent{Type: app.ForgePush, Delivery: "d-1", Ref: "refs/heads/main", Commit: testSHA}
		if *ev != want {
			t.Errorf("got %+v, want %+v", *ev, want)
		}
	})
	t.Run("Deleted", func(t *testing.T) {
		b := []byte(`{"ref":"refs/tags/v1","before":"` + testSHA + `","after":"` + zeroSHA + `"}`)
		ev, err := a.ParseWebhook(app.ForgeGit, []byte(testSecret), hookHeaders(testSecret, b), b)
		if err != nil || !ev.Deleted {
			t.Errorf("%+v %v", ev, err)
		}
	})
	for _, tt := range []struct {
		name string
		body string
		mod  func(h http.Header)
		code string
		msg  string
	}{
		{"ErrUnsigned", string(body), func(h http.Header) { h.Del(forge.HookSignatureHeader) }, app.EUNAUTHORIZED, "unsigned"},
		{"ErrNotSHA256", string(body), func(h http.Header) { h.Set(forge.HookSignatureHeader, "sha1=00") }, app.EUNAUTHORIZED, "malformed"},
		{"ErrNoDelivery", string(body), func(h http.Header) { h.Del(forge.HookDeliveryHeader) }, app.EINVALID, "X-Builds-Delivery"},
		{"ErrOtherEvent", string(body), func(h http.Header) { h.Set(forge.HookEventHeader, "tag") }, app.EINVALID, "want push"},
		{"ErrNotJSON", "ref=main", nil, app.EINVALID, "not the JSON"},
		{"ErrBadRef", `{"ref":"main","after":"` + testSHA + `"}`, nil, app.EINVALID, "invalid ref"},
		{"ErrRefWithDots", `{"ref":"refs/heads/../x","after":"` + testSHA + `"}`, nil, app.EINVALID, "invalid ref"},
		{"ErrShortSHA", `{"ref":"refs/heads/main","after":"1f2e3d"}`, nil, app.EINVALID, "full commit ids"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			h := hookHeaders(testSecret, b)
			if tt.mod != nil {
				tt.mod(h)
			}
			ev, err := a.ParseWebhook(app.ForgeGit, []byte(testSecret), h, b)
			if err == nil {
				t.Fatalf("accepted: %+v", ev)
			}
			if app.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q (%s), want %s with %q", err, app.ErrorCode(err), tt.code, tt.msg)
			}
		})
	}
}

func TestParsePostReceive(t *testing.T) {
	in := testSHA + " " + testTagObj + " refs/heads/main\n" +
		"\n" +
		"garbage\n" +
		testSHA + " " + zeroSHA + " refs/heads/gone\r\n" +
		"abc def refs/heads/x\n" +
		testSHA + " " + testSHA + " refs/heads/a b\n"
	list, errs := forge.ParsePostReceive(strings.NewReader(in))
	if len(list) != 2 || list[0].Ref != "refs/heads/main" || list[0].New != testTagObj || list[0].Deleted() ||
		!list[1].Deleted() || !list[0].Built() {
		t.Errorf("updates %+v", list)
	}
	if len(errs) != 3 || !strings.Contains(errs[0].Error(), "line 3: want") || !strings.Contains(errs[1].Error(), "line 5") ||
		!strings.Contains(errs[2].Error(), "line 6") {
		t.Errorf("errors %v", errs)
	}
	if (forge.RefUpdate{Ref: "refs/notes/commits"}).Built() {
		t.Error("notes are built")
	}
}

// TestSendHook: a delivery reaches a real HTTP server signed so that
// ParseWebhook accepts it; refusals carry the server's message; a server
// that does not answer is given up on.
func TestSendHook(t *testing.T) {
	a := &forge.Adapter{}
	u := forge.RefUpdate{Old: zeroSHA, New: testSHA, Ref: "refs/heads/main"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := a.ParseWebhook(app.ForgeGit, []byte(testSecret), r.Header, body)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"message": app.ErrorMessage(err)})
			return
		}
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]any{"message": "job group submitted", "group_id": 7, "jobs": []string{ev.Ref + "@" + ev.Commit}})
	}))
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second}

	ans, err := forge.SendHook(context.Background(), client, srv.URL, []byte(testSecret), u)
	if err != nil || ans.GroupID != 7 || len(ans.Jobs) != 1 || ans.Jobs[0] != "refs/heads/main@"+testSHA {
		t.Fatalf("%+v %v", ans, err)
	}
	_, err = forge.SendHook(context.Background(), client, srv.URL, []byte("wrong"), u)
	var he *forge.HookError
	if !errors.As(err, &he) || he.Status != 401 || !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(he.Message, "bad signature") {
		t.Errorf("wrong secret: %v", err)
	}

	release := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer stuck.Close()
	defer close(release) // before Close, which waits for the handler
	start := time.Now()
	_, err = forge.SendHook(context.Background(), &http.Client{Timeout: 300 * time.Millisecond}, stuck.URL, []byte(testSecret), u)
	if err == nil || errors.As(err, &he) || time.Since(start) > 5*time.Second {
		t.Errorf("stuck server: %v after %v", err, time.Since(start))
	}
}
