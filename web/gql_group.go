package web

import (
	"github.com/graphql-go/graphql"

	"builds/app"
)

// Job group triggers: the Trigger interface, its two implementations and
// the TriggerInput of createGroup.

func (g *schemaBuilder) triggerTypes() {
	trig := func(p graphql.ResolveParams) *app.GroupTrigger { return p.Source.(*app.GroupTrigger) }
	condition := &graphql.Field{Type: nn(g.triggerCondition), Resolve: func(p graphql.ResolveParams) (any, error) { return trig(p).Condition, nil }}
	g.trigger = graphql.NewInterface(graphql.InterfaceConfig{
		Name: "Trigger",
		Description: "Triggers run upon the completion of all of the jobs in a job group. Note that these triggers are " +
			"distinct from the ones defined by an individual job's build manifest, but are similar in functionality.",
		Fields: graphql.Fields{"condition": {Type: nn(g.triggerCondition)}},
		ResolveType: func(p graphql.ResolveTypeParams) *graphql.Object {
			if t, ok := p.Value.(*app.GroupTrigger); ok && t.Action == "email" {
				return g.emailTrigger
			}
			return g.webhookTrigger
		},
	})
	g.emailTrigger = graphql.NewObject(graphql.ObjectConfig{
		Name:       "EmailTrigger",
		Interfaces: []*graphql.Interface{g.trigger},
		Fields: graphql.Fields{
			"condition": condition,
			"to":        {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return trig(p).To, nil }},
			"cc":        {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return optString(trig(p).Cc), nil }},
			"inReplyTo": {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return optString(trig(p).InReplyTo), nil }},
		},
	})
	g.webhookTrigger = graphql.NewObject(graphql.ObjectConfig{
		Name:       "WebhookTrigger",
		Interfaces: []*graphql.Interface{g.trigger},
		Fields: graphql.Fields{
			"condition": condition,
			"url":       {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return trig(p).URL, nil }},
		},
	})
	g.emailTriggerInput = graphql.NewInputObject(graphql.InputObjectConfig{
		Name: "EmailTriggerInput",
		Fields: graphql.InputObjectConfigFieldMap{
			"to":        {Type: nn(graphql.String)},
			"cc":        {Type: graphql.String},
			"inReplyTo": {Type: graphql.String},
		},
	})
	g.webhookTriggerInput = graphql.NewInputObject(graphql.InputObjectConfig{
		Name:   "WebhookTriggerInput",
		Fields: graphql.InputObjectConfigFieldMap{"url": {Type: nn(graphql.String)}},
	})
	g.triggerInput = graphql.NewInputObject(graphql.InputObjectConfig{
		Name: "TriggerInput",
		Fields: graphql.InputObjectConfigFieldMap{
			"type":      {Type: nn(g.triggerType)},
			"condition": {Type: nn(g.triggerCondition)},
			"email":     {Type: g.emailTriggerInput},
			"webhook":   {Type: g.webhookTriggerInput},
		},
	})
}

// triggerInputs converts createGroup's [TriggerInput!] argument.
func triggerInputs(v any) ([]app.TriggerInput, error) {
	list, _ := v.([]any)
	out := make([]app.TriggerInput, 0, len(list))
	for i, item := range list {
		m, _ := item.(map[string]any)
		str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
		t := app.TriggerInput{Action: str(m, "type"), Condition: str(m, "condition")}
		switch t.Action {
		case "email":
			e, ok := m["email"].(map[string]any)
			if !ok {
				return nil, app.Errorf(app.EINVALID, "triggers[%d]: an EMAIL trigger needs the 'email' field", i)
			}
			t.To, t.Cc, t.InReplyTo = str(e, "to"), str(e, "cc"), str(e, "inReplyTo")
		case "webhook":
			w, ok := m["webhook"].(map[string]any)
			if !ok {
				return nil, app.Errorf(app.EINVALID, "triggers[%d]: a WEBHOOK trigger needs the 'webhook' field", i)
			}
			t.URL = str(w, "url")
		}
		out = append(out, t)
	}
	return out, nil
}
