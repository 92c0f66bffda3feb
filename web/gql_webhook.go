package web

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"

	"builds/app"
)

// User webhook subscriptions, their deliveries, and the webhook context
// in which subscription queries run.

// gqlEvent is the event a webhook query runs for (Query.webhook).
type gqlEvent struct {
	payload app.WebhookPayload
	job     *gqlJob
}

type webhookCtxKey struct{}

type gqlDelivery struct {
	d   *app.WebhookDelivery
	sub *app.WebhookSubscription
}

type gqlDeliveryPage struct {
	nodes  []*gqlDelivery
	cursor string
}

// ExecuteWebhookQuery evaluates a subscription's query for one event in
// webhook context: as the subscription's creator, read-only, limited to
// the creating token's grants, with Query.webhook returning payload. It
// returns the JSON body to deliver, {"data":...,"errors":[...]}; GraphQL
// errors are part of that body. The error is non-nil only when the
// subscription can no longer act (creator deleted, token revoked or
// expired); such deliveries should be dropped.
func (s *Server) ExecuteWebhookQuery(ctx context.Context, sub *app.WebhookSubscription, payload app.WebhookPayload) ([]byte, error) {
	auth, err := s.Service.WebhookAuth(ctx, sub)
	if err != nil {
		return nil, err
	}
	return s.runWebhookQuery(ctx, auth, sub.Query, &gqlEvent{payload: payload, job: &gqlJob{job: payload.Job}})
}

func (s *Server) runWebhookQuery(ctx context.Context, auth *app.Auth, query string, ev *gqlEvent) ([]byte, error) {
	ctx = app.NewContextWithAuth(ctx, auth)
	ctx = context.WithValue(ctx, webhookCtxKey{}, ev)
	resp, rerr := s.executeGraphQL(ctx, &gqlRequest{Query: query}, execOptions{
		mutationError: "webhook queries may not make mutations",
	})
	if rerr != nil {
		resp = &gqlResponse{Errors: []gqlErrorJSON{{Message: rerr.msg, Extensions: map[string]string{"code": rerr.code}}}}
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode webhook payload: %w", err)
	}
	return body, nil
}

// sampleEvent is a realistic event on a made-up job (id -1) owned by the
// subscriber, for WebhookSubscription.sample.
func (s *Server) sampleEvent(ownerID int64, event app.WebhookEvent) *gqlEvent {
	now := time.Now().UTC().Truncate(time.Second)
	runner := s.config().RunnerName()
	job := &app.Job{
		ID: -1, Created: now, Updated: now, OwnerID: ownerID,
		Manifest:   "image: alpine/latest\ntasks:\n  - hello: echo hello world\n",
		Visibility: app.Unlisted, Image: "alpine/latest", Runner: &runner, Status: app.JobSuccess,
	}
	task := &app.Task{ID: -1, Created: now, Updated: now, JobID: -1, Name: "hello", Status: app.TaskSuccess}
	payload := s.Service.NewWebhookPayload(event, job)
	return &gqlEvent{payload: payload, job: &gqlJob{job: job, tasks: []*app.Task{task}}}
}

