package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"builds/app"
)

// completeMarker is what a task's wrapper prints on the session's stderr
// when the task called complete-build. The task's own stderr goes to
// stdout (2>&1), so a task cannot print it there by accident.
const completeMarker = "BUILDS-COMPLETE-BUILD"

// runTasks runs the tasks in order, each in a fresh session. After a
// failure later tasks stay pending; after complete-build they are skipped.
func (r *jobRun) runTasks() error {
	scripts := map[string]bool{}
	for _, t := range r.m.Tasks {
		scripts[t.Name] = true
	}
	for _, t := range r.tasks {
		if !scripts[t.Name] {
			return fmt.Errorf("task %s is not in the manifest", t.Name)
		}
		r.logf("Running task %s", t.Name)
		if err := r.srv.SetTaskStatus(r.dbCtx(), r.job.ID, t, app.TaskRunning); err != nil {
			return fmt.Errorf("update task %s: %w", t.Name, err)
		}
		complete, err := r.runTask(t)
		st := app.TaskSuccess
		switch {
		case err != nil && errors.Is(context.Cause(r.ctx), errCancelled):
			st = app.TaskCancelled
		case err != nil:
			st = app.TaskFailed
		}
		if serr := r.srv.SetTaskStatus(context.WithoutCancel(r.dbCtx()), r.job.ID, t, st); serr != nil && err == nil {
			err = fmt.Errorf("update task %s: %w", t.Name, serr)
		}
		if err != nil {
			return err
		}
		if complete {
			r.logf("complete-build was called; skipping the remaining tasks")
			if err := r.srv.SkipRemainingTasks(r.dbCtx(), r.job.ID); err != nil {
				return fmt.Errorf("skip tasks: %w", err)
			}
			for _, rest := range r.tasks {
				if rest.Status == app.TaskPending {
					rest.Status = app.TaskSkipped
				}
			}
			return nil
		}
	}
	return nil
}

// runTask runs one task with its output in the task's log. It reports
// whether the task called complete-build.
func (r *jobRun) runTask(t *app.Task) (bool, error) {
	lf, err := r.srv.OpenLog(r.job.ID, t.Name, r.mask)
	if err != nil {
		return false, err
	}
	defer lf.Close()
	ctx, cancel := context.WithCancelCause(r.ctx)
	defer cancel(nil)
	lf.SetLimit(r.cfg.Limits.LogSize, func() { cancel(app.ErrLogLimit) })
	// A header first: a running task's log is never empty.
	lf.Printf("Running task %s", t.Name)

	stderr := &markerWriter{log: lf}
	cmd := fmt.Sprintf(`./.tasks/%s 2>&1; rc=$?; if [ $rc -eq 0 ] && [ "$(cat ~/.complete-build 2>/dev/null)" = 1 ]; then echo %s >&2; fi; exit $rc`,
		t.Name, completeMarker)
	st, err := runCommand(ctx, r.guest.Client(), cmd, nil, lf, stderr)
	stderr.flush()
	switch {
	case errors.Is(context.Cause(ctx), app.ErrLogLimit) && r.ctx.Err() == nil:
		return false, fmt.Errorf("task %s: its log exceeded %s ([limits] log-size)", t.Name, app.HumanSize(lf.Limit()))
	case err != nil:
		if cause := context.Cause(r.ctx); cause != nil {
			if errors.Is(cause, errCancelled) {
				lf.Printf("%s", withBy("Cancelled", cause))
			}
			return false, cause
		}
		return false, fmt.Errorf("task %s: %w", t.Name, err)
	case st != 0:
		return false, &exitError{what: "task " + t.Name, status: st}
	}
	return stderr.complete, nil
}

// markerWriter takes the task session's stderr: it recognises the
// complete-build marker and passes anything else on to the task log.
type markerWriter struct {
	log      *app.LogWriter
	mu       sync.Mutex
	buf      []byte
	complete bool
}

