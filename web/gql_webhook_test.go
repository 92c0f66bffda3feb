package web

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"builds/app"
)

// hut's user-webhook operations.
const (
	hutCreateWebhook = "mutation createUserWebhook ($config: UserWebhookInput!) {\n\tcreateUserWebhook(config: $config) {\n\t\tid\n\t}\n}\n"
	hutWebhooks      = "query userWebhooks ($cursor: Cursor) {\n\tuserWebhooks(cursor: $cursor) {\n\t\tresults {\n\t\t\tid\n\t\t\turl\n\t\t}\n\t\tcursor\n\t}\n}\n"
	hutDeleteWebhook = "mutation deleteUserWebhook ($id: Int!) {\n\tdeleteUserWebhook(id: $id) {\n\t\tid\n\t}\n}\n"
	webhookQuery     = "query {\n  webhook {\n    uuid event date\n    ... on JobEvent { job { id status tasks { name status } owner { canonicalName } } }\n  }\n}\n"
)

func webhookConfig(url string, events []string, query string) map[string]any {
	return map[string]any{"config": map[string]any{"url": url, "events": events, "query": query}}
}

func TestUserWebhooks(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	_, bobTok := e.user("bob")
	d := e.mustQuery(tok, hutCreateWebhook, webhookConfig("https://hooks.example.org/builds", []string{"JOB_CREATED", "JOB_UPDATED"}, webhookQuery))
	id := get(d, "createUserWebhook", "id")
	if id == nil {
		t.Fatalf("create = %v", d)
	}
	d = e.mustQuery(tok, hutWebhooks, nil)
	if fmt.Sprint(get(d, "userWebhooks")) != fmt.Sprintf("map[cursor:<nil> results:[map[id:%v url:https://hooks.example.org/builds]]]", id) {
		t.Errorf("userWebhooks = %v", d)
	}
	full := `query q($id: Int!) { userWebhook(id: $id) { __typename id events query url client { uuid }
		deliveries { results { uuid } cursor } sample(event: JOB_UPDATED) } }`
	d = e.mustQuery(tok, full, map[string]any{"id": id})
	w := d["userWebhook"].(map[string]any)
	if w["__typename"] != "UserWebhookSubscription" || fmt.Sprint(w["events"]) != "[JOB_CREATED JOB_UPDATED]" || w["query"] != webhookQuery ||
		w["client"] != nil || fmt.Sprint(w["deliveries"]) != "map[cursor:<nil> results:[]]" {
		t.Errorf("userWebhook = %v", w)
	}
	var sample struct {
		Data struct {
			Webhook struct {
				UUID, Event, Date string
				Job               struct {
					ID     int
					Status string
					Tasks  []struct{ Name, Status string }
					Owner  struct{ CanonicalName string }
				}
			}
		}
		Errors []any
	}
	if err := json.Unmarshal([]byte(w["sample"].(string)), &sample); err != nil {
		t.Fatalf("sample %q: %v", w["sample"], err)
	}
	wh := sample.Data.Webhook
	if len(sample.Errors) > 0 || wh.UUID == "" || wh.Event != "JOB_UPDATED" || wh.Date == "" || wh.Job.ID != -1 || wh.Job.Status != "SUCCESS" ||
		fmt.Sprint(wh.Job.Tasks) != "[{hello SUCCESS}]" || wh.Job.Owner.CanonicalName != "~alice" {
		t.Errorf("sample = %s", w["sample"])
	}

	r := e.query(bobTok, full, map[string]any{"id": id})
	if !strings.Contains(r.errText(), "No user webhook by ID") {
		t.Errorf("bob reads alice's webhook: %s", r.Raw)
	}
	r = e.query(bobTok, hutDeleteWebhook, map[string]any{"id": id})
	if !strings.Contains(r.errText(), "No user webhook by ID") {
		t.Errorf("bob deletes alice's webhook: %s", r.Raw)
	}
	d = e.mustQuery(tok, hutDeleteWebhook, map[string]any{"id": id})
	if get(d, "deleteUserWebhook", "id") != id {
		t.Errorf("delete = %v", d)
	}
	if d = e.mustQuery(tok, hutWebhooks, nil); fmt.Sprint(get(d, "userWebhooks", "results")) != "[]" {
		t.Errorf("after delete: %v", d)
	}
	r = e.query(tok, "{ webhook { uuid } }", nil)
	if !strings.Contains(r.errText(), "only available in a webhook context") {
		t.Errorf("webhook over HTTP: %s", r.Raw)
	}
	_ = alice
}

