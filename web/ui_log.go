package web

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Logs are read straight from their files, from a byte offset, so a
// reader never holds up the runner writing them and any reader can
// resume where it stopped (SSE Last-Event-ID carries the offsets).

// logInlineBytes is how much of each log the job page shows; longer logs
// show their end and link to a page with every line.
const logInlineBytes = 1 << 20

// logChunkBytes is the most one read (one SSE event, one write of the
// full-log page) covers.
const logChunkBytes = 256 << 10

// logCursor follows one log file: where the next read starts and which
// line number comes next.
type logCursor struct {
	path   string
	anchor string // line anchors are "<anchor>-<n>": "setup", "task-<name>"
	offset int64
	line   int // lines rendered before offset
	ansi   ansiState
}

// newLogCursor starts at offset, counting the lines before it. An offset
// past the end of the file (stale Last-Event-ID) starts at the end.
func newLogCursor(path, anchor string, offset int64) (*logCursor, error) {
	c := &logCursor{path: path, anchor: anchor, ansi: newANSIState()}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	offset = min(max(offset, 0), fi.Size())
	n, err := countLines(io.LimitReader(f, offset))
	if err != nil {
		return nil, err
	}
	c.offset, c.line = offset, n
	return c, nil
}

// tailLogCursor starts at the first line boundary within the last limit
// bytes of the log; skipped is how many bytes come before it.
func tailLogCursor(path, anchor string, limit int64) (c *logCursor, skipped int64, err error) {
	size := fileSize(path)
	if size <= limit {
		c, err = newLogCursor(path, anchor, 0)
		return c, 0, err
	}
	start := size - limit
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	buf := make([]byte, min(limit, 64<<10))
	n, _ := f.ReadAt(buf, start-1)
	if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
		start += int64(i) // buf starts one byte early: land just after the '\n'
	}
	c, err = newLogCursor(path, anchor, start)
	return c, start, err
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func countLines(r io.Reader) (int, error) {
	buf := make([]byte, 64<<10)
	n := 0
	for {
		m, err := r.Read(buf)
		n += bytes.Count(buf[:m], []byte{'\n'})
		if err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, err
		}
	}
}

// next renders up to limit new bytes as HTML lines. Unless complete (the
// log will not grow), a trailing partial line is left for later, except
// when one line alone exceeds limit. It returns "" when there is nothing
// new.
func (c *logCursor) next(limit int64, complete bool) (string, error) {
	f, err := os.Open(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	avail := fi.Size() - c.offset
	if avail <= 0 {
		return "", nil
	}
	buf := make([]byte, min(avail, limit))
	n, err := f.ReadAt(buf, c.offset)
	if err != nil && err != io.EOF {
		return "", err
	}
	buf = buf[:n]
	more := int64(n) < avail
	if !complete || more {
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			buf = buf[:i+1]
		} else if int64(n) < limit {
			return "", nil // a partial line: wait for the rest
		}
	}
	c.offset += int64(len(buf))
	return c.render(buf), nil
}

// render turns complete lines into HTML rows with numbered anchors.
func (c *logCursor) render(data []byte) string {
	var b strings.Builder
	b.Grow(2*len(data) + 64*bytes.Count(data, []byte{'\n'}))
	text := strings.ToValidUTF8(string(data), "\uFFFD")
	text = strings.TrimSuffix(text, "\n")
	for line := range strings.SplitSeq(text, "\n") {
		c.line++
		n := strconv.Itoa(c.line)
		b.WriteString(`<div class="l" id="`)
		b.WriteString(c.anchor)
		b.WriteString("-")
		b.WriteString(n)
		b.WriteString(`"><a class="n" href="#`)
		b.WriteString(c.anchor)
		b.WriteString("-")
		b.WriteString(n)
		b.WriteString(`">`)
		b.WriteString(n)
		b.WriteString(`</a><span class="t">`)
		c.ansi.renderLine(&b, strings.TrimSuffix(line, "\r"))
		b.WriteString("</span></div>\n")
	}
	return b.String()
}

// logAnchor is the anchor prefix of a log: "setup" or "task-<name>".
func logAnchor(task string) string {
	if task == "" {
		return "setup"
	}
	return "task-" + task
}
