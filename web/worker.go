package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"builds/app"
)

// The worker API's extensions for remote runners (app/runners.go): what
// the GraphQL worker mutations have no word for. Runner tokens only;
// JSON in and out, errors as {"error": "..."} with the status of their
// code.

// LogOffsetHeader says where a PUT of log bytes starts in the log.
const LogOffsetHeader = "Builds-Log-Offset"

// Bounds on worker request bodies: reports and small requests, and one
// upload of log bytes.
const (
	maxWorkerJSON = 256 << 10
	maxLogUpload  = 8 << 20
)

func (s *Server) registerWorkerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /worker/v1/poll", s.handleRunnerPoll)
	mux.HandleFunc("GET /worker/v1/jobs/{id}/log", s.handleRunnerLog)
	mux.HandleFunc("PUT /worker/v1/jobs/{id}/log", s.handleRunnerLog)
	mux.HandleFunc("GET /worker/v1/jobs/{id}/tasks/{task}/log", s.handleRunnerLog)
	mux.HandleFunc("PUT /worker/v1/jobs/{id}/tasks/{task}/log", s.handleRunnerLog)
	mux.HandleFunc("POST /worker/v1/jobs/{id}/logs-done", s.handleRunnerLogsDone)
	mux.HandleFunc("POST /worker/v1/jobs/{id}/finish", s.handleRunnerFinish)
	mux.HandleFunc("POST /worker/v1/jobs/{id}/token", s.handleRunnerToken)
	mux.HandleFunc("DELETE /worker/v1/jobs/{id}/token/{token}", s.handleRunnerRevokeToken)
	mux.HandleFunc("POST /worker/v1/ssh-user", s.handleRunnerSSHUser)
	mux.HandleFunc("GET /worker/v1/jobs/{id}/source", s.handleRunnerSource)
	mux.HandleFunc("/worker/", func(w http.ResponseWriter, r *http.Request) {
		writeWorkerError(w, app.Errorf(app.ENOTFOUND, "no worker call %s %s", r.Method, r.URL.Path))
	})
}

// writeWorkerError answers with err's status and message; internal
// errors are not shown.
func writeWorkerError(w http.ResponseWriter, err error) {
	writeJSON(w, httpStatus(err), map[string]string{"error": app.ErrorMessage(err)})
}

func (s *Server) workerError(w http.ResponseWriter, r *http.Request, err error) {
	if app.ErrorCode(err) == app.EINTERNAL {
		s.Log.Error("worker call", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeWorkerError(w, err)
}

// decodeWorker reads a JSON body of at most maxWorkerJSON bytes into v.
func decodeWorker(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxWorkerJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return app.Errorf(app.EINVALID, "request body over %d bytes", maxWorkerJSON)
		}
		return app.Errorf(app.EINVALID, "invalid JSON body: %v", err)
	}
	if dec.More() {
		return app.Errorf(app.EINVALID, "invalid JSON body: more than one value")
	}
	return nil
}

func pathJobID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, app.Errorf(app.ENOTFOUND, "no job %q", r.PathValue("id"))
	}
	return id, nil
}

func (s *Server) handleRunnerPoll(w http.ResponseWriter, r *http.Request) {
	var rep app.RunnerReport
	if err := decodeWorker(w, r, &rep); err != nil {
		s.workerError(w, r, err)
		return
	}
	ctx, cancel := s.untilClose(r.Context())
	defer cancel()
	reply, err := s.Service.RunnerPoll(ctx, rep)
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// handleRunnerLog answers a log's size on the server (GET) or appends
// bytes at the offset in LogOffsetHeader (PUT); either way the reply is
// the log's size.
func (s *Server) handleRunnerLog(w http.ResponseWriter, r *http.Request) {
	id, err := pathJobID(r)
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	task := r.PathValue("task")
	if r.Method == http.MethodGet {
		size, err := s.Service.RunnerLogSize(r.Context(), id, task)
		if err != nil {
			s.workerError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, app.LogSizeReply{Size: size})
		return
	}
	off, err := strconv.ParseInt(r.Header.Get(LogOffsetHeader), 10, 64)
	if err != nil || off < 0 {
		s.workerError(w, r, app.Errorf(app.EINVALID, "%s: want the byte offset the body starts at, got %q", LogOffsetHeader, r.Header.Get(LogOffsetHeader)))
		return
	}
	// read whole first: a body that turns out too large must leave the
	// log as it was
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLogUpload))
	if err != nil {
		s.workerError(w, r, app.Errorf(app.EINVALID, "a log upload is at most %d bytes", maxLogUpload))
		return
	}
	size, err := s.Service.RunnerAppendLog(r.Context(), id, task, off, bytes.NewReader(b))
	if err != nil {
		// a conflict still says where the log ends, for the runner to
		// resume from
		if app.ErrorCode(err) == app.ECONFLICT {
			writeJSON(w, http.StatusConflict, map[string]any{"error": app.ErrorMessage(err), "size": size})
			return
		}
		s.workerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, app.LogSizeReply{Size: size})
}

func (s *Server) handleRunnerLogsDone(w http.ResponseWriter, r *http.Request) {
	id, err := pathJobID(r)
	if err == nil {
		err = s.Service.RunnerLogsDone(r.Context(), id)
	}
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) handleRunnerFinish(w http.ResponseWriter, r *http.Request) {
	id, err := pathJobID(r)
	var req app.FinishRequest
	if err == nil {
		err = decodeWorker(w, r, &req)
	}
	var job *app.Job
	if err == nil {
		job, err = s.Service.RunnerFinish(r.Context(), id, req)
	}
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": job.ID, "status": job.Status})
}

func (s *Server) handleRunnerToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathJobID(r)
	var req app.JobTokenRequest
	if err == nil {
		err = decodeWorker(w, r, &req)
	}
	var reply *app.JobTokenReply
	if err == nil {
		reply, err = s.Service.RunnerJobToken(r.Context(), id, req.Grants)
	}
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

func (s *Server) handleRunnerRevokeToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathJobID(r)
	var tid int64
	if err == nil {
		if tid, err = strconv.ParseInt(r.PathValue("token"), 10, 64); err != nil {
			err = app.Errorf(app.ENOTFOUND, "no token %q", r.PathValue("token"))
		}
	}
	if err == nil {
		err = s.Service.RunnerRevokeJobToken(r.Context(), id, tid)
	}
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) handleRunnerSSHUser(w http.ResponseWriter, r *http.Request) {
	var req app.SSHUserRequest
	err := decodeWorker(w, r, &req)
	var reply *app.SSHUserReply
	if err == nil {
		reply, err = s.Service.RunnerSSHUser(r.Context(), req.Key)
	}
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// handleRunnerSource answers the git bundle of a local source (?url=) of
// a job the runner holds, made before the answer starts so that a
// refusal or a failure is a status of its own (app/source.go).
func (s *Server) handleRunnerSource(w http.ResponseWriter, r *http.Request) {
	id, err := pathJobID(r)
	var b *app.SourceBundle
	if err == nil {
		b, err = s.Service.RunnerSourceBundle(r.Context(), id, r.URL.Query().Get("url"))
	}
	if err != nil {
		s.workerError(w, r, err)
		return
	}
	defer b.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(b.Size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, b); err != nil {
		s.Log.Warn("send source bundle", "job_id", id, "err", err)
	}
}
