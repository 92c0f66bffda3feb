package web

import (
	"context"
	"os"
	"strings"
	"sync"

	"github.com/graphql-go/graphql"

	"builds/app"
)

// Jobs, tasks, logs, artifacts, groups and triggers.

// gqlJob is the source value of a Job. Jobs listed together share a
// batch so that their tasks load in one query.
type gqlJob struct {
	job   *app.Job
	batch *gqlJobBatch
	tasks []*app.Task // preset tasks (webhook samples); nil = load
}

type gqlJobBatch struct {
	once   sync.Once
	jobs   []*app.Job
	fields *app.TaskFields // the task fields to read; nil: all
	tasks  map[int64][]*app.Task
	err    error
}

type gqlTask struct {
	task *app.Task
	job  *gqlJob
}

// gqlLog is the source of a Log: a job's setup log (task "") or a task log.
type gqlLog struct {
	jobID int64
	task  string
}

type gqlJobPage struct {
	nodes  []*gqlJob
	cursor string
}

// gqlJobs wraps jobs listed together; taskFields are the task fields to
// read (nil: all).
func gqlJobs(jobs []*app.Job, taskFields *app.TaskFields) []*gqlJob {
	b := &gqlJobBatch{jobs: jobs, fields: taskFields}
	nodes := make([]*gqlJob, len(jobs))
	block := make([]gqlJob, len(jobs)) // one allocation for the page
	for i, j := range jobs {
		block[i] = gqlJob{job: j, batch: b}
		nodes[i] = &block[i]
	}
	return nodes
}

// gqlJobResult wraps a single job returned by the Service.
func gqlJobResult(job *app.Job, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return &gqlJob{job: job}, nil
}

func (g *schemaBuilder) tasksOf(ctx context.Context, n *gqlJob) ([]*app.Task, error) {
	if n.tasks != nil {
		return n.tasks, nil
	}
	if n.batch == nil {
		return g.srv.Service.Tasks(ctx, n.job)
	}
	n.batch.once.Do(func() {
		n.batch.tasks, n.batch.err = g.srv.Service.TasksForJobs(ctx, n.batch.jobs, n.batch.fields)
	})
	if n.batch.err != nil {
		return nil, n.batch.err
	}
	if ts := n.batch.tasks[n.job.ID]; ts != nil {
		return ts, nil
	}
	return []*app.Task{}, nil
}

// origin is the public base URL used in log and artifact URLs.
func (g *schemaBuilder) origin() string { return strings.TrimRight(g.srv.config().Builds.Origin, "/") }

// LogURL returns the public URL of a job's setup log (task "") or of a
// task's log, as given in Log.fullURL.
func LogURL(origin string, jobID int64, task string) string {
	c := app.Config{Builds: app.BuildsConfig{Origin: origin}}
	return c.LogURL(jobID, task)
}

// ArtifactURL returns the download URL of an artifact.
func ArtifactURL(origin string, a *app.Artifact) string {
	c := app.Config{Builds: app.BuildsConfig{Origin: origin}}
	return c.ArtifactURL(a)
}

