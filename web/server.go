// Package web serves builds over HTTP: the GraphQL API at /query, log and
// artifact downloads, and the HTML user interface.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"builds/app"
)

// Server is the HTTP server. Set the exported fields, then call Open.
type Server struct {
	Addr    string // listen address, e.g. "127.0.0.1:8080" (":0" in tests)
	Service *app.Service
	Config  *app.Config
	Log     *slog.Logger
	// WebhookPublicKey is the base64 Ed25519 public key that webhook and
	// trigger receivers verify X-Payload-Signature with; it is published
	// in /query/api-meta.json. "" leaves it out.
	WebhookPublicKey string
	// Metrics serves /metrics here when [metrics] token is set (it checks
	// the token); nil leaves /metrics out.
	Metrics http.Handler

	ln       net.Listener
	server   *http.Server
	api      apiOnce    // GraphQL schema (graphql.go)
	stopping stopSignal // closed by Close: long-lived streams end
}

// shutdownGrace is how long Close lets requests in flight finish.
const shutdownGrace = 5 * time.Second

// stopSignal is a channel closed once, when the server starts shutting
// down. http.Server.Shutdown does not interrupt active handlers, so
// streams that would otherwise run until their client leaves (the job
// page's SSE) select on it and end at once; EventSource clients then
// reconnect to the next server and resume.
type stopSignal struct {
	once, closeOnce sync.Once
	ch              chan struct{}
}

// done returns the channel; it works on the zero value (Handler() may be
// used without Open).
func (s *stopSignal) done() <-chan struct{} {
	s.once.Do(func() { s.ch = make(chan struct{}) })
	return s.ch
}

func (s *stopSignal) stop() {
	s.done()
	s.closeOnce.Do(func() { close(s.ch) })
}

// untilClose returns a context that ends with ctx or when Close is
// called, whichever comes first.
func (s *Server) untilClose(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	done := s.stopping.done()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Open starts listening and serving in the background; listen errors are
// returned synchronously.
func (s *Server) Open() error {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.Addr, err)
	}
	s.ln = ln
	s.server = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	s.server.RegisterOnShutdown(s.stopping.stop)
	go func() {
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Log.Error("http serve", "err", err)
		}
	}()
	return nil
}

// URL returns the base URL the server listens on (useful with ":0").
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the server. Live streams end at once; other requests in
// flight may finish for up to shutdownGrace, then their connections are
// cut.
func (s *Server) Close() error {
	s.stopping.stop()
	if s.server == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := s.server.Shutdown(ctx); err != nil {
		s.Log.Warn("http shutdown: requests still running after the grace period; cutting them", "grace", shutdownGrace, "err", err)
		return s.server.Close()
	}
	return nil
}

// Handler returns the complete HTTP handler (routes plus middleware).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.registerAPIRoutes(mux)
	s.registerWorkerRoutes(mux)
	s.registerForgeRoutes(mux)
	s.registerUIRoutes(mux)
	return s.withMetrics(s.authenticateSession(s.authenticate(s.logRequests(mux))))
}

// authenticate resolves "Authorization: Bearer <token>" to an identity in
// the request context, replacing a session's. A bad token is rejected at
// once with a JSON error (what GraphQL clients expect); no header leaves
// the session's identity, or none.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if h == "" {
			next.ServeHTTP(w, r)
			return
		}
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "token") {
			writeJSONError(w, http.StatusBadRequest, "Authentication error: invalid Authorization header. Expected 'Authorization: Bearer [token]'")
			return
		}
		// The lookup is two reads by unique key, done in microseconds; a
		// cancellable context would only make the SQLite driver start and
		// stop a watcher goroutine around each of its statements, which
		// costs more than the reads (a client that left is noticed by
		// the handler's context right after).
		token = strings.TrimSpace(token)
		authenticate := s.Service.Authenticate
		if strings.HasPrefix(token, app.RunnerTokenPrefix) {
			authenticate = s.Service.AuthenticateRunner
		}
		auth, err := authenticate(context.WithoutCancel(r.Context()), token)
		if err != nil {
			if app.ErrorCode(err) == app.EINTERNAL {
				s.Log.Error("authenticate", "err", err)
			}
			writeJSONError(w, http.StatusUnauthorized, app.ErrorMessage(err))
			return
		}
		next.ServeHTTP(w, r.WithContext(app.NewContextWithAuth(r.Context(), auth)))
	})
}

// statusRecorder captures the response status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets streaming handlers flush through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.Service.Metrics.HTTPRequest(routeClass(r), time.Since(start))
		s.Log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start))
	})
}
