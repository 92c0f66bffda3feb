package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The one writer of job logs. The runner writes its setup and task logs
// through it, and the service and notifications add their lines to a
// setup log with SetupLogf: one line prefix, one clock, one mask.

// ErrLogLimit is returned by a log's Write once it reached [limits] log-size.
var ErrLogLimit = errors.New("log size limit reached")

// LogWriter is one log of a job being written: the setup log (task "")
// or a task's log. Writes are masked, go to the file at once and wake the
// LogHub's readers, so a slow reader never holds up the guest: the file is
// the buffer. Runner lines (Printf) carry the one line prefix.
type LogWriter struct {
	hub   *LogHub
	now   func() time.Time
	jobID int64
	task  string
	limit int64   // 0 = unlimited
	over  func()  // called once when the limit is hit (stops the task)
	stats Metrics // log bytes written; nil: not counted

	mu     sync.Mutex
	f      *os.File
	size   int64
	masked *MaskWriter // nil without a mask; writes into emit
	full   bool
	closed bool
}

// logSink is a LogWriter's unmasked side, the writer its MaskWriter
// writes to (under the LogWriter's lock).
type logSink LogWriter

func (s *logSink) Write(b []byte) (int, error) {
	if err := (*LogWriter)(s).emit(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// OpenLog creates (or appends to) a job's log file and marks it live.
// Its mask (nil: none) applies to every line written to the job's setup
// log while it is open, SetupLogf's too.
func (s *Service) OpenLog(jobID int64, task string, mask *Masker) (*LogWriter, error) {
	l, err := OpenLogFile(s.Logs, s.Now, s.LogPath(jobID, task), jobID, task, mask)
	if l != nil {
		l.stats = s.Metrics
	}
	return l, err
}

// OpenLogFile opens the log file at path for writing, with hub waking its
// readers and now stamping runner lines: OpenLog for the Service's own
// logs, and a remote runner's spool of logs it sends to its server.
func OpenLogFile(hub *LogHub, now func() time.Time, path string, jobID int64, task string, mask *Masker) (*LogWriter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open log: %w", err)
	}
	hub.Open(jobID, task)
	if task == "" {
		hub.setMask(jobID, mask)
	}
	l := &LogWriter{hub: hub, now: now, jobID: jobID, task: task, f: f, size: fi.Size()}
	if mask != nil {
		l.masked = mask.NewWriter((*logSink)(l))
	}
	l.hub.Notify(jobID, task, l.size)
	return l, nil
}

// SetLimit stops the log at limit bytes (0: no limit), calling over once
// (on its own goroutine) when it is reached.
func (l *LogWriter) SetLimit(limit int64, over func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limit, l.over = limit, over
}

// Limit returns the log's size limit (0: none).
func (l *LogWriter) Limit() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// SetupLogf appends one runner line to a job's setup log, whoever writes
// it (the runner, the service, notifications): the one prefix, the
// Service's clock, and the job's secrets masked while it runs. It leaves
// the log as live or complete as it was.
func (s *Service) SetupLogf(jobID int64, format string, args ...any) {
	line := linePrefix(jobID, s.Now()) + " " + strings.TrimSuffix(fmt.Sprintf(format, args...), "\n") + "\n"
	if m := s.Logs.mask(jobID); !m.Empty() {
		line = m.maskString(line)
	}
	path := s.LogPath(jobID, "")
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	}
	if err == nil {
		var n int
		n, err = f.WriteString(line)
		s.Metrics.LogBytes(n)
		if fi, serr := f.Stat(); serr == nil {
			s.Logs.Notify(jobID, "", fi.Size())
		}
		f.Close()
	}
	if err != nil {
		s.Log.Error("append setup log", "job_id", jobID, "err", err)
	}
}

// Write masks secrets in p and appends it to the log.
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	if l.full {
		return 0, ErrLogLimit
	}
	if l.masked != nil {
		return l.masked.Write(p)
	}
	if err := l.emit(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maxCopyBuf is the largest buffer ReadFrom reads with: a task session
// delivers whatever its channel holds (up to its 2 MiB window), and
// fewer, larger writes mean fewer file writes, masking passes and
// wake-ups than io.Copy's 32 KiB.
const maxCopyBuf = 256 << 10

// ReadFrom copies r into the log until EOF or a write fails (the size
// limit); io.Copy uses it, so a session's output is read in large pieces.
// It writes what each Read returned at once: nothing waits for a buffer
// to fill. The buffer starts at 32 KiB and grows while reads fill it, so
// the many short setup commands do not each allocate the largest one.
func (l *LogWriter) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := l.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
			if n == len(buf) && len(buf) < maxCopyBuf {
				buf = make([]byte, 2*len(buf))
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// emit writes b (already masked), enforcing the size limit.
func (l *LogWriter) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var hit bool
	if l.limit > 0 && l.size+int64(len(b)) > l.limit {
		b, hit = b[:l.limit-l.size], true
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	if l.stats != nil {
		l.stats.LogBytes(n)
	}
	if hit {
		l.full = true
		msg := fmt.Sprintf("\n%s Error: this log reached the limit of %s ([limits] log-size); the task was stopped.\n",
			linePrefix(l.jobID, l.now()), HumanSize(l.limit))
		m, _ := l.f.WriteString(msg)
		l.size += int64(m)
	}
	l.hub.Notify(l.jobID, l.task, l.size)
	if err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	if hit {
		if l.over != nil {
			go l.over()
		}
		return ErrLogLimit
	}
	return nil
}

// Printf writes one runner line: "[#<id>] YYYY/MM/DD HH:MM:SS <text>".
func (l *LogWriter) Printf(format string, args ...any) {
	line := linePrefix(l.jobID, l.now()) + " " + fmt.Sprintf(format, args...)
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	l.Write([]byte(line))
}

// Flush writes out bytes the masker held back.
func (l *LogWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush()
}

func (l *LogWriter) flush() {
	if l.masked != nil && !l.full && !l.closed {
		l.masked.Flush()
	}
}

// Close flushes, closes the file and tells readers the log is complete.
func (l *LogWriter) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.flush()
	l.closed = true
	err := l.f.Close()
	l.hub.Close(l.jobID, l.task)
	if l.task == "" {
		l.hub.setMask(l.jobID, nil)
	}
	return err
}

// Size returns the bytes written so far.
func (l *LogWriter) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// linePrefix is the prefix of runner lines in logs, as upstream's worker
// writes it (Go's log.LstdFlags, runner-local time).
func linePrefix(jobID int64, now time.Time) string {
	return fmt.Sprintf("[#%d] %s", jobID, now.Local().Format("2006/01/02 15:04:05"))
}
