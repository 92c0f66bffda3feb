package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"builds/app"
)

// maskText replaces secret values in logs.
const maskText = "[masked]"

// minMaskLen is the shortest secret value masked: shorter strings are too
// likely to appear by chance and would mangle the logs.
const minMaskLen = 6

// masker holds the secret values of one job. Values are added while the
// job sets up (secrets are resolved, a token is minted) and apply to every
// log of the job from then on.
type masker struct {
	mu      sync.RWMutex
	secrets []maskSecret // longest first
}

type maskSecret struct {
	val  []byte
	fail []int // KMP failure function of val
}

// add registers a secret's material. Multi-line material is masked line by
// line so that it is also caught when printed partially or re-wrapped by
// the guest; PEM/armor boundary lines are not secret and stay readable.
func (m *masker) add(material string) {
	var vals []string
	for _, line := range strings.Split(material, "\n") {
		line = strings.TrimSpace(line)
		if len(line) < minMaskLen || strings.HasPrefix(line, "-----") {
			continue
		}
		vals = append(vals, line)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range vals {
		if !m.has(v) {
			m.secrets = append(m.secrets, maskSecret{val: []byte(v), fail: kmpTable([]byte(v))})
		}
	}
	sort.SliceStable(m.secrets, func(i, j int) bool { return len(m.secrets[i].val) > len(m.secrets[j].val) })
}

func (m *masker) has(v string) bool {
	for _, s := range m.secrets {
		if string(s.val) == v {
			return true
		}
	}
	return false
}

func (m *masker) empty() bool {
	if m == nil {
		return true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.secrets) == 0
}

// apply masks pend+p. It returns the bytes that are safe to write and the
// tail to hold back: the longest suffix that could be the start of a
// secret continued by the next write, so a secret split across writes is
// still caught.
func (m *masker) apply(pend, p []byte) (out, hold []byte) {
	buf := make([]byte, 0, len(pend)+len(p))
	buf = append(append(buf, pend...), p...)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.secrets {
		if bytes.Contains(buf, s.val) {
			buf = bytes.ReplaceAll(buf, s.val, []byte(maskText))
		}
	}
	keep := 0
	for _, s := range m.secrets {
		if k := s.suffixPrefix(buf); k > keep {
			keep = k
		}
	}
	n := len(buf) - keep
	return buf[:n], append([]byte(nil), buf[n:]...)
}

// suffixPrefix returns the length of the longest suffix of buf that is a
// proper prefix of the secret, running the KMP automaton over at most
// len(val)-1 trailing bytes.
func (s maskSecret) suffixPrefix(buf []byte) int {
	tail := buf
	if n := len(s.val) - 1; len(tail) > n {
		tail = tail[len(tail)-n:]
	}
	q := 0
	for _, c := range tail {
		for q > 0 && s.val[q] != c {
			q = s.fail[q-1]
		}
		if s.val[q] == c {
			q++
		}
		if q == len(s.val) {
			q = s.fail[q-1]
		}
	}
	return q
}

// kmpTable returns the KMP failure function: fail[i] is the length of the
// longest proper prefix of v[:i+1] that is also its suffix.
func kmpTable(v []byte) []int {
	fail := make([]int, len(v))
	k := 0
	for i := 1; i < len(v); i++ {
		for k > 0 && v[k] != v[i] {
			k = fail[k-1]
		}
		if v[k] == v[i] {
			k++
		}
		fail[i] = k
	}
	return fail
}

// errLogLimit is returned by a log's Write once it reached [limits] log-size.
var errLogLimit = errors.New("log size limit reached")

// logFile is one log of a job being written: the setup log (task "") or a
// task's log. Writes go to the file at once and wake the LogHub's readers,
// so a slow reader never holds up the guest: the file is the buffer.
type logFile struct {
	hub   *app.LogHub
	jobID int64
	task  string
	mask  *masker
	limit int64  // 0 = unlimited
	over  func() // called once when the limit is hit (stops the task)

	mu     sync.Mutex
	f      *os.File
	size   int64
	pend   []byte // held back by the masker
	full   bool
	closed bool
}

// openLog creates (or appends to) a log file and marks it live.
func openLog(svc *app.Service, jobID int64, task string, mask *masker) (*logFile, error) {
	path := svc.LogPath(jobID, task)
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
	svc.Logs.Open(jobID, task)
	l := &logFile{hub: svc.Logs, jobID: jobID, task: task, mask: mask, f: f, size: fi.Size()}
	l.hub.Notify(jobID, task, l.size)
	return l, nil
}

// Write masks secrets in p and appends it to the log.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	if l.full {
		return 0, errLogLimit
	}
	out := p
	if !l.mask.empty() {
		out, l.pend = l.mask.apply(l.pend, p)
	}
	if err := l.emit(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// emit writes b (already masked), enforcing the size limit.
func (l *logFile) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var hit bool
	if l.limit > 0 && l.size+int64(len(b)) > l.limit {
		b, hit = b[:l.limit-l.size], true
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	if hit {
		l.full = true
		msg := fmt.Sprintf("\n%s Error: this log reached the limit of %s ([limits] log-size); the task was stopped.\n",
			linePrefix(l.jobID), app.HumanSize(l.limit))
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
		return errLogLimit
	}
	return nil
}

// Printf writes one runner line: "[#<id>] YYYY/MM/DD HH:MM:SS <text>".
func (l *logFile) Printf(format string, args ...any) {
	line := linePrefix(l.jobID) + " " + fmt.Sprintf(format, args...)
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	l.Write([]byte(line))
}

// Flush writes out bytes the masker held back.
func (l *logFile) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush()
}

