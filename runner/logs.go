package runner

import (
	"bytes"
	"context"
	"io"
	"os"
	"time"
)

// followLogs copies a job's logs to w as they grow: the setup log as it
// is and task logs with every line prefixed "[<task>] ". It returns when
// ctx ends or, after a last read, when until is closed; with a nil until
// it reads what is there once.
func followLogs(ctx context.Context, w io.Writer, srv Server, jobID int64, tasks []string, until <-chan struct{}) {
	logs := make([]*followed, 0, len(tasks)+1)
	logs = append(logs, &followed{path: srv.LogPath(jobID, "")})
	for _, t := range tasks {
		logs = append(logs, &followed{task: t, path: srv.LogPath(jobID, t), prefix: "[" + t + "] "})
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
		if !srv.Logs().Wait(wctx, jobID, cur.task, cur.off) {
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
