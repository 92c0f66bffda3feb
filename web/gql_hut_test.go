package web

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"builds/app"
)

// hut's builds operations as it sends them (clients.md §4, §9): tabs,
// a space before the variable list, fragment spreads written "... jobs".
const (
	hutSubmit = "mutation submit ($manifest: String!, $tags: [String!], $note: String, $secrets: Boolean, $execute: Boolean, $visibility: Visibility) {\n" +
		"\tsubmit(manifest: $manifest, tags: $tags, note: $note, secrets: $secrets, execute: $execute, visibility: $visibility) {\n\t\tid\n\t\towner {\n\t\t\tcanonicalName\n\t\t}\n\t}\n}\n"
	hutManifest = "query manifest ($id: Int!) {\n\tjob(id: $id) {\n\t\tmanifest\n\t\tvisibility\n\t\towner {\n\t\t\tcanonicalName\n\t\t}\n\t}\n}\n"
	hutCancel   = "mutation cancel ($jobId: Int!) {\n\tcancel(jobId: $jobId) {\n\t\tid\n\t}\n}\n"
	hutUpdate   = "mutation update ($jobId: Int!, $visibility: Visibility!) {\n\tupdate(jobId: $jobId, visibility: $visibility) {\n\t\tid\n\t}\n}\n"
	hutMonitor  = "query monitor ($id: Int!) {\n\tjob(id: $id) {\n\t\tstatus\n\t\tlog {\n\t\t\tfullURL\n\t\t}\n\t\ttasks {\n\t\t\tname\n\t\t\tstatus\n\t\t\tlog {\n\t\t\t\tfullURL\n\t\t\t}\n\t\t}\n\t}\n}\n"
	hutJobIDs   = "query jobIDs {\n\tjobs {\n\t\tresults {\n\t\t\tid\n\t\t}\n\t}\n}\n"
	hutJobsFrag = "fragment jobs on JobCursor {\n\tresults {\n\t\tid\n\t\tstatus\n\t\tnote\n\t\ttags\n\t\ttasks {\n\t\t\tname\n\t\t\tstatus\n\t\t}\n\t}\n\tcursor\n}\n"
	hutJobs     = "query jobs ($cursor: Cursor) {\n\tjobs(cursor: $cursor) {\n\t\t... jobs\n\t}\n}\n" + hutJobsFrag
	hutJobsBy   = "query jobsByUser ($username: String!, $cursor: Cursor) {\n\tuserByName(username: $username) {\n\t\tjobs(cursor: $cursor) {\n\t\t\t... jobs\n\t\t}\n\t}\n}\n" + hutJobsFrag
	hutShow     = "query show ($id: Int!) {\n\tjob(id: $id) {\n\t\tid\n\t\tstatus\n\t\tnote\n\t\ttags\n\t\tvisibility\n\t\towner {\n\t\t\tcanonicalName\n\t\t}\n" +
		"\t\tlog {\n\t\t\tfullURL\n\t\t}\n\t\ttasks {\n\t\t\tname\n\t\t\tstatus\n\t\t\tlog {\n\t\t\t\tfullURL\n\t\t\t}\n\t\t}\n\t\tgroup {\n\t\t\tjobs {\n\t\t\t\tid\n\t\t\t\tstatus\n\t\t\t}\n\t\t}\n\t}\n}\n"
	hutSSHInfo   = "query getSSHInfo ($id: Int!) {\n\tjob(id: $id) {\n\t\tid\n\t\trunner\n\t}\n\tversion {\n\t\tsettings {\n\t\t\tsshUser\n\t\t}\n\t}\n}\n"
	hutArtifacts = "query artifacts ($id: Int!) {\n\tjob(id: $id) {\n\t\tartifacts {\n\t\t\tpath\n\t\t\tsize\n\t\t\turl\n\t\t}\n\t}\n}\n"
	hutComplete  = "query completeSecrets {\n\tsecrets {\n\t\tresults {\n\t\t\tuuid\n\t\t\tname\n\t\t}\n\t}\n}\n"
	hutExport    = "query exportJobs ($cursor: Cursor) {\n\tjobs(cursor: $cursor) {\n\t\tresults {\n\t\t\tid\n\t\t\tstatus\n\t\t\tnote\n\t\t\ttags\n\t\t\tvisibility\n\t\t\tmanifest\n" +
		"\t\t\tlog {\n\t\t\t\tfullURL\n\t\t\t}\n\t\t\ttasks {\n\t\t\t\tname\n\t\t\t\tstatus\n\t\t\t\tlog {\n\t\t\t\t\tfullURL\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t\tcursor\n\t}\n}\n"
	hutFetchMe = "query fetchMe {\n\tme {\n\t\t... user\n\t}\n}\nfragment user on User {\n\tcanonicalName\n\temail\n\turl\n\tlocation\n\tbio\n}\n"
)

