// Package notify tells people and programs what happened to builds: it
// runs manifest and group triggers (email and webhook) when jobs finish
// and delivers user webhooks (JOB_CREATED, JOB_UPDATED) from a durable
// queue in the database.
//
// The Dispatcher is the app.EventSink. Events are handed over in memory
// and handled by one goroutine, in order; everything that talks to the
// network runs in goroutines of its own with timeouts, so a slow SMTP
// server or a dead webhook endpoint never holds up a build, another job's
// triggers or other deliveries.
package notify

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"sync"
	"time"

	"builds/app"
)

// WebhookRenderer evaluates a user webhook subscription's GraphQL query
// for one event in webhook context (as the subscription's creator,
// read-only, within the creating token's grants) and returns the JSON body
// to deliver; GraphQL errors belong in that body. An error means the
// subscription can no longer act (creator gone, token revoked or expired)
// and the delivery is dropped. *web.Server implements it.
type WebhookRenderer interface {
	ExecuteWebhookQuery(ctx context.Context, sub *app.WebhookSubscription, payload app.WebhookPayload) ([]byte, error)
}

// RendererFunc adapts a function to WebhookRenderer.
type RendererFunc func(ctx context.Context, sub *app.WebhookSubscription, payload app.WebhookPayload) ([]byte, error)

// ExecuteWebhookQuery calls f.
func (f RendererFunc) ExecuteWebhookQuery(ctx context.Context, sub *app.WebhookSubscription, payload app.WebhookPayload) ([]byte, error) {
	return f(ctx, sub, payload)
}

var _ app.JobListener = (*Dispatcher)(nil)

// Dispatcher runs triggers and user webhooks. Create it with NewDispatcher,
// adjust the exported fields if needed, add it to the Service with Listen and
// call Start; Close stops it.
type Dispatcher struct {
	// Backoff is the wait before the first retry of a failed delivery; it
	// doubles with every further attempt, up to MaxBackoff. Every sender
	// retries with it; only the attempt limits differ (retry.go).
	Backoff    time.Duration
	MaxBackoff time.Duration
	// PollInterval is how often the database is checked for due user
	// webhook deliveries (new ones are sent at once).
	PollInterval time.Duration
	// Concurrency is how many user webhook deliveries run at once, and how
	// many jobs' triggers the start-up scan resumes at once.
	Concurrency int
	// MailTLS is the base TLS configuration for SMTP (nil: system roots).
	MailTLS *tls.Config
	// CloseGrace is how long Close lets running triggers finish.
	CloseGrace time.Duration

	svc    *app.Service
	cfg    *app.Config
	log    *slog.Logger
	render WebhookRenderer
	key    ed25519.PrivateKey
	client *http.Client
	signer *pgpSigner

	mu       sync.Mutex
	queue    []jobEvent
	handling bool // the event loop is working on an event
	closing  bool
	inflight map[int64]bool // subscriptions with a delivery being sent
	// jobsBusy and groupsBusy hold the jobs whose triggers, and the groups
	// whose group triggers, this process is processing (jobtriggers.go).
	jobsBusy   map[int64]bool
	groupsBusy map[int64]bool
	triggers   sync.WaitGroup // running trigger batches

	wakeEvents     chan struct{}
	wakeDeliveries chan struct{}
	wakeStatuses   chan struct{}
	eventsDone     chan struct{}
	resumeDone     chan struct{} // closed when the start-up scan has started all it found
	ctx            context.Context
	cancel         context.CancelFunc
	wg             sync.WaitGroup
}

type jobEvent struct {
	event app.WebhookEvent
	job   app.Job // a copy: the state when the event happened
	date  time.Time
}

// NewDispatcher loads the signing keys (LoadKey, and [mail] pgp-key if
// set) and returns a stopped Dispatcher. render may be nil, in which case
// user webhooks are not delivered (and a warning is logged per event).
func NewDispatcher(svc *app.Service, cfg *app.Config, log *slog.Logger, render WebhookRenderer) (*Dispatcher, error) {
	if log == nil {
		log = slog.Default()
	}
	key, err := LoadKey(cfg)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		Backoff:        10 * time.Second,
		MaxBackoff:     10 * time.Minute,
		PollInterval:   5 * time.Second,
		Concurrency:    8,
		CloseGrace:     5 * time.Second,
		svc:            svc,
		cfg:            cfg,
		log:            log,
		render:         render,
		key:            key,
		client:         newHTTPClient(cfg),
		inflight:       map[int64]bool{},
		jobsBusy:       map[int64]bool{},
		groupsBusy:     map[int64]bool{},
		wakeEvents:     make(chan struct{}, 1),
		wakeDeliveries: make(chan struct{}, 1),
		wakeStatuses:   make(chan struct{}, 1),
		eventsDone:     make(chan struct{}),
		resumeDone:     make(chan struct{}),
	}
	if cfg.Mail.PGPKey != "" {
		if d.signer, err = loadPGPSigner(cfg.Mail.PGPKey); err != nil {
			return nil, err
		}
	}
	if _, err := mail.ParseAddress(cfg.Mail.From); err != nil {
		return nil, fmt.Errorf("new dispatcher: mail.from %q: %w", cfg.Mail.From, err)
	}
	return d, nil
}

