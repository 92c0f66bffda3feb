package web

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"builds/app"
)

// accessOps holds a small document for every root field the reference
// marks with @access; JOB stands for a job id of the caller's.
func accessOps() map[string]string {
	return map[string]string{
		"job":         "{ job(id: JOB) { id } }",
		"jobs":        "{ jobs { cursor } }",
		"me":          "{ me { username } }",
		"secrets":     "{ secrets { cursor } }",
		"userByID":    "{ userByID(id: 1) { username } }",
		"userByName":  `{ userByName(username: "alice") { username } }`,
		"cancel":      "mutation { cancel(jobId: JOB) { id } }",
		"createGroup": "mutation { createGroup(jobIds: [JOB], execute: false) { id } }",
		"shareSecret": `mutation { shareSecret(uuid: "00000000-0000-4000-8000-000000000000", user: "bob") { uuid } }`,
		"start":       "mutation { start(jobID: JOB) { id } }",
		"startGroup":  "mutation { startGroup(groupId: 1) { id } }",
		"submit":      `mutation { submit(manifest: "image: alpine/latest\ntasks:\n- a: b\n", execute: false) { id } }`,
		"update":      "mutation { update(jobId: JOB, visibility: PUBLIC) { id } }",
	}
}

// otherScope returns a grant that does not include scope.
func otherScope(scope string) string {
	if scope == "PROFILE" {
		return "JOBS:RW"
	}
	return "PROFILE:RW"
}

// TestAccessRootFields checks every @access of the reference: denied
// without the grant (the error names it), denied with RO for RW fields,
// allowed with it, and refused to anonymous callers.
func TestAccessRootFields(t *testing.T) {
	ref := parseReference(t)
	e := newAPIEnv(t)
	alice, _ := e.user("alice")
	e.user("bob")
	ops := accessOps()
	for _, op := range append(ref.queries, ref.mutations...) {
		if op.access == "" {
			continue
		}
		doc, ok := ops[op.name]
		if !ok {
			t.Errorf("no access test for %s (@access %s)", op.name, op.access)
			continue
		}
		t.Run(op.name, func(t *testing.T) {
			job := e.submit(alice, app.Private)
			doc := strings.ReplaceAll(doc, "JOB", fmt.Sprint(job.ID))
			scope, kind, _ := strings.Cut(op.access, ":")
			cases := []struct {
				name, grants string
				anonymous    bool
				wantErr      string
			}{
				{name: "NoGrant", grants: otherScope(scope), wantErr: "access denied: this token lacks the " + op.access + " grant"},
				{name: "Anonymous", anonymous: true, wantErr: "Authorization header is required"},
				{name: "Allowed", grants: op.access},
				{name: "AllGrants", grants: ""},
			}
			if kind == "RW" {
				cases = append(cases, struct {
					name, grants string
					anonymous    bool
					wantErr      string
				}{name: "ReadOnly", grants: scope + ":RO", wantErr: "lacks the " + scope + ":RW grant"})
			}
			for _, c := range cases {
				tok := ""
				if !c.anonymous {
					tok = e.token(alice, c.grants)
				}
				r := e.query(tok, doc, nil)
				if r.Status != http.StatusOK {
					t.Fatalf("%s: status %d: %s", c.name, r.Status, r.Raw)
				}
				if c.wantErr == "" {
					if strings.Contains(r.errText(), "access denied") || strings.Contains(r.errText(), "Authorization") {
						t.Errorf("%s: refused: %s", c.name, r.Raw)
					}
					continue
				}
				if !strings.Contains(r.errText(), c.wantErr) {
					t.Errorf("%s: errors %s, want %q", c.name, r.Raw, c.wantErr)
				} else if code := r.Errors[0].Extensions["code"]; code != "FORBIDDEN" && code != "UNAUTHENTICATED" {
					t.Errorf("%s: code %q", c.name, code)
				}
			}
		})
	}
}

