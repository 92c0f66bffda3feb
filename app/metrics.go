package app

import (
	"context"
	"fmt"
	"time"
)

// Metrics receives what the Service and the adapters measure as they
// work. The metrics package implements it for Prometheus; without it
// (metrics off, tests, CLI commands) NopMetrics drops everything.
// Implementations must be cheap and must not block: they are called on
// the log write path and per HTTP request.
type Metrics interface {
	// JobStarted is a job claimed by a runner, wait after its submission.
	JobStarted(wait time.Duration)
	// VMStarted is a job's guest ready to use: how it started ("boot",
	// "snapshot", "warm" or "layer") and how long that took.
	VMStarted(how string, took time.Duration)
	// VMRunning counts job guests up (+1) and gone (-1).
	VMRunning(delta int)
	// LogBytes is n bytes appended to a job's log.
	LogBytes(n int)
	// ArtifactBytes is an artifact of n bytes stored.
	ArtifactBytes(n int64)
	// Delivery is one attempt at a trigger or webhook: kind is
	// "email", "webhook" (manifest and group triggers) or "user_webhook";
	// outcome is what was recorded ("sent", "failed", "skipped",
	// "delivered", "retry").
	Delivery(kind, outcome string)
	// HTTPRequest is one HTTP request of a route class answered.
	HTTPRequest(route string, took time.Duration)
	// GraphQLError is one error in a GraphQL answer, by its code.
	GraphQLError(code string)
}

// NopMetrics is the Metrics that records nothing.
type NopMetrics struct{}

func (NopMetrics) JobStarted(time.Duration)          {}
func (NopMetrics) VMStarted(string, time.Duration)   {}
func (NopMetrics) VMRunning(int)                     {}
func (NopMetrics) LogBytes(int)                      {}
func (NopMetrics) ArtifactBytes(int64)               {}
func (NopMetrics) Delivery(string, string)           {}
func (NopMetrics) HTTPRequest(string, time.Duration) {}
func (NopMetrics) GraphQLError(string)               {}

// JobStats is what the metrics endpoint reads from the database at each
// scrape.
type JobStats struct {
	ByStatus     map[JobStatus]int64 // every status, 0 included
	OldestQueued *time.Time          // submission time of the oldest queued job
}

// JobStats counts jobs by status and finds the oldest queued one; it is
// for the metrics endpoint, which has no user (the system's authority).
func (s *Service) JobStats(ctx context.Context) (*JobStats, error) {
	st, err := s.Store.CountJobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("job stats: %w", err)
	}
	return st, nil
}

// jobStarted reports the queue wait of a job that just went running
// (the state machine calls it on every move to running).
func (s *Service) jobStarted(job *Job) {
	if job.Started != nil {
		s.Metrics.JobStarted(job.Started.Sub(job.Created))
	}
}
