package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"builds/app"
)

func TestSlots(t *testing.T) {
	// IdlePoll is an hour in the harness: jobs only start because the
	// submit wakes the pool.
	h := newHarness(t, func(c *app.Config) { c.Runner.Slots = 2 })
	flags := t.TempDir()
	var ids []int64
	for i := 0; i < 3; i++ {
		job := h.submit(fmt.Sprintf("image: debian/stable\ntasks:\n  - wait: while [ ! -e %s/go%d ]; do sleep 0.02; done\n", flags, i))
		ids = append(ids, job.ID)
	}
	running := func() int {
		jobs, err := h.db.FindJobsByStatus(context.Background(), []app.JobStatus{app.JobRunning})
		if err != nil {
			t.Fatal(err)
		}
		return len(jobs)
	}
	h.waitFor("two running jobs", func() bool { return running() == 2 })
	time.Sleep(300 * time.Millisecond)
	if n := running(); n != 2 {
		t.Fatalf("%d jobs running with 2 slots", n)
	}
	third, _ := h.db.FindJobByID(context.Background(), ids[2])
	if third.Status != app.JobQueued {
		t.Fatalf("third job is %s, want queued", third.Status)
	}
	os.WriteFile(filepath.Join(flags, "go0"), nil, 0o644)
	h.wait(ids[0])
	h.waitFor("third job to start", func() bool {
		j, _ := h.db.FindJobByID(context.Background(), ids[2])
		return j.Status == app.JobRunning
	})
	os.WriteFile(filepath.Join(flags, "go1"), nil, 0o644)
	os.WriteFile(filepath.Join(flags, "go2"), nil, 0o644)
	for _, id := range ids {
		if j := h.wait(id); j.Status != app.JobSuccess {
			t.Errorf("job %d: %s", id, j.Status)
		}
	}
}

func TestSlotsZeroOnlyRecovers(t *testing.T) {
	h := newHarness(t, func(c *app.Config) { c.Runner.Slots = 0 })
	job := h.submit("image: debian/stable\ntasks:\n  - a: \"true\"\n")
	time.Sleep(200 * time.Millisecond)
	if j, _ := h.db.FindJobByID(context.Background(), job.ID); j.Status != app.JobQueued {
		t.Fatalf("status = %s with the runner disabled", j.Status)
	}
}

// TestSlowReaders checks that readers stalled in the middle of a log never
// hold up the job, and still get every byte afterwards.
func TestSlowReaders(t *testing.T) {
	h := newHarness(t)
	job := h.submit("image: debian/stable\ntasks:\n  - big: |\n      set +x\n      for i in $(seq 1 200000); do echo \"line $i of the big task\"; done\n")
	h.waitLog(job.ID, "big", "line 1 of")

	// Reader 1 follows the file through the LogHub, stalling after its
	// first read until the job is over.
	resume := make(chan struct{})
	got1 := make(chan []byte, 1)
	go func() {
		path := h.svc.LogPath(job.ID, "big")
		var data []byte
		var off int64
		first := true
		for {
			b := readFrom(path, off)
			data = append(data, b...)
			off += int64(len(b))
			if first {
				first = false
				<-resume
			}
			if len(b) == 0 && !h.svc.Logs.Wait(context.Background(), job.ID, "big", off) {
				data = append(data, readFrom(path, off)...)
				got1 <- data
				return
			}
		}
	}()
	// Reader 2 is the SSH tail, writing into a pipe nobody drains yet.
	pr, pw := io.Pipe()
	r := h.pool.job(job.ID)
	if r == nil {
		t.Fatal("job not running")
	}
	go func() {
		followLogs(context.Background(), pw, h.pool.srv, job.ID, []string{"big"}, r.finished)
		pw.Close()
	}()

	got := h.wait(job.ID)
	if got.Status != app.JobSuccess {
		t.Fatalf("status = %s", got.Status)
	}
	close(resume)
	tail, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	file := h.log(job.ID, "big")
	if len(file) < 200000*20 || !strings.HasSuffix(file, "line 200000 of the big task\n") {
		t.Fatalf("task log incomplete: %d bytes", len(file))
	}
	if b := <-got1; string(b) != file {
		t.Errorf("hub reader got %d bytes, file has %d", len(b), len(file))
	}
	if !strings.Contains(string(tail), "[big] line 200000 of the big task\n") || !strings.Contains(string(tail), "Running task big") {
		t.Errorf("tail output incomplete (%d bytes): ...%s", len(tail), tail[max(0, len(tail)-200):])
	}
}

func readFrom(path string, off int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, 1<<20)
	n, _ := f.ReadAt(b, off)
	return b[:n]
}

func TestStandbyFreesSlot(t *testing.T) {
	h := newHarness(t, func(c *app.Config) { c.Runner.Slots = 1; c.Runner.FailedKeepalive = 10 * time.Minute })
	failed := h.submit("image: debian/stable\ntasks:\n  - a: \"false\"\n")
	h.waitLog(failed.ID, "", "After logging in, the deadline is increased")
	next := h.submit("image: debian/stable\ntasks:\n  - a: \"true\"\n")
	if got := h.wait(next.ID); got.Status != app.JobSuccess {
		t.Fatalf("next job: %s", got.Status)
	}
	if h.pool.job(failed.ID) == nil {
		t.Fatal("failed job's standby ended early")
	}
	h.pool.stopRun(failed.ID)
	h.wait(failed.ID)
}
