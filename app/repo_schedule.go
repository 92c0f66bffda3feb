package app

// Schedules: a repository may build its default branch's tip (or its
// configured branches' tips) at times a cron schedule names, which
// builds.sr.ht lacks (its users fall back on crontab). The server runs
// one Scheduler; a run missed while it was down runs once when it starts.

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// MaxScheduledBranches bounds the branches one scheduled run builds, when
// the repository's branch patterns match many.
const MaxScheduledBranches = 10

// schedulerPoll is the longest the scheduler sleeps: schedules changed by
// the command line (another process) are seen within it.
const schedulerPoll = time.Minute

// cronFields names the five fields of a schedule, for errors.
var cronFields = [5]string{"minute", "hour", "day of month", "month", "day of week"}

// ParseSchedule parses cron text: five fields (minute, hour, day of
// month, month, day of week) or a descriptor such as @daily, in UTC
// unless it starts with CRON_TZ=Area/City. A field the parser refuses is
// named in the error (EINVALID), and runs less than a minute apart
// (@every 10s) are refused.
func ParseSchedule(text string) (cron.Schedule, error) {
	text = strings.TrimSpace(text)
	if len(text) > 200 {
		return nil, Errorf(EINVALID, "invalid schedule: longer than 200 characters")
	}
	if text == "" {
		return nil, Errorf(EINVALID, "invalid schedule: empty (want minute, hour, day of month, month and day of week, or @daily, @weekly...)")
	}
	spec := text
	if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
		spec = "CRON_TZ=UTC " + spec
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, Errorf(EINVALID, "invalid schedule %q: %s", text, scheduleFieldError(text, err))
	}
	first := sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	if first.IsZero() {
		return nil, Errorf(EINVALID, "invalid schedule %q: it never runs", text)
	}
	if second := sched.Next(first); !second.IsZero() && second.Sub(first) < time.Minute {
		return nil, Errorf(EINVALID, "invalid schedule %q: runs must be at least a minute apart", text)
	}
	return sched, nil
}

// scheduleFieldError names the first of five fields the parser refuses
// on its own, with the parser's error; other errors (the number of
// fields, descriptors, time zones) are the parser's as they are.
func scheduleFieldError(text string, err error) string {
	f := strings.Fields(text)
	if len(f) != 5 || strings.HasPrefix(text, "@") {
		return err.Error()
	}
	for i := range f {
		probe := []string{"*", "*", "*", "*", "*"}
		probe[i] = f[i]
		if _, ferr := cron.ParseStandard(strings.Join(probe, " ")); ferr != nil {
			return fmt.Sprintf("%s field %q: %v", cronFields[i], f[i], ferr)
		}
	}
	return err.Error()
}

// Scheduler builds repositories on their schedules (StartScheduler).
type Scheduler struct {
	svc *Service
	// After is time.After; tests replace it (and the Service's Now) to
	// drive the loop by an injected clock.
	After func(time.Duration) <-chan time.Time
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// NewScheduler returns a Scheduler of s, not started.
func (s *Service) NewScheduler() *Scheduler {
	return &Scheduler{svc: s, After: time.After}
}

// StartScheduler starts building repositories on their schedules until
// Close: every schedule due is run now, then each at its next time.
func (s *Service) StartScheduler(ctx context.Context) *Scheduler {
	sc := s.NewScheduler()
	sc.Start(ctx)
	return sc
}

// Start runs the loop in the background.
func (sc *Scheduler) Start(ctx context.Context) {
	ctx, sc.stop = context.WithCancel(context.WithoutCancel(ctx))
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		for {
			now := sc.svc.now()
			next := sc.RunDue(ctx, now)
			wait := schedulerPoll
			if !next.IsZero() && next.Sub(now) < wait {
				wait = next.Sub(now)
			}
			select {
			case <-ctx.Done():
				return
			case <-sc.After(wait):
			}
		}
	}()
}

// Close stops the scheduler, waiting for a run in progress.
func (sc *Scheduler) Close() error {
	if sc.stop != nil {
		sc.stop()
	}
	sc.wg.Wait()
	return nil
}

