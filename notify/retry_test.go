package notify

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// failures are real errors of every kind the senders meet, made by the
// code paths that meet them.
type failures struct {
	refused    error // *net.OpError: connection refused
	deadline   error // the HTTP request's context deadline passed
	canceled   error // the HTTP request's context was cancelled (shutdown)
	badCert    error // an untrusted TLS certificate
	linkLocal  error // the address policy refused the destination
	noMailHost error // [mail] smtp-host is empty
	status     map[int]error
}

func newFailures(t *testing.T) failures {
	t.Helper()
	var f failures
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, f.refused = net.Dial("tcp", addr)
	var opErr *net.OpError
	if !errors.As(f.refused, &opErr) {
		t.Fatalf("dialling a closed port gave %T %v, want a *net.OpError", f.refused, f.refused)
	}

	_, key, _ := ed25519.GenerateKey(rand.Reader)
	cfg := testConfig(t)
	d := &Dispatcher{cfg: cfg, key: key, client: newHTTPClient(cfg)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil { // hang until the client gives up
			io.Copy(io.Discard, r.Body) // only then does the server notice a hang-up
			<-r.Context().Done()
			return
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	f.status = map[int]error{}
	for _, code := range []int{200, 204, 400, 404, 429, 500, 503} {
		res, err := d.post(context.Background(), fmt.Sprintf("%s/%d", srv.URL, code), []byte("{}"), nil)
		if err != nil {
			t.Fatal(err)
		}
		f.status[code] = res.err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, f.deadline = d.post(ctx, srv.URL+"/hang", []byte("{}"), nil)
	if !errors.Is(f.deadline, context.DeadlineExceeded) {
		t.Fatalf("hanging request gave %v, want a context deadline", f.deadline)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, f.canceled = d.post(ctx, srv.URL+"/200", []byte("{}"), nil)

	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)
	_, f.badCert = d.post(context.Background(), tlsSrv.URL, []byte("{}"), nil)
	_, f.linkLocal = d.post(context.Background(), "http://169.254.169.254/", []byte("{}"), nil)
	for _, err := range []error{f.canceled, f.badCert, f.linkLocal} {
		if err == nil {
			t.Fatal("a request that must fail succeeded")
		}
	}

	f.noMailHost = (&mailer{}).send(context.Background(), &message{})
	return f
}

func TestRetryPolicy(t *testing.T) {
	f := newFailures(t)
	// SMTP replies come back from go-smtp as *smtp.SMTPError, wrapped by
	// the mailer.
	mailTemp := fmt.Errorf("send mail: %w", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"})
	mailPerm := fmt.Errorf("send mail: %w", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	five := retryPolicy{backoff: 10 * time.Second, maxBackoff: time.Minute, attempts: 5}
	many := retryPolicy{backoff: 10 * time.Second, maxBackoff: time.Minute, attempts: 100}
	once := retryPolicy{backoff: 10 * time.Second, maxBackoff: time.Minute, attempts: 1}
	tests := []struct {
		name    string
		policy  retryPolicy
		attempt int   // the attempt that failed
		err     error // how it failed
		retry   bool
		wait    time.Duration
	}{
		// Backoff: doubling from the first wait, capped; the limit counts
		// every attempt.
		{name: "FirstWait", policy: five, attempt: 1, err: f.refused, retry: true, wait: 10 * time.Second},
		{name: "Doubles", policy: five, attempt: 2, err: f.refused, retry: true, wait: 20 * time.Second},
		{name: "DoublesAgain", policy: five, attempt: 3, err: f.refused, retry: true, wait: 40 * time.Second},
		{name: "Capped", policy: five, attempt: 4, err: f.refused, retry: true, wait: time.Minute},
		{name: "LastAttempt", policy: five, attempt: 5, err: f.refused},
		{name: "StaysCappedLongAfter", policy: many, attempt: 80, err: f.refused, retry: true, wait: time.Minute},
		{name: "SingleAttempt", policy: once, attempt: 1, err: f.refused},

		// Classification.
		{name: "Success", policy: five, attempt: 1, err: nil},
		{name: "ConnectionRefused", policy: five, attempt: 1, err: f.refused, retry: true, wait: 10 * time.Second},
		{name: "ContextDeadline", policy: five, attempt: 1, err: f.deadline, retry: true, wait: 10 * time.Second},
		{name: "Shutdown", policy: five, attempt: 1, err: f.canceled},
		{name: "UntrustedCertificate", policy: five, attempt: 1, err: f.badCert},
		{name: "AddressRefusedByPolicy", policy: five, attempt: 1, err: f.linkLocal},
		{name: "MailNotConfigured", policy: five, attempt: 1, err: f.noMailHost},
		{name: "HTTP200", policy: five, attempt: 1, err: f.status[200]},
		{name: "HTTP204", policy: five, attempt: 1, err: f.status[204]},
		{name: "HTTP400", policy: five, attempt: 1, err: f.status[400]},
		{name: "HTTP404", policy: five, attempt: 1, err: f.status[404]},
		{name: "HTTP429", policy: five, attempt: 1, err: f.status[429]},
		{name: "HTTP500", policy: five, attempt: 1, err: f.status[500], retry: true, wait: 10 * time.Second},
		{name: "HTTP503", policy: five, attempt: 2, err: f.status[503], retry: true, wait: 20 * time.Second},
		{name: "SMTPTemporary4xx", policy: five, attempt: 1, err: mailTemp, retry: true, wait: 10 * time.Second},
		{name: "SMTPPermanent5xx", policy: five, attempt: 1, err: mailPerm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, retry := tt.policy.next(tt.attempt, tt.err)
			if retry != tt.retry || wait != tt.wait {
				t.Errorf("next(%d, %v) = %s, %v; want %s, %v", tt.attempt, tt.err, wait, retry, tt.wait, tt.retry)
			}
		})
	}
}