// validateWebhookQuery checks a subscription's query when it is created:
// it must parse, be a single query (no mutation) within the size limits,
// and validate against the schema.
func (s *Server) validateWebhookQuery(query string) error {
	invalid := func(format string, args ...any) error {
		return app.Errorf(app.EINVALID, "Error validating webhook query: "+format, args...)
	}
	if strings.TrimSpace(query) == "" {
		return invalid("the query is empty")
	}
	if len(query) > maxQueryBytes {
		return invalid("the query is %d bytes, the limit is %d", len(query), maxQueryBytes)
	}
	doc, err := parser.Parse(parser.ParseParams{Source: source.NewSource(&source.Source{Body: []byte(query), Name: "webhook query"})})
	if err != nil {
		msg, _, _ := strings.Cut(err.Error(), "\n\n")
		return invalid("%s", msg)
	}
	ops := 0
	for _, d := range doc.Definitions {
		if op, ok := d.(*ast.OperationDefinition); ok {
			ops++
			if op.Operation != ast.OperationTypeQuery {
				return invalid("the query may not contain a %s", op.Operation)
			}
		}
	}
	if ops != 1 {
		return invalid("the document must contain exactly one query, found %d", ops)
	}
	if err := checkLimits(doc); err != nil {
		return invalid("%v", err)
	}
	schema, err := s.graphQLSchema()
	if err != nil {
		return err
	}
	if vr := graphql.ValidateDocument(schema, doc, nil); !vr.IsValid {
		msgs := make([]string, len(vr.Errors))
		for i, e := range vr.Errors {
			msgs[i] = e.Message
		}
		return invalid("%s", strings.Join(msgs, "; "))
	}
	if err := checkCost(schema, doc); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func (g *schemaBuilder) webhookTypes() {
	sub := func(p graphql.ResolveParams) *app.WebhookSubscription { return p.Source.(*app.WebhookSubscription) }
	g.oauthClient = graphql.NewObject(graphql.ObjectConfig{
		Name:   "OAuthClient",
		Fields: graphql.Fields{"uuid": {Type: nn(graphql.String)}},
	})
	clientDesc := "If this webhook was registered by an authorized OAuth 2.0 client, this field is non-null."
	deliveriesDesc := "All deliveries which have been sent to this webhook."
	sampleDesc := "Returns a sample payload for this subscription, for testing purposes"
	cursorArg := graphql.FieldConfigArgument{"cursor": {Type: g.cursorT}}
	eventArg := graphql.FieldConfigArgument{"event": {Type: nn(g.webhookEvent)}}
	g.webhookSubscription = graphql.NewInterface(graphql.InterfaceConfig{
		Name: "WebhookSubscription",
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			return graphql.Fields{
				"id":         {Type: nn(graphql.Int)},
				"events":     {Type: nn(listNN(g.webhookEvent))},
				"query":      {Type: nn(graphql.String)},
				"url":        {Type: nn(graphql.String)},
				"client":     {Type: g.oauthClient, Description: clientDesc},
				"deliveries": {Type: nn(g.webhookDeliveryCursor), Args: cursorArg, Description: deliveriesDesc},
				"sample":     {Type: nn(graphql.String), Args: eventArg, Description: sampleDesc},
			}
		}),
		ResolveType: func(graphql.ResolveTypeParams) *graphql.Object { return g.userWebhookSubscription },
	})
	g.userWebhookSubscription = graphql.NewObject(graphql.ObjectConfig{
		Name:       "UserWebhookSubscription",
		Interfaces: []*graphql.Interface{g.webhookSubscription},
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			return graphql.Fields{
				"id":     {Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return sub(p).ID, nil }},
				"events": {Type: nn(listNN(g.webhookEvent)), Resolve: func(p graphql.ResolveParams) (any, error) { return sub(p).Events, nil }},
				"query":  {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return sub(p).Query, nil }},
				"url":    {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return sub(p).URL, nil }},
				// There are no OAuth 2.0 clients here: every subscription
				// comes from a personal access token or the web UI.
				"client": {Type: g.oauthClient, Description: clientDesc, Resolve: func(graphql.ResolveParams) (any, error) { return nil, nil }},
				"deliveries": {Type: nn(g.webhookDeliveryCursor), Args: cursorArg, Description: deliveriesDesc,
					Resolve: g.authed(func(p graphql.ResolveParams) (any, error) {
						w := sub(p)
						list, err := g.srv.Service.WebhookDeliveries(p.Context, w, argCursor(p))
						if err != nil {
							return nil, err
						}
						page := &gqlDeliveryPage{cursor: list.Cursor, nodes: make([]*gqlDelivery, len(list.Deliveries))}
						for i, d := range list.Deliveries {
							page.nodes[i] = &gqlDelivery{d: d, sub: w}
						}
						return page, nil
					})},
				"sample": {Type: nn(graphql.String), Args: eventArg, Description: sampleDesc,
					Resolve: g.authed(func(p graphql.ResolveParams) (any, error) {
						w := sub(p)
						grants, err := app.ParseGrants(w.Grants)
						if err != nil {
							return nil, fmt.Errorf("grants of webhook %d: %w", w.ID, err)
						}
						ev, _ := p.Args["event"].(app.WebhookEvent)
						auth := &app.Auth{Kind: app.AuthWebhook, User: app.UserFromContext(p.Context), Grants: grants}
						body, err := g.srv.runWebhookQuery(p.Context, auth, w.Query, g.srv.sampleEvent(w.UserID, ev))
						return string(body), err
					})},
			}
		}),
	})
	g.deliveryTypes()
	g.payloadTypes()
	g.whookInpt = graphql.NewInputObject(graphql.InputObjectConfig{
		Name: "UserWebhookInput",
		Fields: graphql.InputObjectConfigFieldMap{
			"url":    {Type: nn(graphql.String)},
			"events": {Type: nn(listNN(g.webhookEvent))},
			"query":  {Type: nn(graphql.String)},
		},
	})
	g.webhookSubscriptionCursor = graphql.NewObject(graphql.ObjectConfig{
		Name:        "WebhookSubscriptionCursor",
		Description: cursorDescription("webhook subscriptions"),
		Fields: graphql.Fields{
			"results": {Type: nn(listNN(g.webhookSubscription)), Resolve: func(p graphql.ResolveParams) (any, error) {
				return p.Source.(*app.WebhookList).Webhooks, nil
			}},
			"cursor": {Type: g.cursorT, Resolve: func(p graphql.ResolveParams) (any, error) { return optCursor(p.Source.(*app.WebhookList).Cursor), nil }},
		},
	})
}