func TestCreateUserWebhookValidation(t *testing.T) {
	e := newAPIEnv(t)
	alice, tok := e.user("alice")
	ok := "{ webhook { uuid } }"
	tests := []struct {
		name, token, url string
		events           []string
		query, want      string
	}{
		{"NonHTTP", tok, "ftp://example.org/x", []string{"JOB_CREATED"}, ok, "Cannot use non-HTTP or HTTPS URL"},
		{"NoHost", tok, "https:///x", []string{"JOB_CREATED"}, ok, "Cannot use URL without host"},
		{"NoEvents", tok, "https://example.org", []string{}, ok, "Must specify at least one event"},
		{"DuplicateEvent", tok, "https://example.org", []string{"JOB_CREATED", "JOB_CREATED"}, ok, "Duplicate event JOB_CREATED"},
		{"UnknownEvent", tok, "https://example.org", []string{"JOB_DELETED"}, ok, `Variable "$config" got invalid value`},
		{"Syntax", tok, "https://example.org", []string{"JOB_CREATED"}, "{ webhook { uuid }", "Error validating webhook query: Syntax Error"},
		{"Mutation", tok, "https://example.org", []string{"JOB_CREATED"}, "mutation { deleteUser }", "Error validating webhook query: the query may not contain a mutation"},
		{"UnknownField", tok, "https://example.org", []string{"JOB_CREATED"}, "{ webhook { nope } }", `Error validating webhook query: Cannot query field "nope"`},
		{"TwoQueries", tok, "https://example.org", []string{"JOB_CREATED"}, "query a { version { major } } query b { version { minor } }", "exactly one query"},
		{"Empty", tok, "https://example.org", []string{"JOB_CREATED"}, " ", "Error validating webhook query: the query is empty"},
		{"FragmentCycle", tok, "https://example.org", []string{"JOB_CREATED"}, "{ version { ...a } } fragment a on Version { ...a }", "fragment cycles are not allowed"},
		{"NoJobsGrant", e.token(alice, "PROFILE:RO"), "https://example.org", []string{"JOB_UPDATED"}, ok, "Insufficient access granted for webhook event JOB_UPDATED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.query(tt.token, hutCreateWebhook, webhookConfig(tt.url, tt.events, tt.query))
			if !strings.Contains(r.errText(), tt.want) || r.Data != nil {
				t.Errorf("got %s, want %q", r.Raw, tt.want)
			}
		})
	}
	if d := e.mustQuery(tok, hutWebhooks, nil); fmt.Sprint(get(d, "userWebhooks", "results")) != "[]" {
		t.Errorf("invalid webhooks were stored: %v", d)
	}
}

