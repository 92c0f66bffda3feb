package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"unicode/utf8"

	"builds/app"
)

// maxRecorded is how much of a response body or header block is kept.
const maxRecorded = 64 << 10

// jobPayload is the JSON a webhook trigger posts: the shape of the legacy
// GET /api/jobs/:id, with public log URLs (behaviour.md §2.9).
type jobPayload struct {
	ID       int64         `json:"id"`
	Status   string        `json:"status"`
	SetupLog string        `json:"setup_log"`
	Tasks    []taskPayload `json:"tasks"`
	Note     *string       `json:"note"`
	Runner   *string       `json:"runner"`
	Tags     *string       `json:"tags"`
	Owner    ownerPayload  `json:"owner"`
}

type taskPayload struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Log    string `json:"log"`
}

type ownerPayload struct {
	CanonicalName string `json:"canonical_name"`
	Name          string `json:"name"`
}

func newJobPayload(cfg *app.Config, job *app.Job, owner *app.User, tasks []*app.Task) jobPayload {
	p := jobPayload{
		ID:       job.ID,
		Status:   string(job.Status),
		SetupLog: cfg.LogURL(job.ID, ""),
		Tasks:    []taskPayload{},
		Note:     job.Note,
		Runner:   job.Runner,
		Owner:    ownerPayload{CanonicalName: owner.CanonicalName(), Name: owner.Username},
	}
	if job.Tags != "" {
		p.Tags = &job.Tags
	}
	for _, t := range tasks {
		p.Tasks = append(p.Tasks, taskPayload{Name: t.Name, Status: string(t.Status), Log: cfg.LogURL(job.ID, t.Name)})
	}
	return p
}

// groupPayload is the JSON a group's webhook trigger posts.
type groupPayload struct {
	ID     int64        `json:"id"`
	Status string       `json:"status"`
	Note   *string      `json:"note"`
	Owner  ownerPayload `json:"owner"`
	Jobs   []jobPayload `json:"jobs"`
}

func (d *Dispatcher) newGroupPayload(ctx context.Context, g *app.JobGroup, status app.JobStatus, jobs []*app.Job, owner *app.User) groupPayload {
	p := groupPayload{ID: g.ID, Status: string(status), Note: g.Note, Jobs: []jobPayload{},
		Owner: ownerPayload{CanonicalName: owner.CanonicalName(), Name: owner.Username}}
	tasks, err := d.svc.TasksForJobs(ctx, jobs, nil)
	if err != nil {
		d.log.Error("notify: find group tasks", "group_id", g.ID, "err", err)
	}
	for _, j := range jobs {
		p.Jobs = append(p.Jobs, newJobPayload(d.cfg, j, owner, tasks[j.ID]))
	}
	return p
}

// response is what is kept of a webhook response.
type response struct {
	status  int
	headers string  // "Name: value" lines, at most maxRecorded bytes
	body    *string // nil unless textual UTF-8; at most maxRecorded bytes
}

// post sends one signed JSON payload. Only a transport failure is an
// error; any HTTP status comes back as a response.
func (d *Dispatcher) post(ctx context.Context, target string, body []byte, header http.Header) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, permanent(fmt.Errorf("invalid webhook URL: %w", err))
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, permanent(fmt.Errorf("invalid webhook URL %q: want http or https", target))
	}
	for k, v := range header {
		req.Header[k] = v
	}
	nonce, sig := sign(d.key, body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "builds-webhooks (+"+d.cfg.Builds.Origin+")")
	req.Header.Set("X-Payload-Nonce", nonce)
	req.Header.Set("X-Payload-Signature", sig)
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post webhook: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRecorded))
	if err != nil {
		data = nil // the status still counts; a cut-off body is not kept
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // lets the connection be reused
	r := &response{status: resp.StatusCode, headers: formatHeaders(resp.Header)}
	if textual(resp.Header.Get("Content-Type")) && utf8.Valid(data) {
		s := string(data)
		r.body = &s
	}
	return r, nil
}

// err is the response as the outcome of a delivery attempt: nil for a
// 2xx status, else a statusError for the retry policy to classify.
func (r *response) err() error {
	if r.status < 200 || r.status > 299 {
		return statusError(r.status)
	}
	return nil
}

// textual reports whether a Content-Type's body is worth keeping as text.
func textual(ct string) bool {
	ct, _, _ = strings.Cut(strings.ToLower(ct), ";")
	ct = strings.TrimSpace(ct)
	return strings.HasPrefix(ct, "text/") || ct == "application/json" || ct == "application/xml" ||
		strings.HasSuffix(ct, "+json") || strings.HasSuffix(ct, "+xml")
}

func formatHeaders(h http.Header) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	return app.TruncateUTF8(b.String(), maxRecorded)
}

// webhookTrigger posts the payload to the trigger's URL, retrying by the
// webhook policy (transport failures and 5xx responses).
func (d *Dispatcher) webhookTrigger(ctx context.Context, r *run, t trigger) {
	body, err := json.Marshal(r.payload())
	if err != nil {
		d.svc.SetupLogf(r.jobID, "Error sending webhook: %v", err)
		d.record(r, t, "failed", err.Error(), 0)
		return
	}
	p := d.webhookRetry()
	p.run(ctx, func(attempt int) error {
		d.svc.SetupLogf(r.jobID, "Sending webhook...")
		res, err := d.post(ctx, t.url, body, nil)
		if err != nil {
			err = cutShort(ctx, err)
			d.svc.SetupLogf(r.jobID, "Error sending webhook: %v", err)
			d.record(r, t, "failed", err.Error(), attempt)
			return err
		}
		excerpt := ""
		if res.body != nil {
			excerpt = app.TruncateUTF8(*res.body, 2048)
		}
		if excerpt != "" {
			d.svc.SetupLogf(r.jobID, "Webhook response: %d\n%s", res.status, strings.TrimRight(excerpt, "\n"))
		} else {
			d.svc.SetupLogf(r.jobID, "Webhook response: %d", res.status)
		}
		status := "sent"
		if res.err() != nil {
			status = "failed"
		}
		d.record(r, t, status, strings.TrimSpace(fmt.Sprintf("%d %s", res.status, excerpt)), attempt)
		return res.err()
	}, d.logRetry(r, "webhook", p))
}