func (g *schemaBuilder) deliveryTypes() {
	del := func(p graphql.ResolveParams) *app.WebhookDelivery { return p.Source.(*gqlDelivery).d }
	g.webhookDelivery = graphql.NewObject(graphql.ObjectConfig{
		Name: "WebhookDelivery",
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			return graphql.Fields{
				"uuid":  {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return del(p).UUID, nil }},
				"date":  {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return del(p).Created, nil }},
				"event": {Type: nn(g.webhookEvent), Resolve: func(p graphql.ResolveParams) (any, error) { return del(p).Event, nil }},
				"subscription": {Type: nn(g.webhookSubscription), Resolve: func(p graphql.ResolveParams) (any, error) {
					return p.Source.(*gqlDelivery).sub, nil
				}},
				"requestBody": {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return del(p).RequestBody, nil }},
				"responseBody": {Type: graphql.String,
					Description: "These details are provided only after a response is received from the remote server. " +
						"If a response is sent whose Content-Type is not text/*, or cannot be decoded as UTF-8, the response body will be null. " +
						"It will be truncated after 64 KiB.",
					Resolve: func(p graphql.ResolveParams) (any, error) { return derefString(del(p).ResponseBody), nil }},
				"responseHeaders": {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return derefString(del(p).ResponseHeaders), nil }},
				"responseStatus": {Type: graphql.Int, Resolve: func(p graphql.ResolveParams) (any, error) {
					if st := del(p).ResponseStatus; st != nil {
						return *st, nil
					}
					return nil, nil
				}},
			}
		}),
	})
	g.webhookDeliveryCursor = graphql.NewObject(graphql.ObjectConfig{
		Name:        "WebhookDeliveryCursor",
		Description: cursorDescription("webhook deliveries"),
		Fields: graphql.Fields{
			"results": {Type: nn(listNN(g.webhookDelivery)), Resolve: func(p graphql.ResolveParams) (any, error) { return p.Source.(*gqlDeliveryPage).nodes, nil }},
			"cursor":  {Type: g.cursorT, Resolve: func(p graphql.ResolveParams) (any, error) { return optCursor(p.Source.(*gqlDeliveryPage).cursor), nil }},
		},
	})
}

func (g *schemaBuilder) payloadTypes() {
	ev := func(p graphql.ResolveParams) *gqlEvent { return p.Source.(*gqlEvent) }
	g.webhookPayload = graphql.NewInterface(graphql.InterfaceConfig{
		Name: "WebhookPayload",
		Fields: graphql.Fields{
			"uuid":  {Type: nn(graphql.String)},
			"event": {Type: nn(g.webhookEvent)},
			"date":  {Type: nn(g.timeT)},
		},
		ResolveType: func(graphql.ResolveTypeParams) *graphql.Object { return g.jobEvent },
	})
	g.jobEvent = graphql.NewObject(graphql.ObjectConfig{
		Name:       "JobEvent",
		Interfaces: []*graphql.Interface{g.webhookPayload},
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			return graphql.Fields{
				"uuid":  {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return ev(p).payload.UUID, nil }},
				"event": {Type: nn(g.webhookEvent), Resolve: func(p graphql.ResolveParams) (any, error) { return ev(p).payload.Event, nil }},
				"date":  {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return ev(p).payload.Date, nil }},
				"job":   {Type: nn(g.job), Resolve: func(p graphql.ResolveParams) (any, error) { return ev(p).job, nil }},
			}
		}),
	})
}

