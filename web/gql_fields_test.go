package web

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/parser"

	"builds/app"
)

// Selections under the composite fields of Job and Task, for the tests
// below; a composite field missing here fails them.
var (
	jobSubSelections = map[string]string{
		"owner":     "{ canonicalName }",
		"group":     "{ id note }",
		"tasks":     "{ id name status }",
		"artifacts": "{ id path }",
		"log":       "{ fullURL }",
		"secrets":   "{ uuid name }",
	}
	taskSubSelections = map[string]string{
		"log": "{ fullURL }",
		"job": "{ id status note runner visibility }",
	}
)

// schemaFields returns the fields of an object type as selections, each
// with its sub-selection, in name order.
func schemaFields(t *testing.T, e *apiEnv, typ string, subs map[string]string) []string {
	t.Helper()
	schema, err := e.srv.graphQLSchema()
	if err != nil {
		t.Fatal(err)
	}
	obj, ok := schema.Type(typ).(*graphql.Object)
	if !ok {
		t.Fatalf("no object type %s", typ)
	}
	var out []string
	for name, def := range obj.Fields() {
		sel := name
		if elem, _ := unwrapType(def.Type); !isLeaf(elem) {
			sub, ok := subs[name]
			if !ok {
				t.Fatalf("%s.%s: no sub-selection for the test", typ, name)
			}
			sel += " " + sub
		}
		out = append(out, sel)
	}
	sort.Strings(out)
	return out
}

func isLeaf(t graphql.Type) bool {
	switch t.(type) {
	case *graphql.Scalar, *graphql.Enum:
		return true
	}
	return false
}

// TestJobFieldsCoverSchema checks that the partial reads of job lists
// know every field of Job and Task (a missing one would read everything,
// correct but slow).
func TestJobFieldsCoverSchema(t *testing.T) {
	e := newAPIEnv(t)
	for _, sel := range schemaFields(t, e, "Job", jobSubSelections) {
		if name, _, _ := strings.Cut(sel, " "); jobFieldsOf[name] == app.AllJobFields {
			t.Errorf("Job.%s reads every field of the jobs listed with it", name)
		} else if _, ok := jobFieldsOf[name]; !ok {
			t.Errorf("Job.%s is missing from jobFieldsOf", name)
		}
	}
	for _, sel := range schemaFields(t, e, "Task", taskSubSelections) {
		if name, _, _ := strings.Cut(sel, " "); taskFieldsOf[name] == app.AllTaskFields {
			t.Errorf("Task.%s reads every field of the tasks listed with it", name)
		} else if _, ok := taskFieldsOf[name]; !ok {
			t.Errorf("Task.%s is missing from taskFieldsOf", name)
		}
	}
}

// TestJobListFields selects each field of Job, and of Task under
// Job.tasks, alone in a list of jobs (a partial read) and compares it
// with the same field of the same jobs looked up one by one (full reads).
func TestJobListFields(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	_, bobTok := e.user("bob")
	e.secret(alice, app.SecretInput{Type: app.SecretFile, Name: "netrc", Data: []byte("machine m\n"), Path: "~/.netrc", Mode: 0o600})
	note := "note <&>"
	execute := false
	withSecret, err := e.svc.Submit(as(alice), app.SubmitInput{Manifest: "image: alpine/latest\nsecrets:\n  - netrc\ntasks:\n  - build: make\n",
		Note: &note, Tags: []string{"ci", "main"}, Execute: &execute})
	if err != nil {
		t.Fatal(err)
	}
	e.run(withSecret, "setup\n", "build\n")
	e.artifact(withSecret, "out/a.txt", "a")
	grouped := e.submit(alice, app.Public)
	if _, err := e.svc.CreateGroup(as(alice), []int64{grouped.ID}, nil, &execute, &note); err != nil {
		t.Fatal(err)
	}
	e.submit(alice, app.Private)
	e.run(e.submit(alice, app.Unlisted), "setup\n", "build\n")

	// what each job looks like read in full, by id
	all := strings.Join(schemaFields(t, e, "Job", jobSubSelections), " ")
	tasksAll := "tasks { " + strings.Join(schemaFields(t, e, "Task", taskSubSelections), " ") + " }"
	for _, who := range []struct{ name, token, list string }{
		{"Owner", tok, "jobs"},
		{"Other", bobTok, `userByName(username: "alice") { jobs }`},
	} {
		t.Run(who.name, func(t *testing.T) {
			list := func(sel string) []any {
				t.Helper()
				q := strings.Replace(who.list, "jobs", "jobs { results { id "+sel+" } }", 1)
				d := e.mustQuery(who.token, "{ "+q+" }", nil)
				if who.name == "Other" {
					d = get(d, "userByName").(map[string]any)
				}
				return get(d, "jobs", "results").([]any)
			}
			ids := list("")
			if len(ids) == 0 {
				t.Fatal("no jobs listed")
			}
			var byID strings.Builder
			for i, j := range ids {
				fmt.Fprintf(&byID, "j%d: job(id: %v) { %s %s } ", i, get(j, "id"), all, tasksAll)
			}
			full := e.mustQuery(who.token, "{ "+byID.String()+"}", nil)
			check := func(sel string, value func(job any) any) {
				t.Helper()
				for i, j := range list(sel) {
					want := value(full["j"+fmt.Sprint(i)])
					if got := value(j); !reflect.DeepEqual(got, want) {
						t.Errorf("%s of job %v: listed %v, looked up %v", sel, get(j, "id"), got, want)
					}
				}
			}
			for _, sel := range schemaFields(t, e, "Job", jobSubSelections) {
				if name, _, _ := strings.Cut(sel, " "); name != "tasks" { // each Task field below
					check(sel, func(job any) any { return get(job, name) })
				}
			}
			for _, sel := range schemaFields(t, e, "Task", taskSubSelections) {
				name, _, _ := strings.Cut(sel, " ")
				check("tasks { "+sel+" }", func(job any) any {
					var out []any
					tasks, _ := get(job, "tasks").([]any)
					for _, k := range tasks {
						out = append(out, get(k, name))
					}
					return out
				})
			}
		})
	}
}

