// Package forge is the adapter between builds and the places code lives:
// it verifies and decodes GitHub, GitLab, Forgejo and Gitea webhook
// deliveries and those of `builds hook post-receive` (hook.go), and
// reads a pushed commit's manifests with git. It
// implements app.Forge; the Service decides what a push builds.
package forge

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"builds/app"
)

// Adapter implements app.Forge.
type Adapter struct {
	// Git is the git program ("" = "git" on PATH).
	Git string
}

var _ app.Forge = (*Adapter)(nil)

// zeroSHA is the "after" of a push that deleted its ref.
func isZeroSHA(s string) bool { return s != "" && strings.Trim(s, "0") == "" }

// ParseWebhook implements app.Forge.
func (a *Adapter) ParseWebhook(kind app.ForgeKind, secret []byte, h http.Header, body []byte) (*app.ForgeEvent, error) {
	switch kind {
	case app.ForgeGitHub:
		return parseGitHub(secret, h, body)
	case app.ForgeGitLab:
		return parseGitLab(secret, h, body)
	case app.ForgeForgejo, app.ForgeGitea:
		return parseGitea(kind, secret, h, body)
	case app.ForgeGit:
		return parseGitHook(secret, h, body)
	}
	return nil, app.Errorf(app.EINVALID, "unknown forge kind %q", kind)
}

// verifyHMAC checks a hex HMAC-SHA256 of body, in constant time.
func verifyHMAC(secret, body []byte, sigHex, header string) error {
	if sigHex == "" {
		return app.Errorf(app.EUNAUTHORIZED, "unsigned delivery: no %s header", header)
	}
	got, err := hex.DecodeString(sigHex)
	if err != nil {
		return app.Errorf(app.EUNAUTHORIZED, "malformed %s header", header)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return app.Errorf(app.EUNAUTHORIZED, "bad signature in %s", header)
	}
	return nil
}

func requireDelivery(id, header string) error {
	if id == "" {
		return app.Errorf(app.EINVALID, "no delivery id (%s header)", header)
	}
	if len(id) > 200 {
		return app.Errorf(app.EINVALID, "delivery id too long")
	}
	return nil
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return app.Errorf(app.EINVALID, "payload is not the JSON expected: %v", err)
	}
	return nil
}

// commit is the part of a payload's commit objects read here.
type commit struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// readPush fills ev from a push event as GitHub sends it, and Forgejo and
// Gitea after it (they send no "deleted": an all-zero after says so).
func readPush(ev *app.ForgeEvent, body []byte) (*app.ForgeEvent, error) {
	var p struct {
		Ref        string   `json:"ref"`
		After      string   `json:"after"`
		Deleted    bool     `json:"deleted"`
		HeadCommit *commit  `json:"head_commit"`
		Commits    []commit `json:"commits"`
	}
	if err := decode(body, &p); err != nil {
		return nil, err
	}
	ev.Type, ev.Ref, ev.Commit = app.ForgePush, p.Ref, p.After
	ev.Deleted = p.Deleted || isZeroSHA(p.After)
	ev.CommitURL = commitURL(p.After, p.HeadCommit, p.Commits)
	return ev, nil
}

// commitURL is the page of the commit sha among a payload's commits.
func commitURL(sha string, head *commit, commits []commit) string {
	if head != nil && head.ID == sha {
		return head.URL
	}
	for _, c := range commits {
		if c.ID == sha {
			return c.URL
		}
	}
	return ""
}

// parseGitHub reads GitHub's push and ping events. The body is signed in
// X-Hub-Signature-256 as "sha256=" and the hex HMAC-SHA256 of the body
// with the webhook's secret; X-GitHub-Event names the event and
// X-GitHub-Delivery is a GUID per delivery.
func parseGitHub(secret []byte, h http.Header, body []byte) (*app.ForgeEvent, error) {
	sig := h.Get("X-Hub-Signature-256")
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if sig != "" && !ok {
		return nil, app.Errorf(app.EUNAUTHORIZED, "malformed X-Hub-Signature-256 header")
	}
	if err := verifyHMAC(secret, body, hexSig, "X-Hub-Signature-256"); err != nil {
		return nil, err
	}
	ev := &app.ForgeEvent{Delivery: h.Get("X-GitHub-Delivery")}
	if err := requireDelivery(ev.Delivery, "X-GitHub-Delivery"); err != nil {
		return nil, err
	}
	switch h.Get("X-GitHub-Event") {
	case "ping":
		ev.Type = app.ForgePing
		return ev, nil
	case "pull_request":
		return parseGitHubPull(ev, body)
	case "push":
	default:
		ev.Type = app.ForgeIgnored
		return ev, nil
	}
	return readPush(ev, body)
}

