package web

import (
	"net/http"
	"strings"
)

// Metrics on the main listener, and the route classes request latency is
// measured by.

// withMetrics serves /metrics through the metrics handler when [metrics]
// token is set (the handler checks it); otherwise /metrics is not part of
// the main listener (404), and metrics are only on [metrics] listen.
func (s *Server) withMetrics(next http.Handler) http.Handler {
	if s.Metrics == nil || s.Config.Metrics.Token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// before authenticate: the metrics token is no API token
		if r.URL.Path == "/metrics" {
			s.Metrics.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routeClass names the kind of a request for latency metrics, from the
// pattern the mux matched (a bounded set) and, for the job page's live
// stream, the path.
func routeClass(r *http.Request) string {
	pattern := r.Pattern
	if _, p, ok := strings.Cut(pattern, " "); ok {
		pattern = p
	}
	switch {
	case pattern == "":
		return "unmatched"
	case pattern == "/query":
		return "graphql"
	case strings.HasPrefix(pattern, "/query/log/"):
		return "log"
	case strings.HasPrefix(pattern, "/query/artifact/"):
		return "artifact"
	case strings.HasPrefix(pattern, "/query/"):
		return "api"
	case strings.HasPrefix(pattern, "/worker/"):
		return "worker"
	case strings.HasPrefix(pattern, "/static/"):
		return "static"
	case strings.HasSuffix(r.URL.Path, "/events"):
		return "events"
	}
	return "ui"
}
