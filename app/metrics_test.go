package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"builds/app"
)

// countMetrics is an app.Metrics that adds up what it is told.
type countMetrics struct {
	app.NopMetrics
	mu                 sync.Mutex
	logBytes, artBytes int64
	started            []time.Duration
	deliveries         map[string]int
}

func (m *countMetrics) LogBytes(n int) { m.mu.Lock(); m.logBytes += int64(n); m.mu.Unlock() }
func (m *countMetrics) ArtifactBytes(n int64) {
	m.mu.Lock()
	m.artBytes += n
	m.mu.Unlock()
}
func (m *countMetrics) JobStarted(d time.Duration) {
	m.mu.Lock()
	m.started = append(m.started, d)
	m.mu.Unlock()
}
func (m *countMetrics) Delivery(kind, outcome string) {
	m.mu.Lock()
	m.deliveries[kind+"/"+outcome]++
	m.mu.Unlock()
}

// TestMetricsCounted: the Service reports log bytes (runner writes and
// SetupLogf lines), stored artifact bytes, each job's queue wait once
// when it starts, and trigger deliveries by outcome; JobStats counts jobs
// by status.
func TestMetricsCounted(t *testing.T) {
	e := newEnv(t)
	m := &countMetrics{deliveries: map[string]int{}}
	e.svc.Metrics = m
	ctx := context.Background()
	job, err := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ClaimJobByID(app.SystemContext(ctx), job.ID, "local"); err != nil {
		t.Fatal(err)
	}
	l, err := e.svc.OpenLog(job.ID, "build", nil)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(l, "0123456789")
	l.Close()
	e.svc.SetupLogf(job.ID, "x")
	w, err := e.svc.NewArtifact(ctx, job.ID, "/out/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 1234))
	if _, err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	jid := job.ID
	e.svc.RecordTriggerDelivery(ctx, &app.TriggerDelivery{JobID: &jid, Action: "webhook", Status: "failed", Target: "http://x"})
	e.svc.RecordWebhookAttempt(ctx, &app.WebhookDelivery{ID: 999, State: "pending"})
	setupLine := int64(len(fmt.Sprintf("[#%d] 2006/01/02 15:04:05 x\n", job.ID)))
	if m.logBytes != 10+setupLine || m.artBytes != 1234 || len(m.started) != 1 || m.started[0] < 0 {
		t.Errorf("log %d (want %d) artifact %d started %v", m.logBytes, 10+setupLine, m.artBytes, m.started)
	}
	if m.deliveries["webhook/failed"] != 1 || m.deliveries["user_webhook/retry"] != 1 {
		t.Errorf("deliveries %v", m.deliveries)
	}
	other, _ := e.svc.Submit(e.aliceCtx, app.SubmitInput{Manifest: okManifest})
	st, err := e.svc.JobStats(ctx)
	if err != nil || st.ByStatus[app.JobRunning] != 1 || st.ByStatus[app.JobQueued] != 1 || st.ByStatus[app.JobFailed] != 0 ||
		st.OldestQueued == nil || !st.OldestQueued.Equal(other.Created) {
		t.Errorf("stats %+v %v", st, err)
	}
}
