package forge

// Plain git repositories have no forge to send webhooks: `builds hook
// post-receive`, installed as a bare repository's post-receive hook,
// sends each updated branch or tag to /forge/hook/ID itself, signed with
// the repository's webhook secret as GitHub signs its deliveries (but in
// headers of our own, so no forge's delivery is taken for ours).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"builds/app"
)

// The headers of a post-receive hook's delivery.
const (
	// HookSignatureHeader holds "sha256=" and the hex HMAC-SHA256 of the
	// body with the repository's webhook secret.
	HookSignatureHeader = "X-Builds-Signature"
	// HookDeliveryHeader is a random id per delivery: a replay is refused.
	HookDeliveryHeader = "X-Builds-Delivery"
	// HookEventHeader is "push", the one event a hook sends.
	HookEventHeader = "X-Builds-Event"
)

// HookPush is the body of a post-receive hook's delivery: one updated ref.
type HookPush struct {
	Ref    string `json:"ref"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// SignHook is the value of HookSignatureHeader for body.
func SignHook(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// parseGitHook reads a delivery of `builds hook post-receive`.
func parseGitHook(secret []byte, h http.Header, body []byte) (*app.ForgeEvent, error) {
	sig := h.Get(HookSignatureHeader)
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if sig != "" && !ok {
		return nil, app.Errorf(app.EUNAUTHORIZED, "malformed %s header", HookSignatureHeader)
	}
	if err := verifyHMAC(secret, body, hexSig, HookSignatureHeader); err != nil {
		return nil, err
	}
	ev := &app.ForgeEvent{Delivery: h.Get(HookDeliveryHeader)}
	if err := requireDelivery(ev.Delivery, HookDeliveryHeader); err != nil {
		return nil, err
	}
	if e := h.Get(HookEventHeader); e != "push" {
		return nil, app.Errorf(app.EINVALID, "%s is %q, want push", HookEventHeader, e)
	}
	var p HookPush
	if err := decode(body, &p); err != nil {
		return nil, err
	}
	if !validRefName(p.Ref) {
		return nil, app.Errorf(app.EINVALID, "invalid ref %q", app.TruncateUTF8(p.Ref, 80))
	}
	if !app.IsCommitSHA(p.After) || p.Before != "" && !app.IsCommitSHA(p.Before) {
		return nil, app.Errorf(app.EINVALID, "before and after must be full commit ids")
	}
	ev.Type, ev.Ref, ev.Commit = app.ForgePush, p.Ref, p.After
	ev.Deleted = isZeroSHA(p.After)
	return ev, nil
}

// validRefName accepts the full ref names a hook reports (refs/...),
// without what git itself refuses in one.
func validRefName(ref string) bool {
	if !strings.HasPrefix(ref, "refs/") || len(ref) > 1024 || strings.Contains(ref, "..") || strings.HasSuffix(ref, "/") {
		return false
	}
	for _, c := range ref {
		if c < 0x20 || c == 0x7f || strings.ContainsRune(" ~^:?*[\\", c) {
			return false
		}
	}
	return true
}

// RefUpdate is one line of git's post-receive input.
type RefUpdate struct {
	Old, New, Ref string
}

// Deleted reports whether the push removed the ref.
func (u RefUpdate) Deleted() bool { return isZeroSHA(u.New) }

// Built reports whether builds acts on the ref: branches and tags.
func (u RefUpdate) Built() bool {
	return strings.HasPrefix(u.Ref, "refs/heads/") || strings.HasPrefix(u.Ref, "refs/tags/")
}

// ParsePostReceive reads git's post-receive input, "<old> <new> <ref>"
// per line. Lines that are not of that form are returned as errors naming
// the line; the good ones are returned all the same.
func ParsePostReceive(r io.Reader) ([]RefUpdate, []error) {
	var list []RefUpdate
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, " ")
		if len(f) != 3 || !app.IsCommitSHA(f[0]) || !app.IsCommitSHA(f[1]) || !validRefName(f[2]) {
			errs = append(errs, fmt.Errorf("line %d: want \"<old-sha> <new-sha> <ref>\", got %q", n, app.TruncateUTF8(line, 120)))
			continue
		}
		list = append(list, RefUpdate{Old: f[0], New: f[1], Ref: f[2]})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("line %d: %w", n+1, err))
	}
	return list, errs
}

// HookAnswer is the server's answer to a delivery (web/forge.go).
type HookAnswer struct {
	Status  int      `json:"-"`
	Message string   `json:"message"`
	GroupID int64    `json:"group_id,omitempty"`
	Jobs    []string `json:"jobs,omitempty"`
}

// HookError is a delivery the server refused, with what it said.
type HookError struct {
	Status  int
	Message string
}

func (e *HookError) Error() string {
	return fmt.Sprintf("refused by the server (%d %s): %s", e.Status, http.StatusText(e.Status), e.Message)
}

// SendHook delivers one ref update to the hook URL, signed with secret,
// and returns the server's answer; a refusal is a *HookError. client's
// Timeout (or ctx) bounds the wait: a push must never hang on builds.
func SendHook(ctx context.Context, client *http.Client, url string, secret []byte, u RefUpdate) (*HookAnswer, error) {
	body, err := json.Marshal(HookPush{Ref: u.Ref, Before: u.Old, After: u.New})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("hook URL: %w", err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "builds-post-receive")
	req.Header.Set(HookEventHeader, "push")
	req.Header.Set(HookDeliveryHeader, hex.EncodeToString(id))
	req.Header.Set(HookSignatureHeader, SignHook(secret, body))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	ans := &HookAnswer{Status: resp.StatusCode}
	if jerr := json.Unmarshal(raw, ans); jerr != nil || ans.Message == "" {
		ans.Message = strings.TrimSpace(app.TruncateUTF8(string(raw), 500))
		if ans.Message == "" {
			ans.Message = "(no message)"
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &HookError{Status: resp.StatusCode, Message: ans.Message}
	}
	return ans, nil
}