func (g *schemaBuilder) jobTypes() {
	jobOf := func(p graphql.ResolveParams) *app.Job { return p.Source.(*gqlJob).job }
	taskOf := func(p graphql.ResolveParams) *gqlTask { return p.Source.(*gqlTask) }
	g.log = graphql.NewObject(graphql.ObjectConfig{
		Name: "Log",
		Fields: graphql.Fields{
			"last128KiB": {Type: nn(graphql.String), Description: "The most recently written 128 KiB of the build log.",
				Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
					l := p.Source.(*gqlLog)
					return readTail(g.srv.Service.LogPath(l.jobID, l.task), 128<<10)
				})},
			"fullURL": {Type: nn(graphql.String), Description: "The URL at which the full build log can be downloaded with an authenticated GET request (text/plain).",
				Resolve: func(p graphql.ResolveParams) (any, error) {
					l := p.Source.(*gqlLog)
					return LogURL(g.origin(), l.jobID, l.task), nil
				}},
		},
	})
	g.artifact = graphql.NewObject(graphql.ObjectConfig{
		Name: "Artifact",
		Fields: graphql.Fields{
			"id":      {Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*app.Artifact).ID, nil }},
			"created": {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*app.Artifact).Created, nil }},
			"path": {Type: nn(graphql.String), Description: "Original path in the guest",
				Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*app.Artifact).Path, nil }},
			"size": {Type: nn(graphql.Int), Description: "Size in bytes",
				Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*app.Artifact).Size, nil }},
			"url": {Type: graphql.String, Description: "URL at which the artifact may be downloaded, or null if pruned",
				Resolve: func(p graphql.ResolveParams) (any, error) {
					a := p.Source.(*app.Artifact)
					if _, err := os.Stat(g.srv.Service.ArtifactPath(a)); err != nil {
						return nil, nil // pruned or lost: no download
					}
					return ArtifactURL(g.origin(), a), nil
				}},
		},
	})
	g.triggerTypes()
	g.jobGroup = graphql.NewObject(graphql.ObjectConfig{
		Name: "JobGroup",
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			grp := func(p graphql.ResolveParams) *app.JobGroup { return p.Source.(*app.JobGroup) }
			return graphql.Fields{
				"id":      {Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return grp(p).ID, nil }},
				"created": {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return grp(p).Created, nil }},
				"note":    {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return derefString(grp(p).Note), nil }},
				"owner": {Type: nn(g.entity), Resolve: g.access(app.ScopeProfile, app.RO, func(p graphql.ResolveParams) (any, error) {
					return g.userByID(p.Context, grp(p).OwnerID)
				})},
				"jobs": {Type: nn(listNN(g.job)), Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
					jobs, err := g.srv.Service.GroupJobs(p.Context, grp(p))
					if err != nil {
						return nil, err
					}
					return gqlJobs(jobs, nil), nil
				})},
				"triggers": {Type: nn(listNN(g.trigger)), Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
					return g.srv.Service.GroupTriggers(p.Context, grp(p))
				})},
			}
		}),
	})
	g.task = graphql.NewObject(graphql.ObjectConfig{
		Name: "Task",
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			return graphql.Fields{
				"id":      {Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return taskOf(p).task.ID, nil }},
				"created": {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return taskOf(p).task.Created, nil }},
				"updated": {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return taskOf(p).task.Updated, nil }},
				"name":    {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return taskOf(p).task.Name, nil }},
				"status":  {Type: nn(g.taskStatus), Resolve: func(p graphql.ResolveParams) (any, error) { return taskOf(p).task.Status.API(), nil }},
				"log": {Type: g.log, Resolve: g.access(app.ScopeLogs, app.RO, func(p graphql.ResolveParams) (any, error) {
					t := taskOf(p)
					if t.task.Status == app.TaskPending || t.task.Status == app.TaskSkipped {
						return nil, nil // no log until the task starts; skipped tasks never ran
					}
					return &gqlLog{jobID: t.task.JobID, task: t.task.Name}, nil
				})},
				"job": {Type: nn(g.job), Resolve: func(p graphql.ResolveParams) (any, error) { return taskOf(p).job, nil }},
			}
		}),
	})
	g.job = graphql.NewObject(graphql.ObjectConfig{
		Name: "Job",
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			return graphql.Fields{
				"id":       {Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return jobOf(p).ID, nil }},
				"created":  {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return jobOf(p).Created, nil }},
				"updated":  {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return jobOf(p).Updated, nil }},
				"status":   {Type: nn(g.jobStatus), Resolve: func(p graphql.ResolveParams) (any, error) { return jobOf(p).Status, nil }},
				"manifest": {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return jobOf(p).Manifest, nil }},
				"note":     {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return derefString(jobOf(p).Note), nil }},
				"tags":     {Type: nn(listNN(graphql.String)), Resolve: func(p graphql.ResolveParams) (any, error) { return jobOf(p).TagList(), nil }},
				"visibility": {Type: nn(g.visibility), Resolve: func(p graphql.ResolveParams) (any, error) {
					return jobOf(p).Visibility, nil
				}},
				"image": {Type: nn(graphql.String), Description: "Name of the build image",
					Resolve: func(p graphql.ResolveParams) (any, error) { return jobOf(p).Image, nil }},
				"runner": {Type: graphql.String, Description: "Name of the build runner which picked up this job, or null if the job is pending or queued.",
					Resolve: func(p graphql.ResolveParams) (any, error) {
						if r := jobOf(p).Runner; r != nil {
							return g.srv.config().APIRunner(*r), nil
						}
						return nil, nil
					}},
				"owner": {Type: nn(g.entity), Resolve: g.access(app.ScopeProfile, app.RO, func(p graphql.ResolveParams) (any, error) {
					return g.userByID(p.Context, jobOf(p).OwnerID)
				})},
				"group": {Type: g.jobGroup, Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
					j := jobOf(p)
					if j.GroupID == nil {
						return nil, nil
					}
					return nullIfNotFound(g.srv.Service.Group(p.Context, *j.GroupID))
				})},
				"tasks": {Type: nn(listNN(g.task)), Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
					n := p.Source.(*gqlJob)
					tasks, err := g.tasksOf(p.Context, n)
					if err != nil {
						return nil, err
					}
					out := make([]*gqlTask, len(tasks))
					block := make([]gqlTask, len(tasks))
					for i, t := range tasks {
						block[i] = gqlTask{task: t, job: n}
						out[i] = &block[i]
					}
					return out, nil
				})},
				"artifacts": {Type: nn(listNN(g.artifact)), Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
					return g.srv.Service.Artifacts(p.Context, jobOf(p))
				})},
				"log": {Type: g.log, Description: "The job's top-level log file, not associated with any tasks",
					Resolve: g.access(app.ScopeLogs, app.RO, func(p graphql.ResolveParams) (any, error) {
						j := jobOf(p)
						if j.Runner == nil {
							return nil, nil // no log until a runner has the job
						}
						return &gqlLog{jobID: j.ID}, nil
					})},
				"secrets": {Type: listNN(g.secret), Description: "List of secrets available to this job, or null if they were disabled",
					Resolve: g.access(app.ScopeSecrets, app.RO, func(p graphql.ResolveParams) (any, error) {
						secs, err := g.srv.Service.JobSecrets(p.Context, jobOf(p))
						if err != nil || secs == nil {
							return nil, err
						}
						return secs, nil
					})},
			}
		}),
	})
	g.jobCursor = graphql.NewObject(graphql.ObjectConfig{
		Name:        "JobCursor",
		Description: cursorDescription("jobs"),
		Fields: graphql.Fields{
			"results": {Type: nn(listNN(g.job)), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*gqlJobPage).nodes, nil }},
			"cursor":  {Type: g.cursorT, Resolve: func(p graphql.ResolveParams) (any, error) { return optCursor(p.Source.(*gqlJobPage).cursor), nil }},
		},
	})
}