// parseGitLab reads GitLab's "Push Hook" and "Tag Push Hook" events
// (X-Gitlab-Event). GitLab signs nothing: it sends the webhook's secret
// token itself in X-Gitlab-Token, compared here in constant time.
// X-Gitlab-Event-UUID identifies the delivery.
func parseGitLab(secret []byte, h http.Header, body []byte) (*app.ForgeEvent, error) {
	tok := h.Get("X-Gitlab-Token")
	if tok == "" {
		return nil, app.Errorf(app.EUNAUTHORIZED, "unsigned delivery: no X-Gitlab-Token header")
	}
	if subtle.ConstantTimeCompare([]byte(tok), secret) != 1 {
		return nil, app.Errorf(app.EUNAUTHORIZED, "bad secret token in X-Gitlab-Token")
	}
	ev := &app.ForgeEvent{Delivery: h.Get("X-Gitlab-Event-UUID")}
	if err := requireDelivery(ev.Delivery, "X-Gitlab-Event-UUID"); err != nil {
		return nil, err
	}
	switch h.Get("X-Gitlab-Event") {
	case "Merge Request Hook":
		return parseGitLabMR(ev, body)
	case "Push Hook", "Tag Push Hook":
	default:
		ev.Type = app.ForgeIgnored
		return ev, nil
	}
	var p struct {
		ObjectKind  string   `json:"object_kind"`
		Ref         string   `json:"ref"`
		After       string   `json:"after"`
		CheckoutSHA *string  `json:"checkout_sha"`
		Commits     []commit `json:"commits"`
	}
	if err := decode(body, &p); err != nil {
		return nil, err
	}
	if p.ObjectKind != "push" && p.ObjectKind != "tag_push" {
		return nil, app.Errorf(app.EINVALID, "a %s event with object_kind %q", h.Get("X-Gitlab-Event"), p.ObjectKind)
	}
	ev.Type, ev.Ref, ev.Commit = app.ForgePush, p.Ref, p.After
	// For an annotated tag, after is the tag object and checkout_sha the
	// commit it points to.
	if p.CheckoutSHA != nil && *p.CheckoutSHA != "" {
		ev.Commit = *p.CheckoutSHA
	}
	ev.Deleted = isZeroSHA(p.After)
	ev.CommitURL = commitURL(ev.Commit, nil, p.Commits)
	return ev, nil
}

// parseGitea reads Forgejo's and Gitea's push events. Both sign the body
// with the hex HMAC-SHA256 (no prefix); Forgejo sends X-Forgejo-* headers
// and, like Gitea, X-Gitea-* ones, which are read when the former are
// absent.
func parseGitea(kind app.ForgeKind, secret []byte, h http.Header, body []byte) (*app.ForgeEvent, error) {
	get := func(name string) (string, string) {
		if kind == app.ForgeForgejo {
			if v := h.Get("X-Forgejo-" + name); v != "" {
				return v, "X-Forgejo-" + name
			}
		}
		return h.Get("X-Gitea-" + name), "X-Gitea-" + name
	}
	sig, sigHeader := get("Signature")
	if err := verifyHMAC(secret, body, sig, sigHeader); err != nil {
		return nil, err
	}
	delivery, dh := get("Delivery")
	if err := requireDelivery(delivery, dh); err != nil {
		return nil, err
	}
	ev := &app.ForgeEvent{Delivery: delivery}
	switch event, _ := get("Event"); event {
	case "pull_request":
		return parseGiteaPull(kind, ev, body)
	case "push":
	default:
		ev.Type = app.ForgeIgnored
		return ev, nil
	}
	return readPush(ev, body)
}
