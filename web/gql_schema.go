package web

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"

	"builds/app"
)

// The schema follows builds-graphql-api.txt exactly (web/testdata holds a
// copy, and TestSchemaMatchesReference compares it with introspection).
// Each gql_*.go file defines the types of one area; their resolvers call
// app.Service, which enforces visibility and ownership.

// API version reported by Query.version.
const (
	apiMajor = 0
	apiMinor = 1
	apiPatch = 0
)

// schemaBuilder holds the types while the schema is assembled, and the
// server the resolvers use.
type schemaBuilder struct {
	srv *Server

	timeT, cursorT, binaryT, fileT *graphql.Scalar

	jobStatus, taskStatus, visibility, triggerCondition, triggerType, webhookEvent,
	accessScope, accessKind *graphql.Enum

	entity, secret, trigger, webhookSubscription, webhookPayload *graphql.Interface

	user, version, settings                                         *graphql.Object
	job, task, log, artifact, jobCursor, jobGroup                   *graphql.Object
	emailTrigger, webhookTrigger                                    *graphql.Object
	secretCursor, sshKey, pgpKey, secretFile                        *graphql.Object
	oauthClient, userWebhookSubscription, webhookDelivery           *graphql.Object
	webhookDeliveryCursor, webhookSubscriptionCursor, jobEvent      *graphql.Object
	triggerInput, emailTriggerInput, webhookTriggerInput, whookInpt *graphql.InputObject
}

// newSchema builds the GraphQL schema served by s.
func newSchema(s *Server) (graphql.Schema, error) {
	g := &schemaBuilder{srv: s}
	g.scalars()
	g.enums()
	g.userTypes()
	g.jobTypes()
	g.secretTypes()
	g.webhookTypes()
	schema, err := graphql.NewSchema(graphql.SchemaConfig{
		Query:    g.queryType(),
		Mutation: g.mutationType(),
		Types: []graphql.Type{
			g.user, g.sshKey, g.pgpKey, g.secretFile, g.emailTrigger, g.webhookTrigger,
			g.userWebhookSubscription, g.jobEvent, g.fileT, g.binaryT, g.accessScope, g.accessKind,
			graphql.ID, graphql.Float, // listed by the reference though nothing uses them
		},
		Directives: g.directives(),
	})
	if err != nil {
		return schema, err
	}
	orderArgs(schema)
	meterResolvers(schema)
	warmEnums(schema)
	return schema, nil
}

// warmEnums builds every enum's value and name lookups now. graphql-go
// builds them on first use, unguarded, so two requests serializing an
// enum for the first time at once would race on them (seen under -race).
func warmEnums(schema graphql.Schema) {
	for _, t := range schema.TypeMap() {
		if e, ok := t.(*graphql.Enum); ok && len(e.Values()) > 0 {
			v := e.Values()[0]
			e.Serialize(v.Value)
			e.ParseValue(v.Name)
		}
	}
}

func nn(t graphql.Type) *graphql.NonNull { return graphql.NewNonNull(t) }

// listNN is [T!], the element type of every list in the schema.
func listNN(t graphql.Type) *graphql.List { return graphql.NewList(graphql.NewNonNull(t)) }

// argOrder lists the declared order of multi-argument fields, which
// graphql-go would otherwise report in map order.
func argOrder() map[string][]string {
	return map[string][]string{
		"Mutation.submit":         {"manifest", "tags", "note", "secrets", "execute", "visibility"},
		"Mutation.createGroup":    {"jobIds", "triggers", "execute", "note"},
		"Mutation.update":         {"jobId", "visibility"},
		"Mutation.updateJob":      {"jobId", "status"},
		"Mutation.updateTask":     {"taskId", "status"},
		"Mutation.createArtifact": {"jobId", "path", "contents"},
		"Mutation.shareSecret":    {"uuid", "user"},
		"@access":                 {"scope", "kind"},
		"@defer":                  {"if", "label"},
	}
}

func sortArgs(args []*graphql.Argument, order []string) {
	idx := map[string]int{}
	for i, n := range order {
		idx[n] = i
	}
	sort.SliceStable(args, func(i, j int) bool { return idx[args[i].Name()] < idx[args[j].Name()] })
}

func orderArgs(schema graphql.Schema) {
	order := argOrder()
	for _, root := range []*graphql.Object{schema.QueryType(), schema.MutationType()} {
		for name, f := range root.Fields() {
			if o, ok := order[root.Name()+"."+name]; ok {
				sortArgs(f.Args, o)
			}
		}
	}
	for _, d := range schema.Directives() {
		if o, ok := order["@"+d.Name]; ok {
			sortArgs(d.Args, o)
		}
	}
}