// RunDue builds every repository whose schedule named a time after its
// last run and not after now, once however many such times passed, and
// returns the earliest next time of all schedules (zero if none).
func (sc *Scheduler) RunDue(ctx context.Context, now time.Time) time.Time {
	s := sc.svc
	repos, err := s.Store.FindScheduledRepositories(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Error("scheduler: find scheduled repositories", "err", err)
		}
		return time.Time{}
	}
	var earliest time.Time
	for _, r := range repos {
		sched, err := ParseSchedule(r.Schedule)
		if err != nil {
			s.Log.Warn("scheduler: repository has an invalid schedule", "repo_id", r.ID, "err", ErrorMessage(err))
			continue
		}
		last := r.Created
		if r.ScheduleLast != nil {
			last = *r.ScheduleLast
		}
		if due := sched.Next(last); !due.IsZero() && !due.After(now) {
			sc.run(ctx, r, now)
		}
		if next := sched.Next(now); !next.IsZero() && (earliest.IsZero() || next.Before(earliest)) {
			earliest = next
		}
	}
	return earliest
}

// run records the run first (a failing build is not retried until the
// next time), then builds the repository's branches as its owner.
func (sc *Scheduler) run(ctx context.Context, r *Repo, now time.Time) {
	s := sc.svc
	if err := s.Store.UpdateRepository(ctx, r.ID, RepoUpdate{ScheduleLast: &now}); err != nil {
		s.Log.Error("scheduler: record run", "repo_id", r.ID, "err", err)
		return
	}
	owner, err := s.Store.FindUserByID(ctx, r.OwnerID)
	if err != nil {
		s.Log.Error("scheduler: find owner", "repo_id", r.ID, "err", err)
		return
	}
	as := NewContextWithAuth(ctx, &Auth{Kind: AuthSystem, User: owner})
	revs, err := s.scheduledRevs(ctx, r)
	if err != nil {
		s.Log.Warn("scheduled build failed", "repo_id", r.ID, "repo", r.Name, "err", ErrorMessage(err))
		return
	}
	for _, rev := range revs {
		res, err := s.buildRepository(as, r.Name, rev, "schedule")
		switch {
		case err != nil:
			s.Log.Warn("scheduled build failed", "repo_id", r.ID, "repo", r.Name, "rev", rev, "err", ErrorMessage(err))
		case res.Group == nil:
			s.Log.Info("scheduled build: nothing built", "repo_id", r.ID, "repo", r.Name, "rev", rev, "message", res.Message)
		default:
			s.Log.Info("scheduled build", "repo_id", r.ID, "repo", r.Name, "rev", rev, "group_id", res.Group.ID)
		}
	}
}

// scheduledRevs are what a scheduled run builds: the default branch
// ("" = HEAD), or the repository's branches: names as they are, patterns
// matched against the branches the repository has, at most
// MaxScheduledBranches in all.
func (s *Service) scheduledRevs(ctx context.Context, r *Repo) ([]string, error) {
	if len(r.Branches) == 0 {
		return []string{""}, nil
	}
	var revs []string
	var have []string
	seen := map[string]bool{}
	for _, p := range r.Branches {
		if !strings.ContainsAny(p, `*?[\`) {
			if !seen[p] {
				seen[p] = true
				revs = append(revs, "refs/heads/"+p)
			}
			continue
		}
		if have == nil {
			list, err := s.listBranches(ctx, r)
			if err != nil {
				return nil, err
			}
			have = append(list, "") // non-nil: listed once
		}
		for _, b := range have {
			if ok, _ := path.Match(p, b); ok && b != "" && !seen[b] {
				seen[b] = true
				revs = append(revs, "refs/heads/"+b)
			}
		}
	}
	if len(revs) > MaxScheduledBranches {
		s.Log.Warn("scheduler: too many branches, building the first ones", "repo_id", r.ID, "branches", len(revs), "built", MaxScheduledBranches)
		revs = revs[:MaxScheduledBranches]
	}
	return revs, nil
}
