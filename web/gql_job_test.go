package web

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"builds/app"
)

// fetch GETs a log or artifact URL with an optional token and Range.
func (e *apiEnv) fetch(token, url, rng string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (e *apiEnv) artifact(job *app.Job, path, content string) *app.Artifact {
	e.t.Helper()
	a, err := e.svc.StoreArtifact(app.SystemContext(context.Background()), job.ID, path, strings.NewReader(content))
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// TestVisibilityMatrix checks PUBLIC/UNLISTED/PRIVATE × owner/other
// user/anonymous on job lookups, listings, logs and artifacts.
func TestVisibilityMatrix(t *testing.T) {
	e := newAPIEnv(t)
	alice, aliceTok := e.user("alice")
	_, bobTok := e.user("bob")
	type who struct {
		name  string
		token string
	}
	viewers := []who{{"Owner", aliceTok}, {"Other", bobTok}, {"Anonymous", ""}}
	// want[visibility][viewer]: may see by id / in the owner's list.
	seeByID := map[app.Visibility][3]bool{
		app.Public:   {true, true, true},
		app.Unlisted: {true, true, true},
		app.Private:  {true, false, false},
	}
	listed := map[app.Visibility][3]bool{
		app.Public:   {true, true, false},
		app.Unlisted: {true, false, false},
		app.Private:  {true, false, false},
	}
	for _, vis := range []app.Visibility{app.Public, app.Unlisted, app.Private} {
		job := e.run(e.submit(alice, vis), "setup log\n", "build log\n")
		a := e.artifact(job, "/home/build/out.txt", "artifact "+string(vis))
		for i, v := range viewers {
			t.Run(string(vis)+"/"+v.name, func(t *testing.T) {
				q := fmt.Sprintf(`{ job(id: %d) { id } userByName(username: "alice") { jobs { results { id } } } }`, job.ID)
				r := e.query(v.token, q, nil)
				if v.token == "" {
					if !strings.Contains(r.errText(), "Authorization header is required") {
						t.Errorf("anonymous GraphQL: %s", r.Raw)
					}
				} else {
					if len(r.Errors) > 0 {
						t.Fatalf("query: %s", r.Raw)
					}
					if got := r.Data["job"] != nil; got != seeByID[vis][i] {
						t.Errorf("job(id) visible = %v, want %v", got, seeByID[vis][i])
					}
					inList := strings.Contains(fmt.Sprint(get(r.Data, "userByName", "jobs", "results")), fmt.Sprintf("id:%d]", job.ID))
					if inList != listed[vis][i] {
						t.Errorf("listed = %v, want %v", inList, listed[vis][i])
					}
				}
				for _, u := range []struct{ url, body string }{
					{LogURL(e.url, job.ID, ""), "setup log\n"},
					{LogURL(e.url, job.ID, "build"), "build log\n"},
					{ArtifactURL(e.url, a), "artifact " + string(vis)},
				} {
					status, _, body := e.fetch(v.token, u.url, "")
					if seeByID[vis][i] {
						if status != 200 || body != u.body {
							t.Errorf("GET %s: %d %q", u.url, status, body)
						}
					} else if status != 404 {
						t.Errorf("GET %s: %d %q, want 404", u.url, status, body)
					}
				}
			})
		}
	}
}

func TestJobsPaging(t *testing.T) {
	e := newAPIEnv(t)
	alice, aliceTok := e.user("alice")
	_, bobTok := e.user("bob")
	var public []int64
	for i := 0; i < 60; i++ {
		vis := app.Private
		if i%3 == 0 {
			vis = app.Public
		}
		j := e.submit(alice, vis)
		if vis == app.Public {
			public = append([]int64{j.ID}, public...)
		}
	}
	pageAll := func(token, q string, root ...any) (ids []int64, sizes []int, cursors []string) {
		var cursor any
		for n := 0; n < 10; n++ {
			d := e.mustQuery(token, q, map[string]any{"cursor": cursor})
			res, _ := get(d, append(root, "results")...).([]any)
			sizes = append(sizes, len(res))
			for _, r := range res {
				ids = append(ids, int64(get(r, "id").(float64)))
			}
			cursor = get(d, append(root, "cursor")...)
			if cursor == nil {
				return
			}
			cursors = append(cursors, cursor.(string))
		}
		t.Fatal("paging did not end")
		return
	}
	ids, sizes, cursors := pageAll(aliceTok, "query jobs ($cursor: Cursor) { jobs(cursor: $cursor) { results { id } cursor } }", "jobs")
	if fmt.Sprint(sizes) != "[25 25 10]" || len(ids) != 60 {
		t.Fatalf("page sizes %v, %d ids", sizes, len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("not newest first at %d: %v", i, ids)
		}
	}
	otherIDs, otherSizes, _ := pageAll(bobTok, `query q($cursor: Cursor) { userByName(username: "alice") { jobs(cursor: $cursor) { results { id } cursor } } }`, "userByName", "jobs")
	if fmt.Sprint(otherIDs) != fmt.Sprint(public) || fmt.Sprint(otherSizes) != "[20]" {
		t.Errorf("bob sees %v (pages %v), want %v", otherIDs, otherSizes, public)
	}

	raw, _ := base64.RawURLEncoding.DecodeString(cursors[0])
	parts := strings.Split(string(raw), ".")
	tampered := base64.RawURLEncoding.EncodeToString([]byte(parts[0] + ".999999." + parts[2]))
	bad := []struct{ name, token, query, cursor string }{
		{"Garbage", aliceTok, "query q($c: Cursor) { jobs(cursor: $c) { cursor } }", "opaque-cursor-2"},
		{"Tampered", aliceTok, "query q($c: Cursor) { jobs(cursor: $c) { cursor } }", tampered},
		{"ForeignUser", bobTok, "query q($c: Cursor) { jobs(cursor: $c) { cursor } }", cursors[0]},
		{"OtherList", aliceTok, "query q($c: Cursor) { secrets(cursor: $c) { cursor } }", cursors[0]},
		{"OtherListWebhooks", aliceTok, "query q($c: Cursor) { userWebhooks(cursor: $c) { cursor } }", cursors[0]},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			r := e.query(b.token, b.query, map[string]any{"c": b.cursor})
			if r.errText() != "Invalid cursor" || r.Errors[0].Extensions["code"] != "BAD_USER_INPUT" || r.Data != nil {
				t.Errorf("got %s", r.Raw)
			}
		})
	}
}

