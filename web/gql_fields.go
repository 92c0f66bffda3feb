package web

import (
	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"

	"builds/app"
)

// Partial reads for lists of jobs: a page of jobs reads only the columns
// its selection shows (hut's jobs list: id, status, note, tags and the
// tasks' name and status), since the database cost of a page is mostly
// per column read.

// jobFieldsOf maps each field of Job to the app.Job fields its resolver
// (gql_job.go) reads, besides ID, OwnerID and Visibility, which are always
// read. A Job field missing here makes the listing read every field, so a
// new field is correct before it is fast; TestJobFieldsCoverSchema
// checks that every field of the type is listed.
var jobFieldsOf = map[string]app.JobFields{
	"__typename": 0,
	"id":         0,
	"created":    app.JobFieldCreated,
	"updated":    app.JobFieldUpdated,
	"status":     app.JobFieldStatus,
	"manifest":   app.JobFieldManifest,
	"note":       app.JobFieldNote,
	"tags":       app.JobFieldTags,
	"visibility": 0,
	"image":      app.JobFieldImage,
	"runner":     app.JobFieldRunner,
	"owner":      0,
	"group":      app.JobFieldGroupID,
	"tasks":      0, // and the Task fields, see taskFieldsOf
	"artifacts":  0,
	"log":        app.JobFieldRunner,
	"secrets":    app.JobFieldSecrets | app.JobFieldManifest, // the manifest names them
}

// taskFieldsOf is jobFieldsOf for Task. Task.job is the listed job itself.
var taskFieldsOf = map[string]app.TaskFields{
	"__typename": 0,
	"id":         app.TaskFieldID,
	"created":    app.TaskFieldCreated,
	"updated":    app.TaskFieldUpdated,
	"name":       app.TaskFieldName,
	"status":     app.TaskFieldStatus,
	"log":        app.TaskFieldName | app.TaskFieldStatus,
	"job":        0, // and the Job fields under it
}

// listFields works out what a list of jobs needs to read: the fields
// selected under results of a JobCursor field (info is that field's).
// Directives are ignored: a field that @skip leaves out is read anyway.
type listFields struct {
	frags map[string]ast.Definition
	job   app.JobFields
	task  app.TaskFields
	seen  map[string]bool // fragments walked, per selection kind
}

// pageFields returns the job and task fields a JobCursor field selects.
func pageFields(info graphql.ResolveInfo) (app.JobFields, app.TaskFields) {
	l := &listFields{frags: info.Fragments}
	for _, f := range info.FieldASTs {
		l.walk(f.SelectionSet, "cursor", func(f *ast.Field) {
			if f.Name.Value == "results" {
				l.walk(f.SelectionSet, "job", l.jobField)
			}
		})
	}
	return l.job, l.task
}

func (l *listFields) jobField(f *ast.Field) {
	m, ok := jobFieldsOf[f.Name.Value]
	if !ok {
		m = app.AllJobFields
	}
	l.job |= m
	if f.Name.Value == "tasks" {
		l.walk(f.SelectionSet, "task", l.taskField)
	}
}

func (l *listFields) taskField(f *ast.Field) {
	m, ok := taskFieldsOf[f.Name.Value]
	if !ok {
		m = app.AllTaskFields
	}
	l.task |= m
	if f.Name.Value == "job" {
		l.walk(f.SelectionSet, "job", l.jobField)
	}
}

// walk calls field for each field set selects, through fragments. kind
// names what set selects on, so that a fragment is walked once per kind.
func (l *listFields) walk(set *ast.SelectionSet, kind string, field func(*ast.Field)) {
	if set == nil {
		return
	}
	for _, sel := range set.Selections {
		switch sel := sel.(type) {
		case *ast.Field:
			if sel.Name != nil {
				field(sel)
			}
		case *ast.InlineFragment:
			l.walk(sel.SelectionSet, kind, field)
		case *ast.FragmentSpread:
			if sel.Name == nil {
				continue
			}
			key := kind + "\x00" + sel.Name.Value
			if l.seen[key] {
				continue
			}
			if l.seen == nil {
				l.seen = map[string]bool{}
			}
			l.seen[key] = true
			if frag, ok := l.frags[sel.Name.Value].(*ast.FragmentDefinition); ok {
				l.walk(frag.SelectionSet, kind, field)
			}
		}
	}
}