func (l *logFile) flush() {
	if len(l.pend) > 0 && !l.full && !l.closed {
		p := l.pend
		l.pend = nil
		l.emit(p)
	}
}

// Close flushes, closes the file and tells readers the log is complete.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.flush()
	l.closed = true
	err := l.f.Close()
	l.hub.Close(l.jobID, l.task)
	return err
}

// Size returns the bytes written so far.
func (l *logFile) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// linePrefix is the prefix of runner lines in logs, as upstream's worker
// writes it (Go's log.LstdFlags, runner-local time).
func linePrefix(jobID int64) string {
	return fmt.Sprintf("[#%d] %s", jobID, time.Now().Format("2006/01/02 15:04:05"))
}

// followLogs copies a job's logs to w as they grow: the setup log as it
// is and task logs with every line prefixed "[<task>] ". It returns when
// ctx ends or, after a last read, when until is closed; with a nil until
// it reads what is there once.
func followLogs(ctx context.Context, w io.Writer, svc *app.Service, jobID int64, tasks []string, until <-chan struct{}) {
	logs := make([]*followed, 0, len(tasks)+1)
	logs = append(logs, &followed{path: svc.LogPath(jobID, "")})
	for _, t := range tasks {
		logs = append(logs, &followed{task: t, path: svc.LogPath(jobID, t), prefix: "[" + t + "] "})
	}
	defer func() {
		for _, l := range logs {
			l.close()
		}
	}()
	cur := logs[0]
	for {
		done := until == nil
		if !done {
			select {
			case <-until:
				done = true
			default:
			}
		}
		for _, l := range logs {
			grew, err := l.copy(w)
			if err != nil {
				return
			}
			if grew {
				cur = l
			}
		}
		if done {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		go func() {
			select {
			case <-until:
				cancel()
			case <-wctx.Done():
			}
		}()
		if !svc.Logs.Wait(wctx, jobID, cur.task, cur.off) {
			<-wctx.Done()
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
	}
}

// followed is one log being followed.
type followed struct {
	task, path, prefix string
	f                  *os.File
	off                int64
	midLine            bool
}

// copy writes what was appended since the last call; it reports whether
// there was anything.
func (l *followed) copy(w io.Writer) (bool, error) {
	if l.f == nil {
		f, err := os.Open(l.path)
		if err != nil {
			return false, nil
		}
		l.f = f
	}
	buf := make([]byte, 32<<10)
	grew := false
	for {
		n, err := l.f.ReadAt(buf, l.off)
		if n > 0 {
			grew = true
			l.off += int64(n)
			if _, werr := w.Write(l.prefixed(buf[:n])); werr != nil {
				return grew, werr
			}
		}
		if err != nil || n == 0 {
			return grew, nil
		}
	}
}

// prefixed puts the task prefix at the start of every line in b.
func (l *followed) prefixed(b []byte) []byte {
	if l.prefix == "" {
		return b
	}
	var out bytes.Buffer
	for len(b) > 0 {
		if !l.midLine {
			out.WriteString(l.prefix)
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			out.Write(b)
			l.midLine = true
			break
		}
		out.Write(b[:i+1])
		l.midLine = false
		b = b[i+1:]
	}
	return out.Bytes()
}

func (l *followed) close() {
	if l.f != nil {
		l.f.Close()
	}
}