func TestJobMutations(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	_, bobTok := e.user("bob")
	const fields = "id status note tags visibility image runner manifest owner { canonicalName } tasks { name status log { fullURL } } group { id } log { fullURL } secrets { uuid }"
	submit := func(vars map[string]any) map[string]any {
		t.Helper()
		d := e.mustQuery(tok, "mutation submit($manifest: String!, $tags: [String!], $note: String, $secrets: Boolean, $execute: Boolean, $visibility: Visibility) {\n"+
			"\tsubmit(manifest: $manifest, tags: $tags, note: $note, secrets: $secrets, execute: $execute, visibility: $visibility) { "+fields+" }\n}\n", vars)
		return d["submit"].(map[string]any)
	}
	// hut's defaults: tags [""], note "", secrets true, visibility UNLISTED.
	j := submit(map[string]any{"manifest": testManifest, "tags": []string{""}, "note": "", "secrets": true, "visibility": "UNLISTED"})
	want := map[string]any{"status": "QUEUED", "note": nil, "visibility": "UNLISTED", "image": "alpine/latest", "runner": nil, "log": nil, "group": nil, "manifest": testManifest}
	for k, v := range want {
		if j[k] != v {
			t.Errorf("submit %s = %v, want %v", k, j[k], v)
		}
	}
	if fmt.Sprint(j["tags"]) != "[]" || fmt.Sprint(j["tasks"]) != "[map[log:<nil> name:build status:PENDING] map[log:<nil> name:test status:PENDING]]" ||
		get(j, "owner", "canonicalName") != "~alice" || fmt.Sprint(j["secrets"]) != "[]" {
		t.Errorf("submit = %v", j)
	}
	j = submit(map[string]any{"manifest": testManifest, "tags": []string{"proj", "ci"}, "note": "first", "execute": false, "secrets": false, "visibility": "PRIVATE"})
	if fmt.Sprint(j["tags"]) != "[proj ci]" || j["note"] != "first" || j["status"] != "PENDING" || j["visibility"] != "PRIVATE" || j["secrets"] != nil {
		t.Errorf("submit = %v", j)
	}
	pending := int64(j["id"].(float64))

	r := e.query(tok, `mutation { submit(manifest: "image: alpine/latest\ntasks: nope\nartifacts: 3\n") { id } }`, nil)
	if r.Data != nil || !strings.Contains(r.errText(), "tasks") || !strings.Contains(r.errText(), "artifacts") || r.Errors[0].Extensions["code"] != "BAD_USER_INPUT" {
		t.Errorf("invalid manifest: %s", r.Raw)
	}
	r = e.query(tok, `mutation { submit(manifest: "image: x\ntasks:\n- a: b\n", tags: ["bad/tag"]) { id } }`, nil)
	if !strings.Contains(r.errText(), "Invalid tag name") {
		t.Errorf("bad tag: %s", r.Raw)
	}

	steps := []struct {
		name, token, query, want, wantErr string
	}{
		{"StartOthersJob", bobTok, "mutation { start(jobID: %d) { status } }", "", "Found no pending jobs"},
		{"Start", tok, "mutation { start(jobID: %d) { status } }", "QUEUED", ""},
		{"StartAgain", tok, "mutation { start(jobID: %d) { status } }", "", "Found no pending jobs"},
		{"UpdateOthersJob", bobTok, "mutation { update(jobId: %d, visibility: PUBLIC) { visibility } }", "", "no such job"},
		{"Update", tok, "mutation { update(jobId: %d, visibility: PUBLIC) { visibility } }", "PUBLIC", ""},
		{"CancelOthersJob", bobTok, "mutation { cancel(jobId: %d) { status } }", "", "no such job"},
		{"Cancel", tok, "mutation { cancel(jobId: %d) { status } }", "CANCELLED", ""},
		{"CancelAgain", tok, "mutation { cancel(jobId: %d) { status } }", "", "has already finished"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := e.query(s.token, fmt.Sprintf(s.query, pending), nil)
			if s.wantErr != "" {
				if !strings.Contains(r.errText(), s.wantErr) {
					t.Errorf("got %s, want error %q", r.Raw, s.wantErr)
				}
				return
			}
			if len(r.Errors) > 0 || !strings.Contains(r.Raw, s.want) {
				t.Errorf("got %s, want %s", r.Raw, s.want)
			}
		})
	}
}

