package forge_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
)

const (
	testSHA    = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"
	testTagObj = "aa2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"
	testSecret = "s3cret"
)

// Fixture reads a payload of testdata with the commit filled in.
func Fixture(t testing.TB, name, sha string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "{{SHA}}", sha)
	return []byte(strings.ReplaceAll(s, "{{TAGOBJ}}", testTagObj))
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Headers are what each forge sends with a delivery of event, signed
// with secret.
func headers(kind app.ForgeKind, event, delivery, secret string, body []byte) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	switch kind {
	case app.ForgeGitHub:
		h.Set("X-GitHub-Event", event)
		h.Set("X-GitHub-Delivery", delivery)
		h.Set("X-Hub-Signature-256", "sha256="+sign(secret, body))
	case app.ForgeGitLab:
		h.Set("X-Gitlab-Event", event)
		h.Set("X-Gitlab-Event-UUID", delivery)
		h.Set("X-Gitlab-Token", secret)
	case app.ForgeGitea:
		h.Set("X-Gitea-Event", event)
		h.Set("X-Gitea-Delivery", delivery)
		h.Set("X-Gitea-Signature", sign(secret, body))
	case app.ForgeForgejo:
		// Forgejo sends both header families
		for _, p := range []string{"X-Forgejo-", "X-Gitea-"} {
			h.Set(p+"Event", event)
			h.Set(p+"Delivery", delivery)
			h.Set(p+"Signature", sign(secret, body))
		}
	}
	return h
}

func TestParseWebhook(t *testing.T) {
	tests := []struct {
		name, fixture, event string
		kind                 app.ForgeKind
		want                 app.ForgeEvent
	}{
		{"GitHubPush", "github-push.json", "push", app.ForgeGitHub, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/heads/main", Commit: testSHA,
			CommitURL: "https://github.com/octo-org/proj/commit/" + testSHA}},
		{"GitHubTag", "github-tag.json", "push", app.ForgeGitHub, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/tags/v1.0", Commit: testSHA,
			CommitURL: "https://github.com/octo-org/proj/commit/" + testSHA}},
		{"GitHubDelete", "github-delete.json", "push", app.ForgeGitHub, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/heads/topic",
			Commit: "0000000000000000000000000000000000000000", Deleted: true}},
		{"GitHubPing", "github-ping.json", "ping", app.ForgeGitHub, app.ForgeEvent{Type: app.ForgePing}},
		// pull requests: pull_test.go
		{"GitLabPush", "gitlab-push.json", "Push Hook", app.ForgeGitLab, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/heads/main", Commit: testSHA,
			CommitURL: "https://gitlab.example.com/mike/proj/-/commit/" + testSHA}},
		// an annotated tag: after is the tag object, checkout_sha the commit
		{"GitLabTag", "gitlab-tag.json", "Tag Push Hook", app.ForgeGitLab, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/tags/v1.0.0", Commit: testSHA}},
		{"GitLabOther", "gitlab-push.json", "Issue Hook", app.ForgeGitLab, app.ForgeEvent{Type: app.ForgeIgnored}},
		{"GiteaPush", "gitea-push.json", "push", app.ForgeGitea, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/heads/develop", Commit: testSHA,
			CommitURL: "https://gitea.example.org/gitea/proj/commit/" + testSHA}},
		{"GiteaTag", "gitea-tag.json", "push", app.ForgeGitea, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/tags/v1.0", Commit: testSHA}},
		{"ForgejoPush", "forgejo-push.json", "push", app.ForgeForgejo, app.ForgeEvent{Type: app.ForgePush, Ref: "refs/heads/develop", Commit: testSHA,
			CommitURL: "https://codeberg.example.org/gitea/proj/commit/" + testSHA}},
		{"ForgejoCreate", "forgejo-push.json", "create", app.ForgeForgejo, app.ForgeEvent{Type: app.ForgeIgnored}},
	}
	a := &forge.Adapter{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := Fixture(t, tt.fixture, testSHA)
			ev, err := a.ParseWebhook(tt.kind, []byte(testSecret), headers(tt.kind, tt.event, "d-1", testSecret, body), body)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Delivery = "d-1"
			if *ev != tt.want {
				t.Errorf("got  %+v\nwant %+v", *ev, tt.want)
			}
		})
	}
}

