package web

import (
	"encoding/json"
	"net/http"

	"builds/app"
)

// registerAPIRoutes lists the API's routes.
func (s *Server) registerAPIRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /query/api-meta.json", s.handleAPIMeta)
}

// handleAPIMeta describes the API's access scopes, as builds.sr.ht does.
func (s *Server) handleAPIMeta(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"scopes": app.Scopes})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeJSONError writes a GraphQL-shaped error body.
func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"data": nil, "errors": []map[string]any{{"message": msg}}})
}
