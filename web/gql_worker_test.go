package web

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"builds/app"
)

// TestWorkerMutations drives the @worker fields with a runner identity.
// No HTTP credential carries one yet (remote runners come later), so the
// real /query handler is served behind a test front that marks requests
// as the system; that also exercises multipart uploads end to end.
func TestWorkerMutations(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	key := sshKeyPEM(t)
	e.secret(alice, app.SecretInput{Type: app.SecretSSHKey, Name: "deploy", Data: key})
	e.secret(alice, app.SecretInput{Type: app.SecretFile, Name: "netrc", Data: []byte("machine m\n"), Path: "~/.netrc", Mode: 0o600})
	manifest := "image: alpine/latest\nsecrets:\n  - deploy\n  - netrc\ntasks:\n  - build: make\n"
	job, err := e.svc.Submit(as(alice), app.SubmitInput{Manifest: manifest})
	if err != nil {
		t.Fatal(err)
	}
	worker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.srv.handleQuery(w, r.WithContext(app.SystemContext(r.Context())))
	}))
	defer worker.Close()
	we := *e
	we.url = worker.URL
	run := func(q string, vars map[string]any) map[string]any { t.Helper(); return we.mustQuery("", q, vars) }

	d := run("mutation claim($jobId: Int!) { claim(jobId: $jobId) { id status runner tasks { id name status } } }", map[string]any{"jobId": job.ID})
	if get(d, "claim", "status") != "RUNNING" || get(d, "claim", "runner") != e.cfg.APIRunner(e.cfg.RunnerName()) {
		t.Errorf("claim = %v", d)
	}
	taskID := get(d, "claim", "tasks", 0, "id")
	r := we.query("", "mutation { claim(jobId: 999999) { id } }", nil)
	if !strings.Contains(r.errText(), "no such job") {
		t.Errorf("claim unknown job: %s", r.Raw)
	}
	r = we.query("", fmt.Sprintf("mutation { claim(jobId: %d) { id } }", job.ID), nil)
	if !strings.Contains(r.errText(), "is RUNNING, cannot move it to RUNNING") {
		t.Errorf("claim twice: %s", r.Raw)
	}
	d = run("mutation updateTask($taskId: Int!, $status: TaskStatus!) { updateTask(taskId: $taskId, status: $status) { id tasks { status } } }",
		map[string]any{"taskId": taskID, "status": "SUCCESS"})
	if get(d, "updateTask", "id") != float64(job.ID) || get(d, "updateTask", "tasks", 0, "status") != "SUCCESS" {
		t.Errorf("updateTask = %v", d)
	}
	d = run("query q($id: Int!) { job(id: $id) { secrets { __typename ... on SSHKey { privateKey } ... on SecretFile { path mode data } } } }", map[string]any{"id": job.ID})
	if get(d, "job", "secrets", 0, "privateKey") != base64.StdEncoding.EncodeToString(key) ||
		get(d, "job", "secrets", 1, "data") != base64.StdEncoding.EncodeToString([]byte("machine m\n")) {
		t.Errorf("secret material = %v", d)
	}

	up := uploadArtifact(t, &we, "", job.ID, "/home/build/out/report.txt", "all good\n")
	if len(up.Errors) > 0 || get(up.Data, "createArtifact", "path") != "/home/build/out/report.txt" || get(up.Data, "createArtifact", "size") != float64(9) {
		t.Fatalf("createArtifact: %s", up.Raw)
	}
	status, _, body := e.fetch(tok, get(up.Data, "createArtifact", "url").(string), "")
	if status != 200 || body != "all good\n" {
		t.Errorf("download: %d %q", status, body)
	}
	d = run("mutation updateJob($jobId: Int!, $status: JobStatus!) { updateJob(jobId: $jobId, status: $status) { status } }",
		map[string]any{"jobId": job.ID, "status": "SUCCESS"})
	if get(d, "updateJob", "status") != "SUCCESS" {
		t.Errorf("updateJob = %v", d)
	}
	r = we.query("", fmt.Sprintf("mutation { updateJob(jobId: %d, status: QUEUED) { id } }", job.ID), nil)
	if !strings.Contains(r.errText(), "is SUCCESS, cannot move it to QUEUED") {
		t.Errorf("finished job requeued: %s", r.Raw)
	}
	got, err := e.db.FindJobByID(context.Background(), job.ID)
	if err != nil || got.Status != app.JobSuccess || got.Finished == nil {
		t.Errorf("stored job = %+v, %v", got, err)
	}
}

func TestMultipartRequests(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	post := func(parts [][2]string) *gqlResult {
		var b strings.Builder
		for _, p := range parts {
			fmt.Fprintf(&b, "--XyZ\r\nContent-Disposition: form-data; %s\r\n\r\n%s\r\n", p[0], p[1])
		}
		b.WriteString("--XyZ--\r\n")
		return e.post(tok, "multipart/form-data; boundary=XyZ", []byte(b.String()))
	}
	ops := `{"query":"{ version { major } }"}`
	upload := `{"query":"mutation up($f: File!) { createArtifact(jobId: 1, path: \"x\", contents: $f) { id } }","variables":{"f":null}}`
	tests := []struct {
		name       string
		parts      [][2]string
		wantStatus int
		wantErr    string
	}{
		// The upload reaches the resolver, which refuses a user token.
		{"OK", [][2]string{{`name="operations"`, upload}, {`name="map"`, `{"f":["variables.f"]}`}, {`filename=up.txt; name=f`, "hi"}}, 200, "access denied: worker only"},
		{"FileMissingForRequiredVariable", [][2]string{{`name="operations"`, upload}, {`name="map"`, `{}`}}, 200, `Variable "$f" of required type "File!" was not provided`},
		{"NoOperations", [][2]string{{`name="map"`, `{}`}}, 400, `exactly one "operations" part`},
		{"BadMap", [][2]string{{`name="operations"`, ops}, {`name="map"`, `[`}}, 400, `invalid "map" part`},
		{"MissingFile", [][2]string{{`name="operations"`, ops}, {`name="map"`, `{"f":["variables.f"]}`}}, 400, `names file part "f", which is missing`},
		{"BadPath", [][2]string{{`name="operations"`, ops}, {`name="map"`, `{"f":["query"]}`}, {`filename=a; name=f`, "x"}}, 400, `must start with "variables."`},
		{"InlineFileLiteral", [][2]string{{`name="operations"`, `{"query":"mutation { createArtifact(jobId: 1, path: \"x\", contents: \"abc\") { id } }"}`}}, 200, `Argument "contents" has invalid value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(tt.parts)
			if r.Status != tt.wantStatus || !strings.Contains(r.errText(), tt.wantErr) || tt.wantErr == "" && len(r.Errors) > 0 {
				t.Errorf("got %d %s, want %d %q", r.Status, r.Raw, tt.wantStatus, tt.wantErr)
			}
		})
	}
}