func TestJobGroups(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	_, bobTok := e.user("bob")
	a, b := e.submit(alice, app.Public), e.submit(alice, app.Private)
	q := `mutation createGroup($jobIds: [Int!]!, $triggers: [TriggerInput!], $execute: Boolean, $note: String) {
	createGroup(jobIds: $jobIds, triggers: $triggers, execute: $execute, note: $note) {
		id note owner { canonicalName } jobs { id status }
		triggers { __typename condition ... on EmailTrigger { to cc inReplyTo } ... on WebhookTrigger { url } }
	}
}`
	d := e.mustQuery(tok, q, map[string]any{
		"jobIds":  []int64{a.ID, b.ID},
		"execute": false,
		"note":    "group note",
		"triggers": []any{
			map[string]any{"type": "EMAIL", "condition": "FAILURE", "email": map[string]any{"to": "dev@example.org", "inReplyTo": "<x@example.org>"}},
			map[string]any{"type": "WEBHOOK", "condition": "ALWAYS", "webhook": map[string]any{"url": "https://hooks.example.org/ci"}},
		},
	})
	g := d["createGroup"].(map[string]any)
	gid := int64(g["id"].(float64))
	if g["note"] != "group note" || get(g, "owner", "canonicalName") != "~alice" ||
		fmt.Sprint(g["jobs"]) != fmt.Sprintf("[map[id:%d status:PENDING] map[id:%d status:PENDING]]", a.ID, b.ID) {
		t.Errorf("group = %v", g)
	}
	wantTriggers := "[map[__typename:EmailTrigger cc:<nil> condition:FAILURE inReplyTo:<x@example.org> to:dev@example.org] map[__typename:WebhookTrigger condition:ALWAYS url:https://hooks.example.org/ci]]"
	if fmt.Sprint(g["triggers"]) != wantTriggers {
		t.Errorf("triggers = %v", g["triggers"])
	}
	r := e.query(tok, q, map[string]any{"jobIds": []int64{a.ID}})
	if !strings.Contains(r.errText(), "Invalid list of job IDs") {
		t.Errorf("grouping a grouped job: %s", r.Raw)
	}
	r = e.query(tok, q, map[string]any{"jobIds": []int64{e.submit(alice, app.Public).ID}, "triggers": []any{map[string]any{"type": "EMAIL", "condition": "ALWAYS"}}})
	if !strings.Contains(r.errText(), "needs the 'email' field") {
		t.Errorf("email trigger without email: %s", r.Raw)
	}
	// Other users see the group's public jobs only, and no triggers.
	d = e.mustQuery(bobTok, fmt.Sprintf("{ job(id: %d) { group { id jobs { id } triggers { condition } } } }", a.ID), nil)
	if fmt.Sprint(get(d, "job", "group", "jobs")) != fmt.Sprintf("[map[id:%d]]", a.ID) || fmt.Sprint(get(d, "job", "group", "triggers")) != "[]" {
		t.Errorf("bob sees %v", d)
	}
	r = e.query(bobTok, fmt.Sprintf("mutation { startGroup(groupId: %d) { id } }", gid), nil)
	if !strings.Contains(r.errText(), "Found no job group by this ID") {
		t.Errorf("bob starts alice's group: %s", r.Raw)
	}
	d = e.mustQuery(tok, fmt.Sprintf("mutation { startGroup(groupId: %d) { id jobs { status } } }", gid), nil)
	if fmt.Sprint(get(d, "startGroup", "jobs")) != "[map[status:QUEUED] map[status:QUEUED]]" {
		t.Errorf("startGroup = %v", d)
	}
}