// TestExecuteWebhookQuery runs subscription queries the way deliveries do.
func TestExecuteWebhookQuery(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()
	alice, _ := e.user("alice")
	job := e.run(e.submit(alice, app.Private), "setup\n", "build\n")
	subscribe := func(grants, query string) *app.WebhookSubscription {
		t.Helper()
		tok := e.token(alice, grants)
		auth, err := e.svc.Authenticate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		w, err := e.svc.CreateWebhook(app.NewContextWithAuth(ctx, auth), app.WebhookInput{URL: "https://example.org/hook", Events: []app.WebhookEvent{app.EventJobUpdated}, Query: query})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	payload := e.svc.NewWebhookPayload(app.EventJobUpdated, job)
	q := "query { webhook { uuid event ... on JobEvent { job { id status runner log { fullURL } tasks { name status } } } } }"
	body, err := e.srv.ExecuteWebhookQuery(ctx, subscribe("", q), payload)
	if err != nil {
		t.Fatal(err)
	}
	// fields come in the order the query selects them, as the GraphQL
	// spec has it
	want := fmt.Sprintf(`{"data":{"webhook":{"uuid":"%s","event":"JOB_UPDATED","job":{"id":%d,"status":"RUNNING","runner":"runner.example.org","log":{"fullURL":"%s"},"tasks":[{"name":"build","status":"RUNNING"},{"name":"test","status":"PENDING"}]}}}}`,
		payload.UUID, job.ID, LogURL(e.url, job.ID, ""))
	if string(body) != want {
		t.Errorf("payload\n got %s\nwant %s", body, want)
	}

	// The creating token's grants still apply, read-only.
	body, err = e.srv.ExecuteWebhookQuery(ctx, subscribe("JOBS:RW", "{ webhook { ... on JobEvent { job { id owner { canonicalName } } } } }"), payload)
	if err != nil || !strings.Contains(string(body), "lacks the PROFILE:RO grant") {
		t.Errorf("grants: %s %v", body, err)
	}
	// A mutation smuggled into the store is refused at delivery time.
	sneaky := subscribe("", "{ version { major } }")
	sneaky.Query = "mutation { deleteUser }"
	body, err = e.srv.ExecuteWebhookQuery(ctx, sneaky, payload)
	if err != nil || !strings.Contains(string(body), "webhook queries may not make mutations") {
		t.Errorf("mutation: %s %v", body, err)
	}
	if _, err := e.db.FindUserByID(ctx, alice.ID); err != nil {
		t.Fatalf("alice was deleted: %v", err)
	}
	// Revoking the token stops the subscription.
	revoked := subscribe("", q)
	if err := e.svc.RevokeToken(app.SystemContext(ctx), *revoked.TokenID); err != nil {
		t.Fatal(err)
	}
	if body, err := e.srv.ExecuteWebhookQuery(ctx, revoked, payload); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked token: %s %v", body, err)
	}
}

func TestWebhookDeliveries(t *testing.T) {
	e := newAPIEnv(t)
	ctx := context.Background()
	alice, tok := e.user("alice")
	job := e.submit(alice, app.Public)
	d := e.mustQuery(tok, hutCreateWebhook, webhookConfig("https://hooks.example.org/b", []string{"JOB_CREATED"}, webhookQuery))
	id := int64(get(d, "createUserWebhook", "id").(float64))
	status, respBody := 200, "ok"
	for i := 0; i < 27; i++ {
		del := &app.WebhookDelivery{UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), SubscriptionID: id, Event: app.EventJobCreated,
			JobID: job.ID, RequestBody: `{"data":{}}`, State: "delivered", Attempts: 1}
		if i == 26 {
			del.ResponseStatus, del.ResponseBody = &status, &respBody
		}
		if err := e.db.CreateWebhookDelivery(ctx, del); err != nil {
			t.Fatal(err)
		}
	}
	q := `query q($id: Int!, $cursor: Cursor) { userWebhook(id: $id) { deliveries(cursor: $cursor) {
		results { uuid date event subscription { id } requestBody responseBody responseHeaders responseStatus } cursor } } }`
	d = e.mustQuery(tok, q, map[string]any{"id": id})
	res := get(d, "userWebhook", "deliveries", "results").([]any)
	cursor := get(d, "userWebhook", "deliveries", "cursor")
	if len(res) != 25 || cursor == nil || fmt.Sprint(res[0]) != fmt.Sprintf(
		"map[date:%s event:JOB_CREATED requestBody:{\"data\":{}} responseBody:ok responseHeaders:<nil> responseStatus:200 subscription:map[id:%d] uuid:00000000-0000-4000-8000-000000000026]",
		get(res[0], "date"), id) {
		t.Fatalf("first page: %d results, cursor %v, first %v", len(res), cursor, res[0])
	}
	d = e.mustQuery(tok, q, map[string]any{"id": id, "cursor": cursor})
	if n := len(get(d, "userWebhook", "deliveries", "results").([]any)); n != 2 || get(d, "userWebhook", "deliveries", "cursor") != nil {
		t.Errorf("second page: %v", d)
	}
}
