package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"builds/app"
)

// runRepo implements "builds repo add|list|set|rm". ctx acts as the system;
// each command acts as the named user, so the Service's rules apply to
// what they own (and local repository paths are accepted, as from an
// administrator).
func runRepo(ctx context.Context, svc *app.Service, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("repo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "owner of the repository")
	kind := fs.String("kind", "", "github, gitlab, forgejo, gitea or git")
	cloneURL := fs.String("url", "", "clone URL")
	name := fs.String("name", "", "name in tags (default: the URL's last part)")
	deployKey := fs.String("deploy-key", "", "ssh_key secret (UUID or name) for private repositories")
	tokenStdin := fs.Bool("token-stdin", false, "read an access token for private HTTPS repositories from standard input")
	branches := fs.String("branches", "", "space-separated branch patterns to build (default: all)")
	visibility := fs.String("visibility", "", "PUBLIC, UNLISTED (default) or PRIVATE")
	pulls := fs.Bool("pull-requests", false, "build pull (merge) requests; fork ones get no secrets")
	schedule := fs.String("schedule", "", `cron schedule building the default branch (or --branches), e.g. "0 3 * * *" (UTC); "" = none`)
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("repo: want add, list, set or rm")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *user == "" {
		return usagef("repo %s: --user is required", pos[0])
	}
	as, err := actAs(ctx, svc, *user)
	if err != nil {
		return err
	}
	switch pos[0] {
	case "add":
		if len(pos) > 1 {
			return usagef("repo add: unexpected argument %q", pos[1])
		}
		in := app.RepoInput{Kind: app.ForgeKind(*kind), CloneURL: *cloneURL, Name: *name, DeployKey: *deployKey,
			Branches: strings.Fields(*branches), Visibility: app.Visibility(strings.ToUpper(*visibility)),
			PullRequests: *pulls, Schedule: *schedule}
		if *tokenStdin {
			b, err := io.ReadAll(io.LimitReader(stdin, 4096))
			if err != nil {
				return fmt.Errorf("read token: %w", err)
			}
			in.Token = strings.TrimSpace(string(b))
		}
		r, err := svc.CreateRepository(as, in)
		if err != nil {
			return err
		}
		hookURL := strings.TrimRight(svc.Config.Builds.Origin, "/") + r.WebhookPath()
		fmt.Fprintf(stdout, "repository %s connected\n", r.Name)
		fmt.Fprintf(stdout, "webhook URL:    %s\n", hookURL)
		fmt.Fprintf(stdout, "webhook secret: %s\n", r.WebhookSecret)
		if r.Kind == app.ForgeGit {
			fmt.Fprintln(stdout, "(the secret is shown only now)")
			fmt.Fprintln(stdout)
			fmt.Fprint(stdout, hookInstructions(r, hookURL))
		} else {
			fmt.Fprintln(stdout, "(the secret is shown only now; see the README for where each forge wants them)")
		}
		return nil
	case "list":
		repos, err := svc.Repositories(as)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tURL\tBRANCHES\tVISIBILITY\tPULLS\tWEBHOOK\tSCHEDULE")
		for _, r := range repos {
			br := strings.Join(r.Branches, " ")
			if br == "" {
				br = "*"
			}
			sched := r.Schedule
			if sched == "" {
				sched = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, r.CloneURL, br, r.Visibility, yesNo(r.PullRequests), r.WebhookPath(), sched)
		}
		return tw.Flush()
	case "set":
		if len(pos) != 2 {
			return usagef("repo set: want one repository name")
		}
		var upd app.RepoUpdate
		for name := range set {
			switch name {
			case "user":
			case "pull-requests":
				upd.PullRequests = pulls
			case "schedule":
				upd.Schedule = schedule
			default:
				return usagef("repo set: --%s cannot be changed (remove and add the repository again)", name)
			}
		}
		if upd == (app.RepoUpdate{}) {
			return usagef("repo set: nothing to change (--pull-requests=true|false, --schedule CRON)")
		}
		r, err := svc.UpdateRepository(as, pos[1], upd)
		if err != nil {
			return err
		}
		sched := "no schedule"
		if r.Schedule != "" {
			sched = "schedule " + r.Schedule
		}
		fmt.Fprintf(stdout, "repository %s: pull requests %s, %s\n", r.Name, map[bool]string{true: "built", false: "not built"}[r.PullRequests], sched)
		return nil
	case "rm":
		if len(pos) != 2 {
			return usagef("repo rm: want one repository name")
		}
		r, err := svc.DeleteRepository(as, pos[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "repository %s disconnected\n", r.Name)
		return nil
	}
	return usagef("repo: unknown subcommand %q (want add, list, set or rm)", pos[0])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// runSubmitRepo implements "builds submit-repo --user U REPO [REF]": the
// tip of a branch (or a tag or commit; default the default branch) is
// built as a push of it would be.
func runSubmitRepo(ctx context.Context, svc *app.Service, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("submit-repo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "owner of the repository")
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usagef("submit-repo: want REPO [REF]")
	}
	if *user == "" {
		return usagef("submit-repo: --user is required")
	}
	as, err := actAs(ctx, svc, *user)
	if err != nil {
		return err
	}
	rev := ""
	if len(pos) == 2 {
		rev = pos[1]
	}
	res, err := svc.BuildRepository(as, pos[0], rev)
	if err != nil {
		return err
	}
	return printPushResult(svc, res, stdout)
}

// printPushResult prints what a push or manual build started.
func printPushResult(svc *app.Service, res *app.PushResult, stdout io.Writer) error {
	if res.Group == nil {
		fmt.Fprintln(stdout, res.Message)
		return nil
	}
	fmt.Fprintf(stdout, "job group %d submitted for %s at %s\n", res.Group.ID, res.Push.Ref, res.Push.Commit)
	for _, j := range res.Jobs {
		owner := ""
		if u, err := svc.User(app.SystemContext(context.Background()), j.OwnerID); err == nil {
			owner = u.Username
		}
		fmt.Fprintln(stdout, svc.Config.JobURL(owner, j.ID))
	}
	return nil
}

// actAs is ctx acting as the named user with the system's rights.
func actAs(ctx context.Context, svc *app.Service, name string) (context.Context, error) {
	u, err := svc.UserByName(ctx, strings.TrimPrefix(name, "~"))
	if app.ErrorCode(err) == app.ENOTFOUND {
		return nil, fmt.Errorf("no such user %q", name)
	} else if err != nil {
		return nil, fmt.Errorf("find user: %w", err)
	}
	return app.NewContextWithAuth(ctx, &app.Auth{Kind: app.AuthSystem, User: u}), nil
}
