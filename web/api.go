package web

import (
	"encoding/json"
	"net/http"

	"builds/app"
)

// registerAPIRoutes lists the API's routes: GraphQL, log and artifact
// downloads. GET patterns also answer HEAD.
func (s *Server) registerAPIRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /query/api-meta.json", s.handleAPIMeta)
	mux.HandleFunc("POST /query", s.handleQuery)
	mux.HandleFunc("GET /query", s.handleQuery)
	mux.HandleFunc("/query", s.handleQueryMethod)
	mux.HandleFunc("GET /query/log/{job}/log", s.handleJobLog)
	mux.HandleFunc("GET /query/log/{job}/{task}/log", s.handleTaskLog)
	mux.HandleFunc("GET /query/artifact/{id}/{name}", s.handleArtifact)
	mux.HandleFunc("/query/", s.handleQueryNotFound)
}

// handleQueryNotFound keeps API clients on JSON for unknown /query/ paths.
func (s *Server) handleQueryNotFound(w http.ResponseWriter, r *http.Request) {
	writeJSONError(w, http.StatusNotFound, "Not found: "+r.URL.Path)
}

// handleAPIMeta describes the API's access scopes, as builds.sr.ht does,
// and publishes the public key that verifies webhook signatures
// ("webhookPublicKey", base64 Ed25519) when one is configured.
func (s *Server) handleAPIMeta(w http.ResponseWriter, r *http.Request) {
	meta := map[string]any{"scopes": app.Scopes}
	if s.WebhookPublicKey != "" {
		meta["webhookPublicKey"] = s.WebhookPublicKey
	}
	writeJSON(w, http.StatusOK, meta)
}

// handleQueryMethod answers other methods on /query with a JSON 405 (the
// mux's own answer would be text/plain).
func (s *Server) handleQueryMethod(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD, POST")
	writeGraphQLError(w, http.StatusMethodNotAllowed, "BAD_REQUEST", "method "+r.Method+" is not allowed on /query: use POST")
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
