package web

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"builds/app"
)

// Log downloads: GET /query/log/<job>/log (setup log) and
// /query/log/<job>/<task>/log, the URLs given in Log.fullURL. hut follows
// running builds with "Range: bytes=N-" and insists on 206 answers.

func (s *Server) handleJobLog(w http.ResponseWriter, r *http.Request) {
	s.serveLog(w, r, r.PathValue("job"), "")
}

func (s *Server) handleTaskLog(w http.ResponseWriter, r *http.Request) {
	s.serveLog(w, r, r.PathValue("job"), r.PathValue("task"))
}

// serveLog applies the job visibility rules (app.CanView: anonymous
// callers and other users see PUBLIC and UNLISTED jobs, only the owner
// sees PRIVATE ones) and, for tokens, the LOGS:RO grant.
func (s *Server) serveLog(w http.ResponseWriter, r *http.Request, idText, task string) {
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		writeJSONError(w, http.StatusBadRequest, "Invalid job ID")
		return
	}
	if !s.downloadAllowed(w, r, app.ScopeLogs) {
		return
	}
	ctx := r.Context()
	job, err := s.Service.Job(ctx, id)
	if app.ErrorCode(err) == app.ENOTFOUND {
		writeJSONError(w, http.StatusNotFound, "Unknown build job")
		return
	} else if err != nil {
		s.Log.Error("serve log", "job_id", id, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	if task != "" {
		if _, _, err := s.Service.Task(ctx, id, task); app.ErrorCode(err) == app.ENOTFOUND {
			writeJSONError(w, http.StatusNotFound, "Unknown build task")
			return
		} else if err != nil {
			s.Log.Error("serve log", "job_id", id, "task", task, "err", err)
			writeJSONError(w, http.StatusInternalServerError, "internal error")
			return
		}
	}
	if job.Runner == nil {
		writeJSONError(w, http.StatusNotFound, "This build job has not been started yet")
		return
	}
	f, err := os.Open(s.Service.LogPath(id, task))
	if errors.Is(err, fs.ErrNotExist) {
		serveLogRange(w, r, strings.NewReader(""), 0) // task not started yet: empty log
		return
	} else if err != nil {
		s.Log.Error("open log", "job_id", id, "task", task, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.Log.Error("stat log", "job_id", id, "task", task, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	serveLogRange(w, r, f, fi.Size())
}

// downloadAllowed checks that a token caller holds scope:RO; anonymous
// callers and sessions go on to the visibility check.
func (s *Server) downloadAllowed(w http.ResponseWriter, r *http.Request, scope app.Scope) bool {
	a := app.AuthFromContext(r.Context())
	if a == nil || a.Kind != app.AuthToken || a.Can(scope, app.RO) {
		return true
	}
	writeJSONError(w, http.StatusForbidden, fmt.Sprintf("access denied: this token lacks the %s:RO grant", scope))
	return false
}

// byteRange is the outcome of parsing a Range header against a size.
type byteRange struct {
	whole         bool // no (usable) Range: send everything with 200
	unsatisfiable bool // 416
	start, end    int64
}

// parseRange understands one "bytes=" range: "N-", "N-M" and "-K".
// Anything else (several ranges, other units, garbage) is ignored, as RFC
// 9110 allows. An empty log asked from byte 0 gives the range 0-0, served
// as "206 bytes 0-0/0" with no body: hut follows logs with Range requests
// and aborts on 416, and logs start empty.
func parseRange(header string, size int64) byteRange {
	spec, ok := strings.CutPrefix(strings.TrimSpace(header), "bytes=")
	if header == "" || !ok || strings.Contains(spec, ",") {
		return byteRange{whole: true}
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return byteRange{whole: true}
	}
	if first == "" { // suffix: the last K bytes
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return byteRange{whole: true}
		}
		if size == 0 {
			return byteRange{start: 0, end: -1}
		}
		if k == 0 {
			return byteRange{unsatisfiable: true}
		}
		return byteRange{start: max(0, size-k), end: size - 1}
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return byteRange{whole: true}
	}
	end := size - 1
	if last != "" {
		e, err := strconv.ParseInt(last, 10, 64)
		if err != nil || e < start {
			return byteRange{whole: true}
		}
		end = min(e, size-1)
	}
	if size == 0 && start == 0 {
		return byteRange{start: 0, end: -1}
	}
	if start >= size {
		return byteRange{unsatisfiable: true}
	}
	return byteRange{start: start, end: end}
}

// serveLogRange writes size bytes of content as text/plain, honouring a
// single Range.
func serveLogRange(w http.ResponseWriter, r *http.Request, content io.ReaderAt, size int64) {
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	br := parseRange(r.Header.Get("Range"), size)
	switch {
	case br.unsatisfiable:
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		writeJSONError(w, http.StatusRequestedRangeNotSatisfiable, "Range not satisfiable")
		return
	case br.whole:
		br.start, br.end = 0, size-1
	}
	n := br.end - br.start + 1
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if !br.whole {
		status = http.StatusPartialContent
		if n == 0 {
			h.Set("Content-Range", "bytes 0-0/0")
		} else {
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.start, br.end, size))
		}
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || n == 0 {
		return
	}
	io.Copy(w, io.NewSectionReader(content, br.start, n))
}

// readTail returns the last n bytes of a log file ("" if it does not exist
// yet), starting at a character boundary.
func readTail(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("stat log: %w", err)
	}
	off := max(0, fi.Size()-n)
	if off > 0 {
		// start at a rune: skip up to UTFMax-1 continuation bytes
		var head [utf8.UTFMax]byte
		k, _ := f.ReadAt(head[:], off)
		for i := 0; i < k && i < utf8.UTFMax-1 && !utf8.RuneStart(head[i]); i++ {
			off++
		}
	}
	// a Builder's buffer becomes the string without a second copy
	var b strings.Builder
	b.Grow(int(fi.Size() - off))
	if _, err := io.Copy(&b, io.NewSectionReader(f, off, fi.Size()-off)); err != nil {
		return "", fmt.Errorf("read log: %w", err)
	}
	return b.String(), nil
}
