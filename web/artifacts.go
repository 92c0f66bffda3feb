package web

import (
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"strconv"

	"builds/app"
)

// handleArtifact serves GET /query/artifact/<id>/<name>, the URL given in
// Artifact.url, with the visibility rules of the artifact's job and, for
// tokens, the JOBS:RO grant.
func (s *Server) handleArtifact(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeJSONError(w, http.StatusBadRequest, "Invalid artifact ID")
		return
	}
	if !s.downloadAllowed(w, r, app.ScopeJobs) {
		return
	}
	_, a, err := s.Service.Artifact(r.Context(), id)
	if app.ErrorCode(err) == app.ENOTFOUND || err == nil && a.Name != r.PathValue("name") {
		writeJSONError(w, http.StatusNotFound, "Unknown artifact")
		return
	} else if err != nil {
		s.Log.Error("serve artifact", "artifact_id", id, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	f, err := os.Open(s.Service.ArtifactPath(a))
	if errors.Is(err, fs.ErrNotExist) {
		writeJSONError(w, http.StatusNotFound, "This artifact has been pruned")
		return
	} else if err != nil {
		s.Log.Error("open artifact", "artifact_id", id, "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Name}))
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, a.Name, a.Created, f)
}
