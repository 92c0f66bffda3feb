package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// LogPath returns where a job's log lives under the data dir: the setup log
// for task "" and a task's log otherwise. Task names are validated by the
// manifest parser ([a-z0-9_-]), so they cannot escape the directory.
func LogPath(dataDir string, jobID int64, task string) string {
	dir := filepath.Join(dataDir, "logs", fmt.Sprint(jobID))
	if task == "" {
		return filepath.Join(dir, "log")
	}
	return filepath.Join(dir, task, "log")
}

// LogHub lets readers follow logs that are still being written. Writers
// append to the log file and call Notify; readers read the file from their
// own offset and call Wait for more. A slow reader therefore never holds up
// a writer: the file is the buffer and the hub only carries wake-ups.
type LogHub struct {
	mu    sync.Mutex
	logs  map[logKey]*logState
	masks map[int64]*Masker // of jobs whose setup log is open
}

// setMask records the secrets of a job while its setup log is open (nil
// forgets them).
func (h *LogHub) setMask(jobID int64, m *Masker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m == nil {
		delete(h.masks, jobID)
		return
	}
	if h.masks == nil {
		h.masks = map[int64]*Masker{}
	}
	h.masks[jobID] = m
}

// mask returns the secrets of a running job, nil if none are known.
func (h *LogHub) mask(jobID int64) *Masker {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.masks[jobID]
}

type logState struct {
	size   int64
	closed bool
	opened bool // by a writer (Open), not only announced (Notify)
	// wake is closed on the next change; it is made only when a reader
	// waits, so a writer's Notify with nobody waiting costs no allocation.
	wake chan struct{}
}

// logKey names one log in the hub.
type logKey struct {
	jobID int64
	task  string
}

func (h *LogHub) state(key logKey) *logState {
	if h.logs == nil {
		h.logs = map[logKey]*logState{}
	}
	st := h.logs[key]
	if st == nil {
		st = &logState{}
		h.logs[key] = st
	}
	return st
}

// wakeAll wakes the readers waiting on the log.
func (st *logState) wakeAll() {
	if st.wake != nil {
		close(st.wake)
		st.wake = nil
	}
}

// Open marks a log as live (being written).
func (h *LogHub) Open(jobID int64, task string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.state(logKey{jobID, task})
	st.closed, st.opened = false, true
}

// Notify records that the log now has size bytes and wakes its readers.
func (h *LogHub) Notify(jobID int64, task string, size int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.state(logKey{jobID, task})
	st.size = size
	st.wakeAll()
}

// Close marks a log as complete and wakes its readers; later Waits return
// at once.
func (h *LogHub) Close(jobID int64, task string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.state(logKey{jobID, task})
	st.closed = true
	st.wakeAll()
}

// Forget drops the hub's state for a finished job's log, waking readers
// still waiting on it so they see it is gone.
func (h *LogHub) Forget(jobID int64, task string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := logKey{jobID, task}
	if st := h.logs[key]; st != nil {
		st.wakeAll()
	}
	delete(h.logs, key)
}

// Live reports whether the log is open for writing.
func (h *LogHub) Live(jobID int64, task string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.logs[logKey{jobID, task}]
	return st != nil && !st.closed
}

// Writing reports whether a writer holds the log open: a runner's job
// (its setup log stays open until the VM is gone, a failed job's kept VM
// included). Lines appended by SetupLogf alone do not count.
func (h *LogHub) Writing(jobID int64, task string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.logs[logKey{jobID, task}]
	return st != nil && st.opened && !st.closed
}

// Wait blocks until the log grows beyond offset, is closed, or ctx ends.
// It reports whether the log may still grow (false once closed or unknown).
func (h *LogHub) Wait(ctx context.Context, jobID int64, task string, offset int64) bool {
	h.mu.Lock()
	st := h.logs[logKey{jobID, task}]
	if st == nil || st.closed {
		h.mu.Unlock()
		return false
	}
	if st.size > offset {
		h.mu.Unlock()
		return true
	}
	if st.wake == nil {
		st.wake = make(chan struct{})
	}
	wake := st.wake
	h.mu.Unlock()
	select {
	case <-wake:
		return h.Live(jobID, task) || h.size(jobID, task) > offset
	case <-ctx.Done():
		return false
	}
}

func (h *LogHub) size(jobID int64, task string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.logs[logKey{jobID, task}]; st != nil {
		return st.size
	}
	return 0
}

// LogSize returns the size of a log file, 0 if it does not exist.
func LogSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