// TestParseWebhookRefused: unsigned, wrongly signed, tampered and
// malformed deliveries are refused before their body is read.
func TestParseWebhookRefused(t *testing.T) {
	a := &forge.Adapter{}
	body := Fixture(t, "github-push.json", testSHA)
	type mod func(h http.Header, b []byte) []byte
	tests := []struct {
		name string
		kind app.ForgeKind
		mod  mod
		code string
		msg  string
	}{
		{"GitHubUnsigned", app.ForgeGitHub, func(h http.Header, b []byte) []byte { h.Del("X-Hub-Signature-256"); return b }, app.EUNAUTHORIZED, "unsigned"},
		{"GitHubWrongSecret", app.ForgeGitHub, func(h http.Header, b []byte) []byte {
			h.Set("X-Hub-Signature-256", "sha256="+sign("other", b))
			return b
		}, app.EUNAUTHORIZED, "bad signature"},
		{"GitHubTampered", app.ForgeGitHub, func(h http.Header, b []byte) []byte {
			return []byte(strings.Replace(string(b), "refs/heads/main", "refs/heads/evil", 1))
		}, app.EUNAUTHORIZED, "bad signature"},
		{"GitHubSHA1Only", app.ForgeGitHub, func(h http.Header, b []byte) []byte {
			h.Set("X-Hub-Signature-256", "sha1=0123")
			return b
		}, app.EUNAUTHORIZED, "malformed"},
		{"GitHubNotHex", app.ForgeGitHub, func(h http.Header, b []byte) []byte { h.Set("X-Hub-Signature-256", "sha256=zz"); return b }, app.EUNAUTHORIZED, "malformed"},
		{"GitHubNoDelivery", app.ForgeGitHub, func(h http.Header, b []byte) []byte { h.Del("X-GitHub-Delivery"); return b }, app.EINVALID, "delivery id"},
		{"GitHubNotJSON", app.ForgeGitHub, func(h http.Header, b []byte) []byte {
			b = []byte("{not json")
			h.Set("X-Hub-Signature-256", "sha256="+sign(testSecret, b))
			return b
		}, app.EINVALID, "not the JSON"},
		{"GitLabNoToken", app.ForgeGitLab, func(h http.Header, b []byte) []byte { h.Del("X-Gitlab-Token"); return b }, app.EUNAUTHORIZED, "unsigned"},
		{"GitLabWrongToken", app.ForgeGitLab, func(h http.Header, b []byte) []byte { h.Set("X-Gitlab-Token", "s3cre"); return b }, app.EUNAUTHORIZED, "bad secret"},
		{"GiteaUnsigned", app.ForgeGitea, func(h http.Header, b []byte) []byte { h.Del("X-Gitea-Signature"); return b }, app.EUNAUTHORIZED, "unsigned"},
		{"GiteaWrong", app.ForgeGitea, func(h http.Header, b []byte) []byte { h.Set("X-Gitea-Signature", sign("x", b)); return b }, app.EUNAUTHORIZED, "bad signature"},
		{"ForgejoWrong", app.ForgeForgejo, func(h http.Header, b []byte) []byte { h.Set("X-Forgejo-Signature", sign("x", b)); return b }, app.EUNAUTHORIZED, "bad signature"},
		{"PlainGitUnsigned", app.ForgeGit, func(h http.Header, b []byte) []byte { return b }, app.EUNAUTHORIZED, "unsigned delivery: no X-Builds-Signature"},
		{"PlainGitWrongSecret", app.ForgeGit, func(h http.Header, b []byte) []byte {
			h.Set(forge.HookSignatureHeader, forge.SignHook([]byte("other"), b))
			return b
		}, app.EUNAUTHORIZED, "bad signature in X-Builds-Signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			event := "push"
			if tt.kind == app.ForgeGitLab {
				event = "Push Hook"
			}
			h := headers(tt.kind, event, "d-1", testSecret, body)
			b := tt.mod(h, append([]byte(nil), body...))
			ev, err := a.ParseWebhook(tt.kind, []byte(testSecret), h, b)
			if err == nil {
				t.Fatalf("accepted: %+v", ev)
			}
			if app.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q (%s), want %s containing %q", err, app.ErrorCode(err), tt.code, tt.msg)
			}
		})
	}
}

func FuzzParseWebhook(f *testing.F) {
	for _, name := range []string{"github-push.json", "gitlab-push.json", "gitea-push.json",
		"github-pull_request.json", "gitlab-merge_request.json", "gitea-pull_request.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	a := &forge.Adapter{}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, k := range []app.ForgeKind{app.ForgeGitHub, app.ForgeGitLab, app.ForgeGitea, app.ForgeForgejo} {
			event := "push"
			if k == app.ForgeGitLab {
				event = "Push Hook"
			}
			a.ParseWebhook(k, []byte(testSecret), headers(k, event, "d", testSecret, body), body)
			if k == app.ForgeGitLab {
				event = "Merge Request Hook"
			} else {
				event = "pull_request"
			}
			a.ParseWebhook(k, []byte(testSecret), headers(k, event, "d", testSecret, body), body)
		}
		a.ParseWebhook(app.ForgeGit, []byte(testSecret), hookHeaders(testSecret, body), body)
	})
}