func cursorDescription(what string) string {
	return "A cursor for enumerating a list of " + what + "\n\n" +
		"If there are additional results available, the cursor object may be passed back into the same endpoint " +
		"to retrieve another page. If the cursor is null, there are no remaining results to return."
}

// userJobs is a page of owner's jobs, with only the fields the query
// selects read (gql_fields.go).
func (g *schemaBuilder) userJobs(p graphql.ResolveParams, ownerID int64) (any, error) {
	jobFields, taskFields := pageFields(p.Info)
	list, err := g.srv.Service.UserJobs(p.Context, ownerID, argCursor(p), app.JobFilter{Fields: &jobFields})
	if err != nil {
		return nil, err
	}
	return &gqlJobPage{nodes: gqlJobs(list.Jobs, &taskFields), cursor: list.Cursor}, nil
}

// jobQueries are Query.jobs and Query.job.
func (g *schemaBuilder) jobQueries(f graphql.Fields) {
	f["jobs"] = &graphql.Field{
		Type:        nn(g.jobCursor),
		Description: "Returns jobs submitted by the authenticated user.",
		Args:        graphql.FieldConfigArgument{"cursor": {Type: g.cursorT}},
		Resolve: g.access(app.ScopeJobs, app.RO, func(p graphql.ResolveParams) (any, error) {
			u := app.UserFromContext(p.Context)
			if u == nil {
				return nil, errAuthRequired()
			}
			return g.userJobs(p, u.ID)
		}),
	}
	f["job"] = &graphql.Field{
		Type:        g.job,
		Description: "Returns information about a specific job.",
		Args:        graphql.FieldConfigArgument{"id": {Type: nn(graphql.Int)}},
		Resolve: g.access(app.ScopeJobs, app.RO, func(p graphql.ResolveParams) (any, error) {
			job, err := g.srv.Service.Job(p.Context, argInt(p, "id"))
			if app.ErrorCode(err) == app.ENOTFOUND {
				return nil, nil // missing and invisible jobs look the same
			}
			return gqlJobResult(job, err)
		}),
	}
}

