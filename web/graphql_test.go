package web

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Protocol tests: how /query reads requests and shapes answers.

func TestQueryProtocol(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantErr     string // substring of the first error; "" = no error
		wantCode    string
		check       func(t *testing.T, r *gqlResult)
	}{
		{name: "VariablesNull", body: `{"query":"{ version { major minor patch } }","variables":null}` + "\n", wantStatus: 200,
			check: func(t *testing.T, r *gqlResult) {
				if got := fmt.Sprint(get(r.Data, "version", "minor")); got != "1" {
					t.Errorf("minor = %s", got)
				}
			}},
		{name: "VariablesMissing", body: `{"query":"{ version { major } }"}`, wantStatus: 200},
		{name: "VariablesAsString", body: `{"query":"query q($id: Int!) { job(id: $id) { id } }","variables":"{\"id\": 99}"}`, wantStatus: 200,
			check: func(t *testing.T, r *gqlResult) {
				if v, ok := r.Data["job"]; !ok || v != nil {
					t.Errorf("job = %v, want null", v)
				}
			}},
		{name: "OperationName", body: `{"query":"query a { version { major } } query b { me { username } }","operationName":"b"}`, wantStatus: 200,
			check: func(t *testing.T, r *gqlResult) {
				if get(r.Data, "me", "username") != "alice" {
					t.Errorf("data = %v", r.Data)
				}
			}},
		{name: "MalformedJSON", body: `{"query": "{ version { major } }"`, wantStatus: 400, wantErr: "invalid JSON", wantCode: "BAD_REQUEST"},
		{name: "NotAnObject", body: `"hello"`, wantStatus: 400, wantErr: "invalid JSON", wantCode: "BAD_REQUEST"},
		{name: "Batch", body: `[{"query":"{ version { major } }"}]`, wantStatus: 400, wantErr: "batched requests", wantCode: "BAD_REQUEST"},
		{name: "EmptyBody", body: ``, wantStatus: 400, wantErr: "request body is empty", wantCode: "BAD_REQUEST"},
		{name: "NoQuery", body: `{"variables":{}}`, wantStatus: 400, wantErr: "no GraphQL query", wantCode: "BAD_REQUEST"},
		{name: "VariablesNotObject", body: `{"query":"{ version { major } }","variables":[1]}`, wantStatus: 400, wantErr: "invalid \"variables\"", wantCode: "BAD_REQUEST"},
		{name: "WrongContentType", contentType: "text/plain", body: `{"query":"{ version { major } }"}`, wantStatus: 415, wantErr: "unsupported Content-Type"},
		{name: "SyntaxError", body: `{"query":"{ version { major }"}`, wantStatus: 200, wantErr: "Syntax Error", wantCode: "GRAPHQL_PARSE_FAILED"},
		{name: "UnknownField", body: `{"query":"{ version { major nope } }"}`, wantStatus: 200,
			wantErr: `Cannot query field "nope" on type "Version"`, wantCode: "GRAPHQL_VALIDATION_FAILED"},
		{name: "UnknownRootField", body: `{"query":"{ jobz { cursor } }"}`, wantStatus: 200, wantErr: `Cannot query field "jobz"`, wantCode: "GRAPHQL_VALIDATION_FAILED"},
		{name: "UnknownArgument", body: `{"query":"{ job(id: 1, foo: 2) { id } }"}`, wantStatus: 200, wantErr: `Unknown argument "foo"`, wantCode: "GRAPHQL_VALIDATION_FAILED"},
		{name: "WrongLiteralType", body: `{"query":"{ job(id: \"x\") { id } }"}`, wantStatus: 200, wantErr: `Argument "id" has invalid value`, wantCode: "GRAPHQL_VALIDATION_FAILED"},
		{name: "WrongVariableType", body: `{"query":"query q($id: Int!) { job(id: $id) { id } }","variables":{"id":"abc"}}`, wantStatus: 200,
			wantErr: `Variable "$id" got invalid value`, wantCode: "BAD_USER_INPUT"},
		{name: "MissingVariable", body: `{"query":"query q($id: Int!) { job(id: $id) { id } }","variables":null}`, wantStatus: 200,
			wantErr: `Variable "$id" of required type "Int!" was not provided`},
		{name: "WrongEnum", body: `{"query":"mutation { update(jobId: 1, visibility: SECRET) { id } }"}`, wantStatus: 200,
			wantErr: `Argument "visibility" has invalid value SECRET`, wantCode: "GRAPHQL_VALIDATION_FAILED"},
		{name: "LowerCaseEnumVariable", body: `{"query":"mutation m($v: Visibility!) { update(jobId: 1, visibility: $v) { id } }","variables":{"v":"public"}}`,
			wantStatus: 200, wantErr: `Variable "$v" got invalid value`},
		{name: "MissingSelection", body: `{"query":"{ version }"}`, wantStatus: 200, wantErr: `must have a sub selection`},
		{name: "TwoAnonymousOperations", body: `{"query":"{ version { major } } { version { minor } }"}`, wantStatus: 200, wantErr: "must be the only defined operation"},
		{name: "UnknownOperationName", body: `{"query":"query a { version { major } }","operationName":"b"}`, wantStatus: 200, wantErr: `Unknown operation named "b"`},
		{name: "Subscription", body: `{"query":"subscription { version { major } }"}`, wantStatus: 200, wantErr: "Schema is not configured for subscriptions"},
		{name: "AtAccessNotAllowedInQueries", body: `{"query":"{ version @access(scope: JOBS, kind: RO) { major } }"}`, wantStatus: 200, wantErr: `may not be used on FIELD`},
		{name: "ExtraMembersIgnored", body: `{"query":"{ version { major } }","extensions":{"persistedQuery":null}}`, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			r := e.post(tok, ct, []byte(tt.body))
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", r.Status, tt.wantStatus, r.Raw)
			}
			if tt.wantErr == "" {
				if len(r.Errors) > 0 {
					t.Fatalf("unexpected errors: %s", r.Raw)
				}
			} else {
				if len(r.Errors) == 0 || !strings.Contains(r.Errors[0].Message, tt.wantErr) {
					t.Fatalf("errors = %s, want %q", r.Raw, tt.wantErr)
				}
				if tt.wantCode != "" && r.Errors[0].Extensions["code"] != tt.wantCode {
					t.Errorf("code = %q, want %q", r.Errors[0].Extensions["code"], tt.wantCode)
				}
				if r.Errors[0].Extensions["code"] == "" {
					t.Errorf("error without extensions.code: %s", r.Raw)
				}
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func TestQueryGET(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	get := func(q url.Values) *gqlResult {
		req, _ := http.NewRequest("GET", e.url+"/query?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return e.do(req)
	}
	r := get(url.Values{"query": {"query q($id: Int!) { job(id: $id) { id } version { patch } }"}, "variables": {`{"id": 5}`}})
	if r.Status != 200 || len(r.Errors) > 0 || r.Data["job"] != nil {
		t.Errorf("GET query: %d %s", r.Status, r.Raw)
	}
	r = get(url.Values{"query": {`mutation { cancel(jobId: 1) { id } }`}})
	if r.Status != http.StatusMethodNotAllowed || !strings.Contains(r.errText(), "POST") {
		t.Errorf("GET mutation: %d %s", r.Status, r.Raw)
	}
	r = get(url.Values{})
	if r.Status != http.StatusBadRequest {
		t.Errorf("GET without query: %d %s", r.Status, r.Raw)
	}
	req, _ := http.NewRequest("PUT", e.url+"/query", strings.NewReader("{}"))
	if r := e.do(req); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d %s", r.Status, r.Raw)
	}
}

func TestQueryLimits(t *testing.T) {
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	deep := "{ me { jobs { results { group { jobs { owner { ... on User { jobs { results { tasks { job { tasks { job { group { jobs { tasks { name } } } } } } } } } } } } } } } } }"
	// Each fragment spreads the previous one twice: a few hundred bytes
	// that expand to over 2000 fields.
	var b strings.Builder
	b.WriteString("query { version { ...f8 } }\n")
	b.WriteString("fragment f0 on Version { major minor patch settings { sshUser buildTimeout } }\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "fragment f%d on Version { ...f%d a%d: settings { sshUser } ...f%d }\n", i, i-1, i, i-1)
	}
	var wide strings.Builder
	wide.WriteString("{")
	for i := 0; i < 1100; i++ {
		fmt.Fprintf(&wide, " a%d: version { major }", i)
	}
	wide.WriteString(" }")
	tests := []struct {
		name       string
		query      string
		wantStatus int
		wantErr    string
	}{
		{"TooDeep", deep, 200, "query is too deep"},
		{"FragmentBomb", b.String(), 200, "query is too complex"},
		{"TooManyFields", wide.String(), 200, "query is too complex"},
		{"TooLarge", "{ version { major } }" + strings.Repeat(" ", 70<<10), 413, "query is too large"},
		{"FragmentCycle", "{ version { ...a } } fragment a on Version { ...b } fragment b on Version { ...a }", 200, "fragment cycles are not allowed"},
		{"UnusedFragmentCycle", "{ version { major } } fragment a on Version { major ...a }", 200, "fragment cycles are not allowed"},
		{"SelfSpreadInField", "{ version { ...a } } fragment a on Version { settings { ... on Settings { sshUser } } ...a }", 200, "fragment cycles are not allowed"},
		{"Introspection", introspectionQuery, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.query(tok, tt.query, nil)
			if r.Status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %.300s", r.Status, tt.wantStatus, r.Raw)
			}
			if tt.wantErr == "" {
				if len(r.Errors) > 0 {
					t.Fatalf("unexpected errors: %.500s", r.Raw)
				}
				return
			}
			if !strings.Contains(r.errText(), tt.wantErr) {
				t.Fatalf("errors = %.500s, want %q", r.Raw, tt.wantErr)
			}
		})
	}
	t.Run("BodyTooLarge", func(t *testing.T) {
		e.cfg.Limits.UploadSize = 1024
		defer func() { e.cfg.Limits.UploadSize = 32 << 20 }()
		body := `{"query":"{ version { major } }","variables":{"x":"` + strings.Repeat("a", 4096) + `"}}`
		r := e.post(tok, "application/json", []byte(body))
		if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.errText(), "request body is too large") {
			t.Fatalf("status %d: %s", r.Status, r.Raw)
		}
	})
}

