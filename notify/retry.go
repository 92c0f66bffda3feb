package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-smtp"
)

// Every sender in notify retries by one policy, retryPolicy: email
// triggers, webhook triggers and user webhook deliveries. Triggers retry
// in their own goroutine (run), writing each attempt to the job's setup
// log; user webhook deliveries make one attempt per turn of the durable
// queue and store when the next is due (next). The senders differ only in
// their attempt limit, read from their own config section ([mail]
// max-attempts, [webhooks] max-attempts); the backoff is the Dispatcher's.

// retryPolicy says whether a failed delivery is tried again, and when.
type retryPolicy struct {
	backoff    time.Duration // the wait after the first failed attempt; it doubles after each further one
	maxBackoff time.Duration // the longest wait
	attempts   int           // attempts in all, the first one included
}

// retryPolicy returns the policy of a sender allowed attempts attempts.
func (d *Dispatcher) retryPolicy(attempts int) retryPolicy {
	return retryPolicy{backoff: d.Backoff, maxBackoff: d.MaxBackoff, attempts: attempts}
}

// mailRetry is the policy of email triggers.
func (d *Dispatcher) mailRetry() retryPolicy { return d.retryPolicy(d.cfg.Mail.MaxAttempts) }

// webhookRetry is the policy of webhook triggers and user webhooks.
func (d *Dispatcher) webhookRetry() retryPolicy { return d.retryPolicy(d.cfg.Webhooks.MaxAttempts) }

// wait is the pause after the given failed attempt (1-based).
func (p retryPolicy) wait(attempt int) time.Duration {
	b := p.backoff
	for i := 1; i < attempt && b < p.maxBackoff; i++ {
		b *= 2
	}
	return min(b, p.maxBackoff)
}

// next reports whether a delivery whose attempt-th attempt failed with err
// is tried again, and after how long. A nil err is a success: nothing to
// retry.
func (p retryPolicy) next(attempt int, err error) (time.Duration, bool) {
	if err == nil || attempt >= p.attempts || !retryable(err) {
		return 0, false
	}
	return p.wait(attempt), true
}

// run calls try with attempt 1, 2, ... until it succeeds, fails for good,
// the attempts run out or ctx ends. Before each retry it calls retrying
// with the wait and the coming attempt's number (for the setup log), then
// sleeps. try does its own logging and recording of each attempt.
func (p retryPolicy) run(ctx context.Context, try func(attempt int) error, retrying func(wait time.Duration, attempt int)) {
	for attempt := 1; ; attempt++ {
		wait, again := p.next(attempt, try(attempt))
		if !again || ctx.Err() != nil {
			return
		}
		retrying(wait, attempt+1)
		if !sleep(ctx, wait) {
			return
		}
	}
}

// sleep waits for dur or until ctx ends, reporting whether it waited fully.
func sleep(ctx context.Context, dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// cutShort marks err as coming from the shutdown when ctx has ended, so
// the record blames the shutdown rather than the other end.
func cutShort(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("shutting down: %w", err)
}

// permanentError marks a failure that retrying cannot fix: a bad
// configuration, address or URL.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// statusError is an HTTP response outside 2xx, as a failure to classify.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("HTTP status %d", int(e)) }

// retryable reports whether a failed delivery may succeed later. Worth
// retrying: network trouble (refused or reset connections, timeouts,
// context deadlines), HTTP 5xx responses and temporary (4xx) SMTP replies.
// Not worth it: failures marked permanent, addresses the delivery policy
// refuses, shutdown (context.Canceled), rejected certificates, other HTTP
// statuses (429 included: a receiver that asks for less gets no more) and
// permanent (5xx) SMTP replies.
func retryable(err error) bool {
	var perm permanentError
	var status statusError
	var smtpErr *smtp.SMTPError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case err == nil, errors.As(err, &perm), errors.Is(err, errRefused), errors.Is(err, context.Canceled):
		return false
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return false
	case errors.As(err, &status):
		return status >= 500
	case errors.As(err, &smtpErr):
		return smtpErr.Temporary()
	}
	return true
}