// PublicKey returns the base64 Ed25519 public key receivers verify
// payload signatures with.
func (d *Dispatcher) PublicKey() string { return PublicKey(d.key) }

// Start runs the event handler and the delivery worker until Close (or,
// for network work, until ctx ends). Deliveries left due by an earlier run
// are picked up at once, and so are the triggers of final jobs that an
// earlier run did not finish processing (it died or was stopped first).
// Events received before Start wait for it. Start after Start or Close
// does nothing.
func (d *Dispatcher) Start(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil || d.closing {
		return
	}
	d.ctx, d.cancel = context.WithCancel(app.SystemContext(ctx))
	go d.eventLoop(context.WithoutCancel(d.ctx))
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.deliveryLoop(d.ctx)
	}()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.resume(d.ctx)
	}()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.statusLoop(d.ctx)
	}()
}

// Close stops accepting events, finishes queueing webhook deliveries for
// the events already received (so they survive the restart), lets running
// triggers finish for up to CloseGrace, then stops all network work.
// Deliveries cut short stay queued in the database and are retried by the
// next Start; triggers cut short are recorded as failed and resumed by the
// next Start (those already sent are not sent again).
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		return nil
	}
	d.closing = true
	started := d.cancel != nil
	d.mu.Unlock()
	if !started {
		return nil
	}
	d.signal(d.wakeEvents)
	select {
	case <-d.eventsDone:
	case <-time.After(30 * time.Second):
		d.log.Error("notify: gave up waiting for the event queue to drain")
	}
	// Give running triggers a moment to finish before cutting them short.
	done := make(chan struct{})
	go func() {
		d.triggers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d.CloseGrace):
	}
	d.cancel()
	d.wg.Wait()
	return nil
}

// JobChanged implements app.JobListener. It only queues the event in memory
// and returns at once.
func (d *Dispatcher) JobChanged(ctx context.Context, event app.WebhookEvent, job *app.Job) {
	if job == nil {
		return
	}
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		d.log.Warn("notify: event after shutdown dropped", "job_id", job.ID, "event", event)
		return
	}
	d.queue = append(d.queue, jobEvent{event: event, job: *job, date: d.svc.Now().UTC()})
	d.mu.Unlock()
	d.signal(d.wakeEvents)
}

func (d *Dispatcher) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// eventLoop handles events one at a time, in the order they happened.
func (d *Dispatcher) eventLoop(ctx context.Context) {
	defer close(d.eventsDone)
	for {
		d.mu.Lock()
		if len(d.queue) == 0 {
			closing := d.closing
			d.mu.Unlock()
			if closing {
				return
			}
			<-d.wakeEvents
			continue
		}
		ev := d.queue[0]
		d.queue[0] = jobEvent{}
		d.queue = d.queue[1:]
		d.handling = true
		d.mu.Unlock()
		d.handle(ctx, ev)
		d.mu.Lock()
		d.handling = false
		d.mu.Unlock()
	}
}

// handle queues the event's user webhook deliveries and, for a final
// status, starts the job's triggers and its group's.
func (d *Dispatcher) handle(ctx context.Context, ev jobEvent) {
	d.queueWebhooks(ctx, ev)
	d.updateCommitStatus(ctx, ev)
	if ev.event != app.EventJobUpdated || !ev.job.Status.Final() {
		return
	}
	if d.ctx.Err() != nil {
		d.log.Warn("notify: shutting down; triggers resume at the next start", "job_id", ev.job.ID)
		return
	}
	job := ev.job
	d.startJob(&job, false, nil)
}

// goTriggers runs a trigger batch in a goroutine that Close waits for.
// startJob calls it holding d.mu and, once Close has begun, only for the
// events the event loop drains, so no batch starts after Close is waiting.
func (d *Dispatcher) goTriggers(run func()) {
	d.wg.Add(1)
	d.triggers.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.triggers.Done()
		run()
	}()
}