// TestJobListBadCursor checks that a partial read still refuses cursors
// it did not issue, with the same error as a full read.
func TestJobListBadCursor(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	_, bobTok := e.user("bob")
	for range app.PageSize + 1 {
		e.submit(alice, app.Public)
	}
	cursor := get(e.mustQuery(tok, hutJobs, nil), "jobs", "cursor")
	for _, tt := range []struct {
		name, token, query string
		cursor             any
	}{
		{"Garbage", tok, hutJobs, "garbage"},
		{"NoResults", tok, "query q($cursor: Cursor) { jobs(cursor: $cursor) { cursor } }", "garbage"},
		{"ForeignUser", bobTok, hutJobs, cursor},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.query(tt.token, tt.query, map[string]any{"cursor": tt.cursor})
			if r.errText() != "Invalid cursor" || r.Errors[0].Extensions["code"] != "BAD_USER_INPUT" {
				t.Errorf("got %s", r.Raw)
			}
		})
	}
}

// TestPageFields works out the fields of hut's list queries, which reach
// the results through a fragment (jobs) or directly (export).
func TestPageFields(t *testing.T) {
	tests := []struct {
		name, query string
		job         app.JobFields
		task        app.TaskFields
	}{
		// what BenchmarkJobsQuery's service part reads
		{"HutJobs", hutJobs, app.JobFieldStatus | app.JobFieldNote | app.JobFieldTags, app.TaskFieldName | app.TaskFieldStatus},
		{"HutJobsByUser", hutJobsBy, app.JobFieldStatus | app.JobFieldNote | app.JobFieldTags, app.TaskFieldName | app.TaskFieldStatus},
		{"HutExport", hutExport, app.JobFieldStatus | app.JobFieldNote | app.JobFieldTags | app.JobFieldManifest | app.JobFieldRunner,
			app.TaskFieldName | app.TaskFieldStatus},
		{"IDs", hutJobIDs, 0, 0},
		{"TaskJob", `{ jobs { results { tasks { id job { image ... on Job { created } } } } } }`,
			app.JobFieldImage | app.JobFieldCreated, app.TaskFieldID},
		{"Unknown", `{ jobs { results { ...F } } } fragment F on Job { id nosuch }`, app.AllJobFields, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := parser.Parse(parser.ParseParams{Source: tt.query})
			if err != nil {
				t.Fatal(err)
			}
			info := graphql.ResolveInfo{Fragments: map[string]ast.Definition{}}
			var find func(set *ast.SelectionSet)
			find = func(set *ast.SelectionSet) {
				for _, sel := range set.Selections {
					if f, ok := sel.(*ast.Field); ok {
						if f.Name.Value == "jobs" {
							info.FieldASTs = append(info.FieldASTs, f)
						} else if f.SelectionSet != nil {
							find(f.SelectionSet)
						}
					}
				}
			}
			for _, def := range doc.Definitions {
				switch def := def.(type) {
				case *ast.FragmentDefinition:
					info.Fragments[def.Name.Value] = def
				case *ast.OperationDefinition:
					find(def.SelectionSet)
				}
			}
			job, task := pageFields(info)
			if job != tt.job || task != tt.task {
				t.Errorf("fields %b and %b, want %b and %b", job, task, tt.job, tt.task)
			}
		})
	}
}