func (w *markerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = eachLine(w.buf, p, w.line)
	return len(p), nil
}

func (w *markerWriter) line(l []byte) {
	if string(bytes.TrimSpace(l)) == completeMarker {
		w.complete = true
		return
	}
	w.log.Write(l)
}

func (w *markerWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(w.buf)
		w.buf = nil
	}
}

// uploadArtifacts copies the manifest's artifacts out of the guest into
// the artifact store (behaviour.md §1.9). A build listing more than
// [limits] artifacts-per-job uploads none and says so.
func (r *jobRun) uploadArtifacts() error {
	arts := r.m.Artifacts
	if len(arts) == 0 {
		return nil
	}
	if err := r.cfg.Limits.CheckArtifactCount(len(arts)); err != nil {
		r.logf("Error: %s", app.ErrorMessage(err))
		return nil
	}
	for _, a := range arts {
		r.logf("Uploading %s", a)
		if err := r.uploadArtifact(a); err != nil {
			return err
		}
	}
	return nil
}

func (r *jobRun) uploadArtifact(guest string) error {
	p := guestPath(guest)
	size, err := r.artifactSize(guest, p)
	if err != nil {
		return err
	}
	if err := r.cfg.Limits.CheckArtifactSize(guest, size); err != nil {
		return errors.New(app.ErrorMessage(err))
	}
	w, err := r.srv.NewArtifact(r.dbCtx(), r.job.ID, guest)
	if err != nil {
		return fmt.Errorf("store artifact %s: %s", guest, app.ErrorMessage(err))
	}
	// the copy stops as soon as the artifact outgrows the limit
	ctx, cancel := context.WithCancelCause(r.ctx)
	defer cancel(nil)
	out := writerFunc(func(b []byte) (int, error) {
		n, err := w.Write(b)
		if w.TooLarge() {
			cancel(app.ErrLogLimit)
		}
		return n, err
	})
	st, err := runCommand(ctx, r.guest.Client(), "cat -- "+p, nil, out, r.setup)
	switch {
	case w.TooLarge():
		w.Abort()
		if cause := context.Cause(r.ctx); cause != nil {
			return cause
		}
		return fmt.Errorf("artifact %s grew past the %s allowed per artifact ([limits] artifact-size) while it was copied", guest, app.HumanSize(r.cfg.Limits.ArtifactSize))
	case err != nil:
		w.Abort()
		if cause := context.Cause(r.ctx); cause != nil {
			return cause
		}
		return fmt.Errorf("copy artifact %s: %w", guest, err)
	case st != 0:
		w.Abort()
		return &exitError{what: "copy artifact " + guest, status: st}
	}
	a, err := w.Commit(r.dbCtx())
	if err != nil {
		return fmt.Errorf("record artifact %s: %w", guest, err)
	}
	r.logf("Uploaded %s (%s): %s", a.Name, app.HumanSize(a.Size), r.cfg.ArtifactURL(a))
	return nil
}

// writerFunc is an io.Writer made of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// artifactSize checks that an artifact is a regular file and returns its
// size.
func (r *jobRun) artifactSize(guest, p string) (int64, error) {
	var out bytes.Buffer
	cmd := fmt.Sprintf(`if [ ! -f %[1]s ]; then echo "not a regular file" >&2; exit 1; fi; wc -c < %[1]s`, p)
	st, err := runCommand(r.ctx, r.guest.Client(), cmd, nil, &out, r.setup)
	if err != nil {
		if cause := context.Cause(r.ctx); cause != nil {
			return 0, cause
		}
		return 0, fmt.Errorf("artifact %s: %w", guest, err)
	}
	if st != 0 {
		return 0, fmt.Errorf("artifact %s is not a regular file in the guest (relative paths start at the build user's home)", guest)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("artifact %s: unexpected size %q", guest, out.String())
	}
	return n, nil
}