// newEnum builds an enum whose values keep the given order; internal maps
// a GraphQL name to the value resolvers use.
func newEnum(name, desc string, values []string, internal func(string) any) *graphql.Enum {
	m := graphql.EnumValueConfigMap{}
	for _, v := range values {
		m[v] = &graphql.EnumValueConfig{Value: internal(v)}
	}
	e := graphql.NewEnum(graphql.EnumConfig{Name: name, Description: desc, Values: m})
	idx := map[string]int{}
	for i, v := range values {
		idx[v] = i
	}
	vals := e.Values() // graphql-go's own slice: sorting it fixes introspection order
	sort.Slice(vals, func(i, j int) bool { return idx[vals[i].Name] < idx[vals[j].Name] })
	return e
}

func (g *schemaBuilder) enums() {
	lower := func(v string) any { return strings.ToLower(v) }
	jobStatuses := make([]string, len(app.JobStatuses))
	for i, st := range app.JobStatuses {
		jobStatuses[i] = strings.ToUpper(string(st))
	}
	taskStatuses := make([]string, len(app.TaskStatuses))
	for i, st := range app.TaskStatuses {
		taskStatuses[i] = strings.ToUpper(string(st))
	}
	g.jobStatus = newEnum("JobStatus", "", jobStatuses, func(v string) any { return app.JobStatus(strings.ToLower(v)) })
	g.taskStatus = newEnum("TaskStatus", "", taskStatuses, func(v string) any { return app.TaskStatus(strings.ToLower(v)) })
	g.visibility = newEnum("Visibility", "", []string{"PUBLIC", "UNLISTED", "PRIVATE"}, func(v string) any { return app.Visibility(v) })
	g.triggerCondition = newEnum("TriggerCondition", "", []string{"SUCCESS", "FAILURE", "ALWAYS"}, lower)
	g.triggerType = newEnum("TriggerType", "", []string{"EMAIL", "WEBHOOK"}, lower)
	g.webhookEvent = newEnum("WebhookEvent", "", []string{"JOB_CREATED", "JOB_UPDATED"}, func(v string) any { return app.WebhookEvent(v) })
	g.accessScope = newEnum("AccessScope", "", []string{"PROFILE", "JOBS", "LOGS", "SECRETS"}, func(v string) any { return app.Scope(v) })
	g.accessKind = newEnum("AccessKind", "", []string{"RO", "RW"}, func(v string) any { return app.Access(v) })
}

func (g *schemaBuilder) scalars() {
	stringLiteral := func(parse func(string) any) graphql.ParseLiteralFn {
		return func(v ast.Value) any {
			if s, ok := v.(*ast.StringValue); ok {
				return parse(s.Value)
			}
			return nil
		}
	}
	parseTime := func(s string) any {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil
		}
		return t.UTC()
	}
	g.timeT = graphql.NewScalar(graphql.ScalarConfig{
		Name: "Time",
		Serialize: func(v any) any {
			switch t := v.(type) {
			case time.Time:
				return t.UTC().Format(time.RFC3339)
			case *time.Time:
				if t != nil {
					return t.UTC().Format(time.RFC3339)
				}
			}
			return nil
		},
		ParseValue: func(v any) any {
			if s, ok := v.(string); ok {
				return parseTime(s)
			}
			return nil
		},
		ParseLiteral: stringLiteral(parseTime),
	})
	str := func(s string) any { return s }
	g.cursorT = graphql.NewScalar(graphql.ScalarConfig{
		Name: "Cursor",
		Serialize: func(v any) any {
			if s, ok := v.(string); ok {
				return s
			}
			return nil
		},
		ParseValue: func(v any) any {
			if s, ok := v.(string); ok {
				return s
			}
			return nil
		},
		ParseLiteral: stringLiteral(str),
	})
	parseBinary := func(s string) any {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil
		}
		return b
	}
	g.binaryT = graphql.NewScalar(graphql.ScalarConfig{
		Name: "Binary",
		Serialize: func(v any) any {
			if b, ok := v.([]byte); ok {
				return base64.StdEncoding.EncodeToString(b)
			}
			return nil
		},
		ParseValue: func(v any) any {
			if s, ok := v.(string); ok {
				return parseBinary(s)
			}
			return nil
		},
		ParseLiteral: stringLiteral(parseBinary),
	})
	// File values only come from multipart requests (readMultipartRequest
	// puts an *gqlUpload into the variables); they cannot be written inline.
	g.fileT = graphql.NewScalar(graphql.ScalarConfig{
		Name:      "File",
		Serialize: func(v any) any { return nil },
		ParseValue: func(v any) any {
			if u, ok := v.(*gqlUpload); ok {
				return u
			}
			return nil
		},
		ParseLiteral: func(ast.Value) any { return nil },
	})
}