// TestAccessFields checks the field-level guards of behaviour.md §4.3.
func TestAccessFields(t *testing.T) {
	e := newAPIEnv(t)
	alice, _ := e.user("alice")
	job := e.run(e.submit(alice, app.Public), "setup\n", "task\n")
	if _, err := e.svc.CreateGroup(as(alice), []int64{e.submit(alice, app.Public).ID}, nil, ptr(false), nil); err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{"id": job.ID}
	tests := []struct {
		name, query, need string
		path              string // where the error is reported
	}{
		{"JobOwner", "query q($id: Int!) { job(id: $id) { owner { canonicalName } } }", "PROFILE:RO", "job.owner"},
		{"JobLog", "query q($id: Int!) { job(id: $id) { log { fullURL } } }", "LOGS:RO", "job.log"},
		{"TaskLog", "query q($id: Int!) { job(id: $id) { tasks { log { fullURL } } } }", "LOGS:RO", "job.tasks.0.log"},
		{"JobSecrets", "query q($id: Int!) { job(id: $id) { secrets { uuid } } }", "SECRETS:RO", "job.secrets"},
		{"UserJobs", "{ userByName(username: \"alice\") { jobs { cursor } } }", "JOBS:RO", "userByName.jobs"},
		{"GroupOwner", "{ jobs { results { group { id owner { canonicalName } } } } }", "PROFILE:RO", "jobs.results.0.group.owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Grant everything the query needs but the guarded scope.
			base := map[string]bool{"JOBS:RO": true, "PROFILE:RO": true}
			delete(base, tt.need)
			var grants []string
			for g := range base {
				grants = append(grants, g)
			}
			if len(grants) == 0 {
				grants = []string{"LOGS:RO"}
			}
			vars := vars
			if !strings.Contains(tt.query, "$id") {
				vars = nil
			}
			r := e.query(e.token(alice, strings.Join(grants, " ")), tt.query, vars)
			if !strings.Contains(r.errText(), "lacks the "+tt.need+" grant") {
				t.Fatalf("errors %s, want one naming %s", r.Raw, tt.need)
			}
			var path []string
			for _, p := range r.Errors[0].Path {
				path = append(path, fmt.Sprint(p))
			}
			if strings.Join(path, ".") != tt.path {
				t.Errorf("path = %v, want %s", path, tt.path)
			}
			r = e.query(e.token(alice, strings.Join(append(grants, tt.need), " ")), tt.query, vars)
			if len(r.Errors) > 0 {
				t.Errorf("with %s: %s", tt.need, r.Raw)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestAccessAnonymous(t *testing.T) {
	e := newAPIEnv(t)
	alice, _ := e.user("alice")
	job := e.submit(alice, app.Public)
	d := e.mustQuery("", "{ version { major minor patch deprecationDate settings { sshUser buildTimeout } } }", nil)
	if get(d, "version", "settings", "sshUser") != "ssh://builds" {
		t.Errorf("version = %v", d)
	}
	e.mustQuery("", "{ __schema { queryType { name } } __typename }", nil)
	for _, q := range []string{
		fmt.Sprintf("{ job(id: %d) { id } }", job.ID),
		"{ userWebhooks { cursor } }",
		"{ userWebhook(id: 1) { id } }",
		"mutation { deleteUser }",
		`mutation { createUserWebhook(config: {url: "https://example.org", events: [JOB_CREATED], query: "{ version { major } }"}) { id } }`,
		"mutation { deleteUserWebhook(id: 1) { id } }",
	} {
		r := e.query("", q, nil)
		if !strings.Contains(r.errText(), "Authorization header is required") || r.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
			t.Errorf("%s: %s", q, r.Raw)
		}
	}
	// A bad token is refused outright, before GraphQL.
	r := e.query("not-a-token", "{ version { major } }", nil)
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.errText(), "invalid or expired access token") {
		t.Errorf("bad token: %d %s", r.Status, r.Raw)
	}
}

// TestAccessWorkerOnly: @worker fields exist with their exact types but
// refuse every user token, whatever its grants.
func TestAccessWorkerOnly(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	job := e.submit(alice, app.Private)
	key := sshKeyPEM(t)
	if _, err := e.svc.CreateSecret(app.SystemContext(context.Background()), alice.ID, app.SecretInput{Type: app.SecretSSHKey, Data: key}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateSecret(app.SystemContext(context.Background()), alice.ID,
		app.SecretInput{Type: app.SecretFile, Data: []byte("x"), Path: "~/.x", Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		fmt.Sprintf("mutation { claim(jobId: %d) { id } }", job.ID),
		fmt.Sprintf("mutation { updateJob(jobId: %d, status: RUNNING) { id } }", job.ID),
		"mutation { updateTask(taskId: 1, status: RUNNING) { id } }",
		"{ secrets { results { ... on SSHKey { privateKey } } } }",
		"{ secrets { results { ... on SecretFile { data } } } }",
	} {
		r := e.query(tok, q, nil)
		if !strings.Contains(r.errText(), "access denied: worker only") || r.Errors[0].Extensions["code"] != "FORBIDDEN" {
			t.Errorf("%s: %s", q, r.Raw)
		}
	}
	// createArtifact needs a File, which only a multipart request carries.
	r := uploadArtifact(t, e, tok, job.ID, "out.txt", "data")
	if !strings.Contains(r.errText(), "access denied: worker only") {
		t.Errorf("createArtifact: %s", r.Raw)
	}
	if got, _ := e.db.FindJobByID(context.Background(), job.ID); got.Status != app.JobPending {
		t.Errorf("job status changed to %s", got.Status)
	}
}

func TestDeleteUser(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	bob, bobTok := e.user("bob")
	job := e.run(e.submit(alice, app.Public), "setup\n", "task\n")
	bobJob := e.submit(bob, app.Public)
	limited := e.token(alice, "PROFILE:RW JOBS:RW LOGS:RW SECRETS:RW")
	r := e.query(limited, "mutation { deleteUser }", nil)
	if !strings.Contains(r.errText(), "needs a token with all grants") {
		t.Fatalf("limited token: %s", r.Raw)
	}
	d := e.mustQuery(tok, "mutation { deleteUser }", nil)
	if d["deleteUser"] != float64(alice.ID) {
		t.Errorf("deleteUser = %v", d["deleteUser"])
	}
	if r := e.query(tok, "{ me { username } }", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("token still works: %d %s", r.Status, r.Raw)
	}
	if _, err := e.db.FindJobByID(context.Background(), job.ID); app.ErrorCode(err) != app.ENOTFOUND {
		t.Errorf("job survived: %v", err)
	}
	if _, err := os.Stat(e.svc.LogPath(job.ID, "")); !os.IsNotExist(err) {
		t.Errorf("log survived: %v", err)
	}
	d = e.mustQuery(bobTok, fmt.Sprintf("{ job(id: %d) { id } me { username } }", bobJob.ID), nil)
	if get(d, "job", "id") != float64(bobJob.ID) {
		t.Errorf("bob's job: %v", d)
	}
}