// TestHutSession walks through the hut commands of clients.md §4 in
// order, with hut's operation texts, variables and log fetching.
func TestHutSession(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()
	alice, tok := e.user("alice")
	_, bobTok := e.user("bob")

	// builds submit (defaults: tags [""], note "", secrets true, UNLISTED).
	d := e.mustQuery(tok, hutSubmit, map[string]any{"manifest": testManifest, "tags": []string{""}, "note": "", "secrets": true, "visibility": "UNLISTED"})
	id := int64(get(d, "submit", "id").(float64))
	if url := e.url + "/" + get(d, "submit", "owner", "canonicalName").(string) + fmt.Sprintf("/job/%d", id); url != fmt.Sprintf("%s/~alice/job/%d", e.url, id) {
		t.Errorf("job URL %s", url)
	}
	// builds submit --tags proj/ci --note first -v public
	d = e.mustQuery(tok, hutSubmit, map[string]any{"manifest": testManifest, "tags": []string{"proj", "ci"}, "note": "first", "secrets": false, "visibility": "PUBLIC"})
	second := int64(get(d, "submit", "id").(float64))

	// builds show (no id): newest job first.
	d = e.mustQuery(tok, hutJobIDs, nil)
	if get(d, "jobs", "results", 0, "id") != float64(second) {
		t.Errorf("jobIDs = %v", d)
	}
	// builds list, and builds list ~alice as bob.
	d = e.mustQuery(tok, hutJobs, map[string]any{"cursor": nil})
	if fmt.Sprint(get(d, "jobs")) != fmt.Sprintf("map[cursor:<nil> results:[map[id:%d note:first status:QUEUED tags:[proj ci] tasks:[map[name:build status:PENDING] map[name:test status:PENDING]]] "+
		"map[id:%d note:<nil> status:QUEUED tags:[] tasks:[map[name:build status:PENDING] map[name:test status:PENDING]]]]]", second, id) {
		t.Errorf("list = %v", d)
	}
	d = e.mustQuery(bobTok, hutJobsBy, map[string]any{"username": "alice", "cursor": nil})
	if fmt.Sprint(get(d, "userByName", "jobs", "results", 0, "id")) != fmt.Sprint(second) || len(get(d, "userByName", "jobs", "results").([]any)) != 1 {
		t.Errorf("list ~alice as bob = %v", d)
	}
	if r := e.query(tok, hutJobsBy, map[string]any{"username": "nobody", "cursor": nil}); len(r.Errors) > 0 || r.Data["userByName"] != nil {
		t.Errorf("unknown user: %s", r.Raw)
	}

	// builds resubmit <id>: manifest, then submit with tags null.
	d = e.mustQuery(tok, hutManifest, map[string]any{"id": second})
	note := fmt.Sprintf("Resubmission of build [#%d](/%s/job/%d)", second, get(d, "job", "owner", "canonicalName"), second)
	d = e.mustQuery(tok, hutSubmit, map[string]any{"manifest": get(d, "job", "manifest"), "tags": nil, "note": note, "secrets": true, "visibility": get(d, "job", "visibility")})
	third := int64(get(d, "submit", "id").(float64))
	if j, _ := e.db.FindJobByID(ctx, third); j.Visibility != app.Public || *j.Note != note {
		t.Errorf("resubmitted job = %+v", j)
	}

	// builds update <id> -v private
	if d = e.mustQuery(tok, hutUpdate, map[string]any{"jobId": third, "visibility": "PRIVATE"}); get(d, "update", "id") != float64(third) {
		t.Errorf("update = %v", d)
	}
	if r := e.query(bobTok, hutShow, map[string]any{"id": third}); len(r.Errors) > 0 || r.Data["job"] != nil {
		t.Errorf("bob shows a private job: %s", r.Raw)
	}

	// The first job runs and fails: builds show <id> fetches the failed
	// task's log with Range, builds ssh reads the runner.
	job, _ := e.db.FindJobByID(ctx, id)
	e.run(job, "[#1] Booting image alpine/latest\n", "+ echo hello\nhello\nerror: boom\n")
	tasks, _ := e.db.FindTasks(ctx, id)
	sys := app.SystemContext(ctx)
	if err := e.svc.SetTaskStatus(sys, tasks[0], app.TaskFailed); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.FinishJob(sys, id, app.JobFailed, ""); err != nil {
		t.Fatal(err)
	}
	d = e.mustQuery(tok, hutMonitor, map[string]any{"id": id})
	if get(d, "job", "status") != "FAILED" || get(d, "job", "tasks", 1, "log") != nil {
		t.Errorf("monitor = %v", d)
	}
	d = e.mustQuery(tok, hutShow, map[string]any{"id": id})
	logURL, _ := get(d, "job", "tasks", 0, "log", "fullURL").(string)
	status, h, body := e.fetch(tok, logURL, "bytes=0-")
	if status != 206 || h.Get("Content-Range") != "bytes 0-30/31" || body != "+ echo hello\nhello\nerror: boom\n" {
		t.Errorf("failed task log: %d %q %q", status, h.Get("Content-Range"), body)
	}
	d = e.mustQuery(tok, hutSSHInfo, map[string]any{"id": id})
	if fmt.Sprint(d) != fmt.Sprintf("map[job:map[id:%d runner:runner.example.org] version:map[settings:map[sshUser:ssh://builds]]]", id) {
		t.Errorf("getSSHInfo = %v", d)
	}
	e.artifact(job, "/home/build/out/app.tar.gz", "12345")
	d = e.mustQuery(tok, hutArtifacts, map[string]any{"id": id})
	if u, _ := get(d, "job", "artifacts", 0, "url").(string); get(d, "job", "artifacts", 0, "size") != float64(5) || !strings.HasSuffix(u, "/app.tar.gz") {
		t.Errorf("artifacts = %v", d)
	}

	// builds cancel
	if d = e.mustQuery(tok, hutCancel, map[string]any{"jobId": second}); get(d, "cancel", "id") != float64(second) {
		t.Errorf("cancel = %v", d)
	}
	if r := e.query(tok, hutCancel, map[string]any{"jobId": id}); !strings.Contains(r.errText(), "already finished") {
		t.Errorf("cancel finished job: %s", r.Raw)
	}

	// hut export: plain GETs without Range must answer 200.
	d = e.mustQuery(tok, hutExport, map[string]any{"cursor": nil})
	for _, j := range get(d, "jobs", "results").([]any) {
		if get(j, "status") != "FAILED" {
			continue
		}
		for _, u := range []any{get(j, "log", "fullURL"), get(j, "tasks", 0, "log", "fullURL")} {
			if status, _, body := e.fetch(tok, u.(string), ""); status != 200 || body == "" {
				t.Errorf("export GET %v: %d", u, status)
			}
		}
	}
	e.mustQuery(tok, hutComplete, nil)
	d = e.mustQuery(tok, hutFetchMe, nil)
	if fmt.Sprint(d) != "map[me:map[bio:<nil> canonicalName:~alice email:alice@example.org location:<nil> url:<nil>]]" {
		t.Errorf("fetchMe = %v", d)
	}
	_ = alice
}