func TestQueryDocumentFeatures(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	job := e.submit(alice, "PUBLIC")
	vars := map[string]any{"id": job.ID}
	t.Run("TwoRootFields", func(t *testing.T) {
		d := e.mustQuery(tok, "query q($id: Int!) { job(id: $id) { id runner } version { settings { sshUser buildTimeout } } }", vars)
		if get(d, "job", "id") != float64(job.ID) || get(d, "version", "settings", "sshUser") != "ssh://builds" ||
			get(d, "version", "settings", "buildTimeout") != "45m" {
			t.Errorf("data = %v", d)
		}
	})
	t.Run("Aliases", func(t *testing.T) {
		d := e.mustQuery(tok, "query q($id: Int!) { a: job(id: $id) { x: id } b: job(id: 999999) { id } }", vars)
		if get(d, "a", "x") != float64(job.ID) || d["b"] != nil {
			t.Errorf("data = %v", d)
		}
	})
	t.Run("FragmentsAndInlineFragments", func(t *testing.T) {
		q := "query q($id: Int!) {\n\tjob(id: $id) {\n\t\t... jobFields\n\t\towner { ... on User { username } __typename }\n\t}\n}\n" +
			"fragment jobFields on Job {\n\tid\n\tstatus\n\ttasks { ... taskFields }\n}\n" +
			"fragment taskFields on Task { name status }\n"
		d := e.mustQuery(tok, q, vars)
		if get(d, "job", "status") != "PENDING" || get(d, "job", "tasks", 1, "name") != "test" ||
			get(d, "job", "owner", "username") != "alice" || get(d, "job", "owner", "__typename") != "User" {
			t.Errorf("data = %v", d)
		}
	})
	t.Run("SkipInclude", func(t *testing.T) {
		d := e.mustQuery(tok, "query q($id: Int!, $yes: Boolean!) { job(id: $id) { id @skip(if: $yes) note @include(if: $yes) } }",
			map[string]any{"id": job.ID, "yes": true})
		j := d["job"].(map[string]any)
		if _, ok := j["id"]; ok || len(j) != 1 {
			t.Errorf("job = %v", j)
		}
	})
	t.Run("Typename", func(t *testing.T) {
		d := e.mustQuery(tok, "{ __typename version { __typename } }", nil)
		if d["__typename"] != "Query" || get(d, "version", "__typename") != "Version" {
			t.Errorf("data = %v", d)
		}
	})
	t.Run("ResponseShape", func(t *testing.T) {
		r := e.query(tok, "{ version { major } }", nil)
		if !strings.HasPrefix(r.Raw, `{"data":{"version":{"major":0}}}`) {
			t.Errorf("body = %s", r.Raw)
		}
		r = e.query(tok, "{ version { nope } }", nil)
		if !strings.HasPrefix(r.Raw, `{"data":null,"errors":[{"message":`) || !bytes.Contains([]byte(r.Raw), []byte(`"locations":[{"line":1,"column":13}]`)) {
			t.Errorf("body = %s", r.Raw)
		}
	})
}

// introspectionQuery is the query GraphQL tools send to learn a schema.
const introspectionQuery = `query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}`

func TestQueryInternalErrors(t *testing.T) {
	e := newAPIEnv(t)
	alice, _ := e.user("alice")
	e.db.Close() // every store call now fails
	r, rerr := e.srv.executeGraphQL(as(alice), &gqlRequest{Query: "{ me { username } jobs { cursor } }"}, execOptions{})
	if rerr != nil {
		t.Fatal(rerr.msg)
	}
	if len(r.Errors) != 1 || r.Errors[0].Message != "internal error" || r.Errors[0].Extensions["code"] != "INTERNAL" ||
		fmt.Sprint(r.Errors[0].Path) != "[jobs]" || r.Data != nil {
		t.Errorf("got %+v", r)
	}
}

func TestQueryUnknownPaths(t *testing.T) {
	e := newAPIEnv(t)
	for _, p := range []string{"/query/nope", "/query/log/1", "/query/artifact/1"} {
		status, h, body := e.fetch("", e.url+p, "")
		if status != 404 || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s %s", p, status, h.Get("Content-Type"), body)
		}
	}
}
