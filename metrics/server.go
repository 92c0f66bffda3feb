package metrics

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Server serves /metrics on an address of its own ([metrics] listen).
type Server struct {
	Addr    string
	Handler http.Handler
	Log     *slog.Logger

	ln  net.Listener
	srv *http.Server
}

// Open listens and serves in the background; listen errors come back here.
func (s *Server) Open() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("metrics: listen %s: %w", s.Addr, err)
	}
	s.ln = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.Handler)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && s.Log != nil {
			s.Log.Error("metrics serve", "err", err)
		}
	}()
	return nil
}

// URL returns the base URL the server listens on.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// RequireToken lets through requests carrying "Authorization: Bearer
// <token>" (compared in constant time) and answers others 401.
func RequireToken(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		if scheme, rest, ok := strings.Cut(got, " "); ok && strings.EqualFold(scheme, "bearer") {
			got = "Bearer " + strings.TrimSpace(rest)
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "metrics: a valid bearer token is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
