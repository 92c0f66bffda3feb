package forge_test

import (
	"strings"
	"testing"

	"builds/app"
	"builds/forge"
)

// TestParsePullRequest: each forge's pull (merge) request event, from
// fixtures written after the forges' documented payloads.
func TestParsePullRequest(t *testing.T) {
	tests := []struct {
		name, fixture, event string
		kind                 app.ForgeKind
		want                 app.PullEvent
		commitURL            string
	}{
		{"GitHubFork", "github-pull_request.json", "pull_request", app.ForgeGitHub,
			app.PullEvent{Number: 2, Ref: "refs/pull/2/head", Base: "main", Fork: true, Title: "Update the README", URL: "https://github.com/octo-org/proj/pull/2"}, ""},
		{"GitLabUpdateWithCommits", "gitlab-merge_request.json", "Merge Request Hook", app.ForgeGitLab,
			app.PullEvent{Number: 1, Ref: "refs/merge-requests/1/head", Base: "main", Title: "MS-Viewport", URL: "https://gitlab.example.com/mike/proj/-/merge_requests/1"},
			"https://gitlab.example.com/mike/proj/-/commit/" + testSHA},
		{"GiteaSynchronized", "gitea-pull_request.json", "pull_request", app.ForgeGitea,
			app.PullEvent{Number: 3, Ref: "refs/pull/3/head", Base: "main", Title: "Faster builds", URL: "https://gitea.example.org/gitea/proj/pulls/3"}, ""},
		{"ForgejoFork", "forgejo-pull_request.json", "pull_request", app.ForgeForgejo,
			app.PullEvent{Number: 4, Ref: "refs/pull/4/head", Base: "main", Fork: true, Title: "A fork's fix", URL: "https://codeberg.example.org/gitea/proj/pulls/4"}, ""},
	}
	a := &forge.Adapter{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := Fixture(t, tt.fixture, testSHA)
			ev, err := a.ParseWebhook(tt.kind, []byte(testSecret), headers(tt.kind, tt.event, "d-1", testSecret, body), body)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type != app.ForgePullRequest || ev.Commit != testSHA || ev.Ref != tt.want.Ref || ev.Delivery != "d-1" || ev.CommitURL != tt.commitURL ||
				ev.Pull == nil || *ev.Pull != tt.want {
				t.Errorf("got %+v %+v\nwant %+v", ev, ev.Pull, tt.want)
			}
		})
	}
}

// TestParsePullRequestIgnored: closing, labelling, editing, approving a
// request (and a GitLab update without new commits) build nothing.
func TestParsePullRequestIgnored(t *testing.T) {
	a := &forge.Adapter{}
	for _, tt := range []struct {
		name, fixture, event string
		kind                 app.ForgeKind
		from, to             string
	}{
		{"GitHubClosed", "github-pull_request.json", "pull_request", app.ForgeGitHub, `"action": "opened"`, `"action": "closed"`},
		{"GitHubLabeled", "github-pull_request.json", "pull_request", app.ForgeGitHub, `"action": "opened"`, `"action": "labeled"`},
		{"GitHubEdited", "github-pull_request.json", "pull_request", app.ForgeGitHub, `"action": "opened"`, `"action": "edited"`},
		{"GitLabClose", "gitlab-merge_request.json", "Merge Request Hook", app.ForgeGitLab, `"action": "update"`, `"action": "close"`},
		{"GitLabMerge", "gitlab-merge_request.json", "Merge Request Hook", app.ForgeGitLab, `"action": "update"`, `"action": "merge"`},
		{"GitLabApproved", "gitlab-merge_request.json", "Merge Request Hook", app.ForgeGitLab, `"action": "update"`, `"action": "approved"`},
		{"GitLabUpdateNoCommits", "gitlab-merge_request.json", "Merge Request Hook", app.ForgeGitLab, `"oldrev": "` + testTagObj + `",`, ``},
		{"GiteaClosed", "gitea-pull_request.json", "pull_request", app.ForgeGitea, `"action": "synchronized"`, `"action": "closed"`},
		{"GiteaLabelUpdated", "gitea-pull_request.json", "pull_request", app.ForgeGitea, `"action": "synchronized"`, `"action": "label_updated"`},
		{"ForgejoEdited", "forgejo-pull_request.json", "pull_request", app.ForgeForgejo, `"action": "opened"`, `"action": "edited"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(strings.Replace(string(Fixture(t, tt.fixture, testSHA)), tt.from, tt.to, 1))
			ev, err := a.ParseWebhook(tt.kind, []byte(testSecret), headers(tt.kind, tt.event, "d-1", testSecret, body), body)
			if err != nil || ev.Type != app.ForgeIgnored {
				t.Errorf("%+v %v", ev, err)
			}
		})
	}
}

// TestParsePullRequestRefused: payloads that do not say what to build.
func TestParsePullRequestRefused(t *testing.T) {
	a := &forge.Adapter{}
	for _, tt := range []struct {
		name  string
		kind  app.ForgeKind
		event string
		body  string
		msg   string
	}{
		{"GitHubNoPullRequest", app.ForgeGitHub, "pull_request", `{"action":"opened","number":2}`, "without pull_request"},
		{"GitHubNoHead", app.ForgeGitHub, "pull_request", `{"action":"opened","number":2,"pull_request":{"number":2,"head":{"ref":"x"}}}`, "pull_request.head.sha"},
		{"GitHubShortSHA", app.ForgeGitHub, "pull_request", `{"action":"synchronize","number":2,"pull_request":{"head":{"sha":"1f2e3d"}}}`, "head commit"},
		{"GitHubNoNumber", app.ForgeGitHub, "pull_request", `{"action":"opened","pull_request":{"head":{"sha":"` + testSHA + `"}}}`, "number"},
		{"GitHubNotJSON", app.ForgeGitHub, "pull_request", `{"action":`, "not the JSON"},
		{"GitHubNumberNotANumber", app.ForgeGitHub, "pull_request", `{"action":"opened","number":"2"}`, "not the JSON"},
		{"GitLabWrongKind", app.ForgeGitLab, "Merge Request Hook", `{"object_kind":"push","object_attributes":{"action":"open"}}`, `object_kind "push"`},
		{"GitLabNoCommit", app.ForgeGitLab, "Merge Request Hook", `{"object_kind":"merge_request","object_attributes":{"iid":1,"action":"open"}}`, "last_commit.id"},
		{"GitLabNoIID", app.ForgeGitLab, "Merge Request Hook", `{"object_kind":"merge_request","object_attributes":{"action":"reopen","last_commit":{"id":"` + testSHA + `"}}}`, "iid"},
		{"GiteaNoHead", app.ForgeGitea, "pull_request", `{"action":"opened","number":3,"pull_request":{"number":3}}`, "pull_request.head.sha"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			ev, err := a.ParseWebhook(tt.kind, []byte(testSecret), headers(tt.kind, tt.event, "d-1", testSecret, b), b)
			if err == nil {
				t.Fatalf("accepted: %+v", ev)
			}
			if app.ErrorCode(err) != app.EINVALID || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q (%s), want EINVALID with %q", err, app.ErrorCode(err), tt.msg)
			}
		})
	}
}