func TestJobFields(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	big := strings.Repeat("x", 200<<10) + "\nthe end\n"
	job := e.run(e.submit(alice, app.Unlisted), "é"+big, "build output\n")
	a := e.artifact(job, "/home/build/out/app.tar.gz", "12345")
	pruned := e.artifact(job, "old.bin", "0123456789")
	if err := os.Remove(e.svc.ArtifactPath(pruned)); err != nil {
		t.Fatal(err)
	}
	d := e.mustQuery(tok, `query q($id: Int!) { job(id: $id) {
		id created updated status runner
		log { fullURL last128KiB }
		tasks { id created name status log { fullURL last128KiB } job { id } }
		artifacts { id created path size url }
	} }`, map[string]any{"id": job.ID})
	j := d["job"].(map[string]any)
	if j["status"] != "RUNNING" || j["runner"] != "runner.example.org" {
		t.Errorf("job = %v", j)
	}
	for _, k := range []string{"created", "updated"} {
		if _, err := time.Parse(time.RFC3339, j[k].(string)); err != nil || !strings.HasSuffix(j[k].(string), "Z") {
			t.Errorf("%s = %v: %v", k, j[k], err)
		}
	}
	if got := get(j, "log", "fullURL"); got != fmt.Sprintf("%s/query/log/%d/log", e.url, job.ID) {
		t.Errorf("log url = %v", got)
	}
	tail := get(j, "log", "last128KiB").(string)
	if len(tail) != 128<<10 || !strings.HasSuffix(tail, "\nthe end\n") {
		t.Errorf("last128KiB: %d bytes ending %q", len(tail), tail[len(tail)-10:])
	}
	if get(j, "tasks", 0, "log", "fullURL") != fmt.Sprintf("%s/query/log/%d/build/log", e.url, job.ID) ||
		get(j, "tasks", 0, "log", "last128KiB") != "build output\n" || get(j, "tasks", 1, "log") != nil ||
		get(j, "tasks", 0, "job", "id") != float64(job.ID) || get(j, "tasks", 1, "status") != "PENDING" {
		t.Errorf("tasks = %v", j["tasks"])
	}
	if err := e.svc.SkipRemainingTasks(app.SystemContext(context.Background()), job.ID); err != nil {
		t.Fatal(err)
	}
	d2 := e.mustQuery(tok, `query q($id: Int!) { job(id: $id) { tasks { status log { fullURL } } } }`, map[string]any{"id": job.ID})
	if fmt.Sprint(get(d2, "job", "tasks", 1)) != "map[log:<nil> status:SKIPPED]" {
		t.Errorf("skipped task = %v", get(d2, "job", "tasks", 1))
	}
	// a task stopped by a cancel is cancelled, which the API's TaskStatus
	// lacks (hut stops on values it does not know): it is FAILED there,
	// through either executor
	sys := app.SystemContext(context.Background())
	tasks, err := e.db.FindTasks(sys, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetTaskStatus(sys, tasks[0], app.TaskCancelled); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`query q($id: Int!) { job(id: $id) { tasks { status } } }`,
		`query q($id: Int!) { job(id: $id) { __typename tasks { __typename status } } }`,
	} {
		d3 := e.mustQuery(tok, q, map[string]any{"id": job.ID})
		if got := get(d3, "job", "tasks", 0, "status"); got != "FAILED" {
			t.Errorf("%s: cancelled task's status = %v, want FAILED", q, got)
		}
	}
	arts := fmt.Sprint(j["artifacts"])
	wantURL := fmt.Sprintf("%s/query/artifact/%d/app.tar.gz", e.url, a.ID)
	if !strings.Contains(arts, "path:/home/build/out/app.tar.gz size:5 url:"+wantURL) || !strings.Contains(arts, "path:old.bin size:10 url:<nil>") {
		t.Errorf("artifacts = %v", arts)
	}
	status, h, body := e.fetch(tok, wantURL, "")
	if status != 200 || body != "12345" || h.Get("Content-Type") != "application/octet-stream" ||
		h.Get("Content-Disposition") != `attachment; filename=app.tar.gz` {
		t.Errorf("artifact download: %d %v %q", status, h, body)
	}
	for _, u := range []string{
		fmt.Sprintf("%s/query/artifact/%d/other.tar.gz", e.url, a.ID),
		fmt.Sprintf("%s/query/artifact/%d/old.bin", e.url, pruned.ID),
		e.url + "/query/artifact/99999/x",
	} {
		if status, _, body := e.fetch(tok, u, ""); status != 404 {
			t.Errorf("GET %s: %d %s", u, status, body)
		}
	}
	if status, _, _ := e.fetch(tok, e.url+"/query/artifact/abc/x", ""); status != 400 {
		t.Errorf("bad artifact id: %d", status)
	}
	if status, _, body := e.fetch(e.token(alice, "LOGS:RO"), wantURL, ""); status != 403 || !strings.Contains(body, "JOBS:RO") {
		t.Errorf("artifact without JOBS:RO: %d %s", status, body)
	}
}