func (g *schemaBuilder) directives() []*graphql.Directive {
	field := []string{graphql.DirectiveLocationFieldDefinition}
	ds := append([]*graphql.Directive{}, graphql.SpecifiedDirectives...)
	return append(ds,
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "access",
			Description: "Decorates fields for which access requires a particular OAuth 2.0 scope with read or write access.",
			Locations:   field,
			Args: graphql.FieldConfigArgument{
				"scope": {Type: nn(g.accessScope)},
				"kind":  {Type: nn(g.accessKind)},
			},
		}),
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "defer",
			Description: "Directs the executor to defer this fragment when the if argument is true or undefined.",
			Locations:   []string{graphql.DirectiveLocationFragmentSpread, graphql.DirectiveLocationInlineFragment},
			Args: graphql.FieldConfigArgument{
				"if":    {Type: graphql.Boolean, Description: "Deferred when true or undefined."},
				"label": {Type: graphql.String, Description: "Unique name"},
			},
		}),
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "internal",
			Description: "This is used to decorate fields which are for internal use, and are not available to normal API users.",
			Locations:   field,
		}),
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "oneOf",
			Description: "Indicates exactly one field must be supplied and this field must not be null.",
			Locations:   []string{graphql.DirectiveLocationInputObject},
		}),
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "private",
			Description: "This is used to decorate fields which are only accessible with a personal access token, and are not available to clients using OAuth 2.0 access tokens.",
			Locations:   field,
		}),
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "scopehelp",
			Description: "Used to provide a human-friendly description of an access scope",
			Locations:   []string{graphql.DirectiveLocationEnumValue},
			Args:        graphql.FieldConfigArgument{"details": {Type: nn(graphql.String)}},
		}),
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "specifiedBy",
			Description: "Exposes a URL that specifies the behavior of this scalar.",
			Locations:   []string{graphql.DirectiveLocationScalar},
			Args: graphql.FieldConfigArgument{
				"url": {Type: nn(graphql.String), Description: "The URL that specifies the behavior of this scalar."},
			},
		}),
		graphql.NewDirective(graphql.DirectiveConfig{
			Name:        "worker",
			Description: "This used to decorate private resolvers which are only accessible to build workers, and are used to facilitate the build process.",
			Locations:   field,
		}),
	)
}

// gqlCache remembers users loaded during one request, so a page of
// jobs does not load its owner 25 times.
type gqlCache struct {
	mu    sync.Mutex
	users map[int64]*app.User
}

type gqlCacheKey struct{}

func withGQLCache(ctx context.Context) context.Context {
	return context.WithValue(ctx, gqlCacheKey{}, &gqlCache{users: map[int64]*app.User{}})
}

// userByID loads a user through the request cache.
func (g *schemaBuilder) userByID(ctx context.Context, id int64) (*app.User, error) {
	c, _ := ctx.Value(gqlCacheKey{}).(*gqlCache)
	if c != nil {
		c.mu.Lock()
		u := c.users[id]
		c.mu.Unlock()
		if u != nil {
			return u, nil
		}
	}
	u, err := g.srv.Service.User(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("find user %d: %w", id, err)
	}
	if c != nil {
		c.mu.Lock()
		c.users[id] = u
		c.mu.Unlock()
	}
	return u, nil
}

// Argument helpers: graphql-go gives arguments as any.

func argInt(p graphql.ResolveParams, name string) int64 {
	n, _ := p.Args[name].(int)
	return int64(n)
}

func argString(p graphql.ResolveParams, name string) string {
	s, _ := p.Args[name].(string)
	return s
}

func argStringPtr(p graphql.ResolveParams, name string) *string {
	if s, ok := p.Args[name].(string); ok {
		return &s
	}
	return nil
}

func argBoolPtr(p graphql.ResolveParams, name string) *bool {
	if b, ok := p.Args[name].(bool); ok {
		return &b
	}
	return nil
}

func argCursor(p graphql.ResolveParams) *string { return argStringPtr(p, "cursor") }

// optString turns "" into null for optional string fields.
func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func derefString(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// optCursor is a page's next cursor, null at the end.
func optCursor(c string) any { return optString(c) }
