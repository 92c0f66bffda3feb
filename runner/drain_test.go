package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	"builds/app"
)

// TestDrain: a graceful stop lets a job that finishes within [runner]
// shutdown-grace succeed, cancels the one still running after it with the
// reason in its log, and leaves the queued job queued for the next start.
func TestDrain(t *testing.T) {
	h := newHarness(t, func(c *app.Config) { c.Runner.Slots = 2 })
	short := h.submit("image: test\ntasks:\n  - a: |\n      echo start\n      sleep 1\n      echo done\n")
	long := h.submit("image: test\ntasks:\n  - b: |\n      echo long\n      sleep 300\n")
	h.waitLog(short.ID, "a", "start")
	h.waitLog(long.ID, "b", "long")
	queued := h.submit("image: test\ntasks:\n  - c: echo never\n")

	start := time.Now()
	if n := h.pool.Drain(4 * time.Second); n != 1 {
		t.Errorf("Drain cancelled %d jobs, want 1", n)
	}
	if took := time.Since(start); took > 40*time.Second {
		t.Errorf("Drain took %s", took)
	}
	if j := h.wait(short.ID); j.Status != app.JobSuccess {
		t.Errorf("short job %s (%s)", j.Status, j.Reason)
	}
	j := h.wait(long.ID)
	if j.Status != app.JobCancelled || !strings.Contains(j.Reason, "shutdown-grace (4s)") {
		t.Errorf("long job %s (%s)", j.Status, j.Reason)
	}
	if log := h.log(long.ID, ""); !strings.Contains(log, "did not finish within [runner] shutdown-grace") {
		t.Errorf("setup log of the cancelled job:\n%s", log)
	}
	h.pool.Close()
	if q, err := h.db.FindJobByID(context.Background(), queued.ID); err != nil || q.Status != app.JobQueued {
		t.Errorf("queued job: %v %v", q.Status, err)
	}
}