// jobMutations are submit, start, cancel, update, createGroup and startGroup.
func (g *schemaBuilder) jobMutations(f graphql.Fields) {
	svc := g.srv.Service
	jobID := graphql.FieldConfigArgument{"jobId": {Type: nn(graphql.Int)}}
	f["submit"] = &graphql.Field{
		Type: nn(g.job),
		Description: "Submits a new job to the queue.\n\n'secrets' may be set to false to disable secrets for this build. " +
			"If unspecified, secrets are enabled if at least one is specified in the manifest and the SECRETS:RO grant is available. " +
			"Enabling secrets requires the SECRETS:RO grant.\n\n'execute' may be set to false to defer queueing this job. " +
			"Builds are executed immediately if unspecified.",
		Args: graphql.FieldConfigArgument{
			"manifest":   {Type: nn(graphql.String)},
			"tags":       {Type: listNN(graphql.String)},
			"note":       {Type: graphql.String},
			"secrets":    {Type: graphql.Boolean},
			"execute":    {Type: graphql.Boolean},
			"visibility": {Type: g.visibility},
		},
		Resolve: g.access(app.ScopeJobs, app.RW, func(p graphql.ResolveParams) (any, error) {
			in := app.SubmitInput{
				Manifest: argString(p, "manifest"),
				Note:     argStringPtr(p, "note"),
				Secrets:  argBoolPtr(p, "secrets"),
				Execute:  argBoolPtr(p, "execute"),
			}
			if tags, ok := p.Args["tags"].([]any); ok {
				for _, t := range tags {
					s, _ := t.(string)
					in.Tags = append(in.Tags, s)
				}
			}
			if v, ok := p.Args["visibility"].(app.Visibility); ok {
				in.Visibility = &v
			}
			return gqlJobResult(svc.Submit(p.Context, in))
		}),
	}
	f["start"] = &graphql.Field{
		Type:        g.job,
		Description: "Queues a pending job.",
		Args:        graphql.FieldConfigArgument{"jobID": {Type: nn(graphql.Int)}},
		Resolve: g.access(app.ScopeJobs, app.RW, func(p graphql.ResolveParams) (any, error) {
			return gqlJobResult(svc.Start(p.Context, argInt(p, "jobID")))
		}),
	}
	f["cancel"] = &graphql.Field{
		Type:        g.job,
		Description: "Cancels a submitted job.",
		Args:        jobID,
		Resolve: g.access(app.ScopeJobs, app.RW, func(p graphql.ResolveParams) (any, error) {
			return gqlJobResult(svc.Cancel(p.Context, argInt(p, "jobId")))
		}),
	}
	f["update"] = &graphql.Field{
		Type:        g.job,
		Description: "Updates the visibility of a job.",
		Args: graphql.FieldConfigArgument{
			"jobId":      {Type: nn(graphql.Int)},
			"visibility": {Type: nn(g.visibility)},
		},
		Resolve: g.access(app.ScopeJobs, app.RW, func(p graphql.ResolveParams) (any, error) {
			v, _ := p.Args["visibility"].(app.Visibility)
			return gqlJobResult(svc.SetVisibility(p.Context, argInt(p, "jobId"), v))
		}),
	}
	f["createGroup"] = &graphql.Field{
		Type: nn(g.jobGroup),
		Description: "Creates a job group from several pending jobs.\n\n'execute' may be set to false to defer queueing this job. " +
			"The job group is executed immediately if unspecified.",
		Args: graphql.FieldConfigArgument{
			"jobIds":   {Type: nn(listNN(graphql.Int))},
			"triggers": {Type: listNN(g.triggerInput)},
			"execute":  {Type: graphql.Boolean},
			"note":     {Type: graphql.String},
		},
		Resolve: g.access(app.ScopeJobs, app.RW, func(p graphql.ResolveParams) (any, error) {
			var ids []int64
			list, _ := p.Args["jobIds"].([]any)
			for _, v := range list {
				n, _ := v.(int)
				ids = append(ids, int64(n))
			}
			triggers, err := triggerInputs(p.Args["triggers"])
			if err != nil {
				return nil, err
			}
			return svc.CreateGroup(p.Context, ids, triggers, argBoolPtr(p, "execute"), argStringPtr(p, "note"))
		}),
	}
	f["startGroup"] = &graphql.Field{
		Type:        g.jobGroup,
		Description: "Starts a pending job group.",
		Args:        graphql.FieldConfigArgument{"groupId": {Type: nn(graphql.Int)}},
		Resolve: g.access(app.ScopeJobs, app.RW, func(p graphql.ResolveParams) (any, error) {
			return svc.StartGroup(p.Context, argInt(p, "groupId"))
		}),
	}
}
