package web

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"

	"github.com/graphql-go/graphql"

	"builds/app"
)

// TestQueryExecutorMatchesGraphQLGo runs a corpus of queries through
// runQuery and through graphql-go's executor on the same data and
// compares the answers: data, error messages, paths, locations and codes.
func TestQueryExecutorMatchesGraphQLGo(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	bob, bobTok := e.user("bob")
	limited := e.token(alice, "JOBS:RO")

	note := "quotes \" \\ <b>&amp;</b> tab\t nl\n ctl\x01 \u2028 é 日本 \xff"
	execute := false
	job, err := e.svc.Submit(as(alice), app.SubmitInput{Manifest: testManifest, Note: &note, Tags: []string{"ci", "main"}, Execute: &execute})
	if err != nil {
		t.Fatal(err)
	}
	e.run(job, "setup log\n", "task log <x>\n")
	e.artifact(job, "out/a.txt", "artifact")
	grouped := e.submit(alice, app.Public)
	if _, err := e.svc.CreateGroup(as(alice), []int64{grouped.ID}, []app.TriggerInput{
		{Action: "email", Condition: "failure", To: "dev@example.org"},
		{Action: "webhook", Condition: "always", URL: "https://hooks.example.org/ci"},
	}, &execute, nil); err != nil {
		t.Fatal(err)
	}
	for range 30 {
		e.submit(alice, app.Unlisted)
	}
	private := e.submit(bob, app.Private)
	e.submit(bob, app.Public)
	e.secret(alice, app.SecretInput{Type: app.SecretSSHKey, Name: "deploy key", Data: sshKeyPEM(t)})
	e.secret(alice, app.SecretInput{Type: app.SecretFile, Name: "netrc", Data: []byte("machine x\n"), Path: "~/.netrc", Mode: 0o600})
	first := e.mustQuery(tok, hutJobs, nil)
	cursor := get(first, "jobs", "cursor")

	jobFields := `id created updated status manifest note tags visibility image runner
		owner { canonicalName ... on User { username } }
		group { id note jobs { id } triggers { __typename condition ... on EmailTrigger { to cc inReplyTo } ... on WebhookTrigger { url } } }
		tasks { id created updated name status log { fullURL last128KiB } job { id } }
		artifacts { id path size url } log { fullURL last128KiB }
		secrets { __typename uuid name ... on SecretFile { path mode } }`
	cases := []struct {
		name, token, query string
		vars               map[string]any
		op                 string
		slow               bool // left to graphql-go
	}{
		{name: "HutJobs", token: tok, query: hutJobs},
		{name: "HutJobsPage2", token: tok, query: hutJobs, vars: map[string]any{"cursor": cursor}},
		{name: "HutJobsByUser", token: bobTok, query: hutJobsBy, vars: map[string]any{"username": "alice", "cursor": nil}},
		{name: "HutJobsNobody", token: tok, query: hutJobsBy, vars: map[string]any{"username": "nobody"}},
		{name: "BadCursor", token: tok, query: hutJobs, vars: map[string]any{"cursor": "garbage"}},
		{name: "Me", token: tok, query: `{ me { id created updated canonicalName username email url location bio } version { major minor patch } }`},
		{name: "JobAllFields", token: tok, query: `query($id: Int!) { job(id: $id) { ` + jobFields + ` } }`, vars: map[string]any{"id": float64(job.ID)}},
		{name: "JobLiteralArg", token: tok, query: fmt.Sprintf(`{ job(id: %d) { %s } }`, grouped.ID, jobFields)},
		{name: "OthersPrivateJob", token: tok, query: fmt.Sprintf(`{ job(id: %d) { id } }`, private.ID)},
		{name: "AliasesAndMerging", token: tok, query: `{ a: jobs { results { id } } b: jobs { cursor results { id status } } me { username } me { email } }`},
		{name: "Directives", token: tok, query: `query($s: Boolean!, $i: Boolean = false) { me { username @skip(if: $s) email @include(if: $i) id @skip(if: false) } jobs @include(if: true) { cursor } }`,
			vars: map[string]any{"s": true}},
		{name: "Fragments", token: tok, query: `fragment E on Entity { canonicalName } fragment J on Job { id visibility }
			query { me { ...E ...E } userByName(username: "bob") { ...E ... on User { jobs { results { ...J } } } } }`},
		{name: "Typename", token: tok, query: `{ __typename me { __typename } jobs { __typename results { __typename } } }`},
		{name: "NamedOperation", token: tok, query: `query a { me { username } } query b { version { major } }`, op: "b"},
		{name: "Nested", token: tok, query: `{ jobs { results { owner { ... on User { jobs { results { id } } } } } } }`},
		{name: "SecretsForbiddenField", token: tok, query: `{ secrets { results { ... on SSHKey { privateKey } } } }`},
		{name: "Secrets", token: tok, query: `{ secrets { cursor results { __typename uuid name fromUser { canonicalName } ... on SecretFile { path mode } } } }`},
		// one failing field per object: graphql-go resolves siblings in
		// map order and stops at the first non-null failure
		{name: "NullableFieldErrors", token: limited, query: `{ jobs { results { id log { fullURL } } } }`},
		{name: "NonNullFieldError", token: limited, query: `{ jobs { results { id owner { canonicalName } } } }`},
		{name: "Anonymous", query: `{ version { major } me { username } }`},
		{name: "Webhooks", token: tok, query: `{ userWebhooks { cursor results { id url events query } } }`},
		{name: "UserByID", token: tok, query: `query($id: Int!) { userByID(id: $id) { canonicalName } }`, vars: map[string]any{"id": float64(bob.ID)}},
		{name: "MissingVariable", token: tok, query: `query($id: Int!) { job(id: $id) { id } }`, slow: true},
		{name: "InvalidVariable", token: tok, query: `query($id: Int!) { job(id: $id) { id } }`, vars: map[string]any{"id": "x"}, slow: true},
		{name: "Introspection", token: tok, query: `{ __schema { queryType { name } } me { username } }`, slow: true},
		{name: "Mutation", token: tok, query: `mutation { cancel(jobId: 999999) { id } }`, slow: true},
	}
	schema, err := e.srv.graphQLSchema()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if c.token != "" {
				auth, err := e.svc.Authenticate(ctx, c.token)
				if err != nil {
					t.Fatal(err)
				}
				ctx = app.NewContextWithAuth(ctx, auth)
			}
			d, resp := e.srv.validDocument(ctx, schema, c.query)
			if resp != nil {
				t.Fatalf("invalid document: %+v", resp.Errors)
			}
			op := findOperation(d.doc, c.op)
			fast := d.fast[op]
			var (
				data json.RawMessage
				errs []error
			)
			if fast {
				data, errs, fast = runQuery(ctx, schema, d, op, c.vars, nil)
			}
			if fast == c.slow {
				t.Fatalf("runQuery takes it: %v, want %v", fast, !c.slow)
			}
			if c.slow {
				return
			}
			got := &gqlResponse{Errors: e.srv.formatErrors(ctx, errs, "BAD_USER_INPUT")}
			if data != nil {
				got.Data = data
			}
			want := e.srv.executeSlow(withResponseBudget(withGQLCache(ctx)), schema, d, &gqlRequest{Query: c.query, Variables: c.vars, OperationName: c.op})
			if g, w := normalJSON(t, got), normalJSON(t, want); !reflect.DeepEqual(g, w) {
				gb, _ := json.Marshal(g)
				wb, _ := json.Marshal(w)
				t.Errorf("runQuery:\n%s\ngraphql-go:\n%s", gb, wb)
			}
		})
	}
}

