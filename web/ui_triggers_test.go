package web_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"builds/app"
)

func TestUIJobTriggers(t *testing.T) {
	e := newUIEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	root, err := e.svc.CreateUser(context.Background(), "root", "root@example.org", true, "password-root")
	if err != nil {
		t.Fatal(err)
	}
	job := e.submit(alice, jobOpts{visibility: app.Public})
	e.start(job)
	e.finish(job, app.JobFailed)
	for _, d := range []*app.TriggerDelivery{
		{Action: "email", Target: "team@example.org", Status: "sent", Message: "sent to team@example.org", Attempts: 1},
		{Action: "webhook", Target: "https://hooks.example/ci", Status: "failed", Message: "500 <b>upstream</b> broke", Attempts: 3},
		{Action: "email", Target: "happy@example.org", Status: "skipped", Message: "condition success unmet by status failed"},
	} {
		d.JobID = &job.ID
		if err := e.db.CreateTriggerDelivery(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	quiet := e.submit(alice, jobOpts{visibility: app.Public})
	path := fmt.Sprintf("/~alice/job/%d", job.ID)
	private := []string{"<h2>Triggers</h2>", "team@example.org", "hooks.example", "happy@example.org"}

	tests := []struct {
		name string
		user *app.User
		sees bool
	}{
		{"owner", alice, true},
		{"other user", bob, false},
		{"admin", root, false}, // targets are the owner's business
		{"anonymous", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(e.client(tt.user), path)
			if !tt.sees {
				r.want(t, http.StatusOK, "failed")
				r.lacks(t, private...)
				return
			}
			r.want(t, http.StatusOK, private...)
			r.want(t, http.StatusOK,
				`<tr class="trigger t-sent">`, `<tr class="trigger t-failed">`, `<tr class="trigger t-skipped">`,
				"<strong>webhook</strong>", "500 &lt;b&gt;upstream&lt;/b&gt; broke", `<td class="num">3</td>`,
				"condition success unmet by status failed")
			r.lacks(t, "<b>upstream</b>")
		})
	}
	// No deliveries, no section.
	e.get(e.client(alice), fmt.Sprintf("/~alice/job/%d", quiet.ID)).lacks(t, "<h2>Triggers</h2>")
}
