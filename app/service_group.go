package app

import (
	"context"
	"net/mail"
	"net/url"
)

// TriggerInput is one group trigger as given to createGroup.
type TriggerInput struct {
	Action    string // "email" | "webhook"
	Condition string // "always" | "success" | "failure"
	To, Cc    string
	InReplyTo string
	URL       string
}

func validateTrigger(t TriggerInput) (*GroupTrigger, error) {
	switch t.Condition {
	case "always", "success", "failure":
	default:
		return nil, Errorf(EINVALID, "'%s' is not a valid TriggerCondition", t.Condition)
	}
	g := &GroupTrigger{Action: t.Action, Condition: t.Condition}
	switch t.Action {
	case "email":
		if t.To == "" && t.Cc == "" {
			return nil, Errorf(EINVALID, "email trigger requires 'to' or 'cc'")
		}
		for _, list := range []string{t.To, t.Cc} {
			if list == "" {
				continue
			}
			if _, err := mail.ParseAddressList(list); err != nil {
				return nil, Errorf(EINVALID, "invalid address list %q: %v", list, err)
			}
		}
		g.To, g.Cc, g.InReplyTo = t.To, t.Cc, t.InReplyTo
	case "webhook":
		u, err := url.Parse(t.URL)
		if t.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, Errorf(EINVALID, "webhook trigger requires an http or https 'url'")
		}
		g.URL = t.URL
	default:
		return nil, Errorf(EINVALID, "'%s' is not a valid TriggerAction", t.Action)
	}
	return g, nil
}

// CreateGroup groups the caller's pending jobs; unless execute is false,
// they are queued at once.
func (s *Service) CreateGroup(ctx context.Context, jobIDs []int64, triggers []TriggerInput, execute *bool, note *string) (*JobGroup, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	u, err := requireUser(ctx)
	if err != nil {
		return nil, err
	}
	if len(jobIDs) == 0 {
		return nil, Errorf(EINVALID, "a job group needs at least one job")
	}
	seen := map[int64]bool{}
	for _, id := range jobIDs {
		if seen[id] {
			return nil, Errorf(EINVALID, "job %d is listed twice", id)
		}
		seen[id] = true
	}
	var gts []*GroupTrigger
	for _, t := range triggers {
		gt, err := validateTrigger(t)
		if err != nil {
			return nil, err
		}
		gts = append(gts, gt)
	}
	if note, err = normalizeNote(note); err != nil {
		return nil, err
	}
	var queueFrom []JobStatus // nil: the jobs stay pending
	if execute == nil || *execute {
		queueFrom = sourcesOf(JobQueued)
	}
	g := &JobGroup{OwnerID: u.ID, Note: note}
	if err := s.Store.CreateGroup(ctx, g, jobIDs, gts, queueFrom); err != nil {
		return nil, err
	}
	if queueFrom != nil {
		s.groupChanged(ctx, g.ID)
	}
	return g, nil
}

// StartGroup queues the still-pending jobs of the caller's group; finished
// jobs are never re-run.
func (s *Service) StartGroup(ctx context.Context, id int64) (*JobGroup, error) {
	if err := requireGrant(ctx, ScopeJobs, RW); err != nil {
		return nil, err
	}
	g, err := s.OwnGroup(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.queueGroup(ctx, id); err != nil {
		return nil, err
	}
	return g, nil
}

// OwnGroup returns a group owned by the caller.
func (s *Service) OwnGroup(ctx context.Context, id int64) (*JobGroup, error) {
	g, err := s.Store.FindGroupByID(ctx, id)
	if err != nil || !isSystem(ctx) && (UserFromContext(ctx) == nil || UserFromContext(ctx).ID != g.OwnerID) {
		return nil, Errorf(ENOTFOUND, "Found no job group by this ID for your account")
	}
	return g, nil
}

// Group returns a job group if the caller may see at least its existence:
// its owner, or anyone who can see one of its jobs.
func (s *Service) Group(ctx context.Context, id int64) (*JobGroup, error) {
	g, err := s.Store.FindGroupByID(ctx, id)
	if err != nil {
		return nil, Errorf(ENOTFOUND, "no such job group")
	}
	return g, nil
}

// GroupJobs lists the group's jobs the caller may see.
func (s *Service) GroupJobs(ctx context.Context, g *JobGroup) ([]*Job, error) {
	jobs, err := s.Store.FindJobs(ctx, JobFilter{GroupID: &g.ID})
	if err != nil {
		return nil, err
	}
	out := []*Job{}
	for i := len(jobs) - 1; i >= 0; i-- { // oldest first
		if isOwner(ctx, jobs[i]) || jobs[i].Visibility == Public {
			out = append(out, jobs[i])
		}
	}
	return out, nil
}

// GroupTriggers lists a group's triggers (owner only; empty for others).
func (s *Service) GroupTriggers(ctx context.Context, g *JobGroup) ([]*GroupTrigger, error) {
	if !isSystem(ctx) && (UserFromContext(ctx) == nil || UserFromContext(ctx).ID != g.OwnerID) {
		return []*GroupTrigger{}, nil
	}
	return s.Store.FindGroupTriggers(ctx, g.ID)
}