// webhookQueries are Query.userWebhooks, userWebhook and webhook.
func (g *schemaBuilder) webhookQueries(f graphql.Fields) {
	f["userWebhooks"] = &graphql.Field{
		Type: nn(g.webhookSubscriptionCursor),
		Description: "Returns a list of user webhook subscriptions. For clients authenticated with a personal access token, " +
			"this returns all webhooks configured by all GraphQL clients for your account. For clients authenticated with " +
			"an OAuth 2.0 access token, this returns only webhooks registered for your client.",
		Args: graphql.FieldConfigArgument{"cursor": {Type: g.cursorT}},
		Resolve: g.authed(func(p graphql.ResolveParams) (any, error) {
			return g.srv.Service.Webhooks(p.Context, argCursor(p))
		}),
	}
	f["userWebhook"] = &graphql.Field{
		Type:        g.webhookSubscription,
		Description: "Returns details of a user webhook subscription by its ID.",
		Args:        graphql.FieldConfigArgument{"id": {Type: nn(graphql.Int)}},
		Resolve: g.authed(func(p graphql.ResolveParams) (any, error) {
			return g.srv.Service.Webhook(p.Context, argInt(p, "id"))
		}),
	}
	f["webhook"] = &graphql.Field{
		Type: nn(g.webhookPayload),
		Description: "Returns information about the webhook currently being processed. This is not valid during normal " +
			"queries over HTTP, and will return an error if used outside of a webhook context.",
		Resolve: g.wrap(func(p graphql.ResolveParams) (any, error) {
			ev, _ := p.Context.Value(webhookCtxKey{}).(*gqlEvent)
			if ev == nil {
				return nil, app.Errorf(app.EINVALID, "Query.webhook is only available in a webhook context, not over HTTP")
			}
			return ev, nil
		}),
	}
}

// webhookMutations are createUserWebhook and deleteUserWebhook.
func (g *schemaBuilder) webhookMutations(f graphql.Fields) {
	f["createUserWebhook"] = &graphql.Field{
		Type: nn(g.webhookSubscription),
		Description: "Creates a new user webhook subscription. When an event from the provided list of events occurs, " +
			"the 'query' parameter (a GraphQL query) will be evaluated and the results will be sent to the provided URL " +
			"as the body of an HTTP POST request. The list of events must include at least one event, and no duplicates.\n\n" +
			"This query is evaluated in the webhook context, such that query { webhook } may be used to access details " +
			"of the event which trigged the webhook. The query may not make any mutations.",
		Args: graphql.FieldConfigArgument{"config": {Type: nn(g.whookInpt)}},
		Resolve: g.authed(func(p graphql.ResolveParams) (any, error) {
			cfg, _ := p.Args["config"].(map[string]any)
			in := app.WebhookInput{}
			in.URL, _ = cfg["url"].(string)
			in.Query, _ = cfg["query"].(string)
			events, _ := cfg["events"].([]any)
			for _, e := range events {
				if ev, ok := e.(app.WebhookEvent); ok {
					in.Events = append(in.Events, ev)
				}
			}
			if err := g.srv.validateWebhookQuery(in.Query); err != nil {
				return nil, err
			}
			return g.srv.Service.CreateWebhook(p.Context, in)
		}),
	}
	f["deleteUserWebhook"] = &graphql.Field{
		Type: nn(g.webhookSubscription),
		Description: "Deletes a user webhook. Any events already queued may still be delivered after this request completes. " +
			"Clients authenticated with a personal access token may delete any webhook registered for their account, but " +
			"authorized OAuth 2.0 clients may only delete their own webhooks. Manually deleting a webhook configured by a " +
			"third-party client may cause unexpected behavior with the third-party integration.",
		Args: graphql.FieldConfigArgument{"id": {Type: nn(graphql.Int)}},
		Resolve: g.authed(func(p graphql.ResolveParams) (any, error) {
			return g.srv.Service.DeleteWebhook(p.Context, argInt(p, "id"))
		}),
	}
}