// normalJSON decodes a response as a client would, with the errors in a
// fixed order (graphql-go's follows its map iteration).
func normalJSON(t *testing.T, r *gqlResponse) any {
	t.Helper()
	b, err := r.appendJSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Data   any   `json:"data"`
		Errors []any `json:"errors"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	sort.Slice(v.Errors, func(i, j int) bool { return fmt.Sprint(v.Errors[i]) < fmt.Sprint(v.Errors[j]) })
	return v
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote \" back \\ slash", "<a href='x'>&</a>", "\n\r\t\b\f\x00\x1f\x7f",
		"é 日本 🎉", "\u2028\u2029", "bad \xff\xfe utf8 \xe2\x82"} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q: %s is not JSON: %v", s, got, err)
			continue
		}
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: decodes to %q, encoding/json's to %q", s, back, wantBack)
		}
	}
}

// TestEnumsSafeForConcurrentUse: the first requests of a new server
// serialize enums at once; graphql-go builds an enum's lookups lazily and
// unguarded, so newSchema builds them (warmEnums). Under -race this fails
// without it.
func TestEnumsSafeForConcurrentUse(t *testing.T) {
	schema, err := newSchema(&Server{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, typ := range schema.TypeMap() {
				if e, ok := typ.(*graphql.Enum); ok {
					for _, v := range e.Values() {
						if e.Serialize(v.Value) != v.Name || e.ParseValue(v.Name) != v.Value {
							t.Errorf("%s.%s does not round-trip", e.Name(), v.Name)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}
