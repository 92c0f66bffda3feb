package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"builds/app"
)

const emailManifest = `image: debian/stable
tasks:
  - build: make
  - test: make check
  - _hidden: echo hidden
  - deploy: make deploy
triggers:
  - action: email
    condition: always
    to: "Alice Example <alice@example.org>, bob@example.org"
    cc: carol@example.org
    in_reply_to: "<patch-1@lists.example.org>"
`

var emailTasks = map[string]app.TaskStatus{"build": app.TaskSuccess, "test": app.TaskFailed, "_hidden": app.TaskSuccess}

func TestEmailTrigger(t *testing.T) {
	cert, pool := testCert(t)
	note := "Fix the frobnicator\n"
	tests := []struct {
		name       string
		encryption string
		user, pass string
	}{
		{name: "STARTTLSWithAuth", encryption: "starttls", user: "ci", pass: "s3cret"},
		{name: "ImplicitTLSWithAuth", encryption: "tls", user: "ci", pass: "s3cret"},
		{name: "PlainNoAuth", encryption: "none"},
		{name: "PlainLoopbackAuth", encryption: "none", user: "ci", pass: "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := newMailServer(t, map[string]string{"none": "none", "starttls": "starttls", "tls": "tls"}[tt.encryption], cert)
			ms.user, ms.pass = tt.user, tt.pass
			cfg := testConfig(t)
			cfg.Mail.SMTPHost, cfg.Mail.SMTPPort, cfg.Mail.SMTPEncryption = "127.0.0.1", ms.port, tt.encryption
			cfg.Mail.SMTPUser, cfg.Mail.SMTPPassword = tt.user, tt.pass
			e := newEnv(t, cfg, func(d *Dispatcher) { d.MailTLS = &tls.Config{RootCAs: pool} })

			job := e.runToEnd(jobSpec{manifest: emailManifest, tags: "frob/main", note: &note, tasks: emailTasks}, app.JobFailed)
			recs := e.deliveries(job.ID, 1)
			if recs[0].Status != "sent" || recs[0].Action != "email" || recs[0].Attempts != 1 {
				t.Fatalf("delivery record = %+v", recs[0])
			}
			msgs := ms.messages()
			if len(msgs) != 1 {
				t.Fatalf("got %d messages, want 1", len(msgs))
			}
			got := msgs[0]
			if got.tls != (tt.encryption != "none") {
				t.Errorf("tls = %v for %s", got.tls, tt.encryption)
			}
			if got.authUser != tt.user {
				t.Errorf("authenticated as %q, want %q", got.authUser, tt.user)
			}
			if got.from != "ci@example.org" {
				t.Errorf("envelope from = %q", got.from)
			}
			if want := "alice@example.org bob@example.org carol@example.org"; strings.Join(got.to, " ") != want {
				t.Errorf("envelope to = %q, want %q", got.to, want)
			}
			msg, body := parseMail(t, got.data)
			wantHeaders := map[string]string{
				"From":         `"CI" <ci@example.org>`,
				"To":           `"Alice Example" <alice@example.org>, <bob@example.org>`,
				"Cc":           "<carol@example.org>",
				"Subject":      "[frob/main] build failed",
				"In-Reply-To":  "<patch-1@lists.example.org>",
				"References":   "<patch-1@lists.example.org>",
				"Content-Type": "text/plain; charset=utf-8",
			}
			for k, want := range wantHeaders {
				if v := msg.Header.Get(k); v != want {
					t.Errorf("%s = %q, want %q", k, v, want)
				}
			}
			if id := msg.Header.Get("Message-ID"); !regexp.MustCompile(`^<[0-9a-z]+\.[0-9a-z]+@example\.org>$`).MatchString(id) {
				t.Errorf("Message-ID = %q", id)
			}
			if _, err := msg.Header.Date(); err != nil {
				t.Errorf("Date: %v", err)
			}
			want := fmt.Sprintf("frob/main #%d: FAILED in 3m12s\n\nFix the frobnicator\n\nhttps://ci.example.org/~alice/job/%d\n\n✓ build ✗ test - deploy\n", job.ID, job.ID)
			if body != want {
				t.Errorf("body:\n%q\nwant:\n%q", body, want)
			}
			log := e.setupLog(job.ID)
			for _, line := range []string{"Processing post-failed triggers...\n", "Sent build results email to alice@example.org, bob@example.org, carol@example.org\n"} {
				if !strings.Contains(log, line) {
					t.Errorf("setup log lacks %q:\n%s", line, log)
				}
			}
		})
	}
}

// parseMail parses a received message and decodes its text body.
func parseMail(t *testing.T, data string) (*mail.Message, string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		return msg, ""
	}
	raw, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return msg, strings.ReplaceAll(string(raw), "\r\n", "\n")
}

func TestEmailTriggerConditions(t *testing.T) {
	ms := newMailServer(t, "none", nil)
	cfg := testConfig(t)
	cfg.Mail.SMTPHost, cfg.Mail.SMTPPort, cfg.Mail.SMTPEncryption = "127.0.0.1", ms.port, "none"
	e := newEnv(t, cfg)
	manifest := `image: debian/stable
tasks:
  - build: make
triggers:
  - {action: email, condition: always, to: always@example.org}
  - {action: email, condition: success, to: success@example.org}
  - {action: email, condition: failure, to: failure@example.org}
`
	tests := []struct {
		name   string
		status app.JobStatus
		want   string // recipients that get mail
	}{
		{name: "Success", status: app.JobSuccess, want: "always success"},
		{name: "Failed", status: app.JobFailed, want: "always failure"},
		{name: "Timeout", status: app.JobTimeout, want: "always failure"},
		{name: "Cancelled", status: app.JobCancelled, want: "always failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(ms.messages())
			job := e.runToEnd(jobSpec{manifest: manifest, tags: "cond-" + strings.ToLower(tt.name)}, tt.status)
			recs := e.deliveries(job.ID, 3)
			var sent []string
			for _, r := range recs {
				if r.Status == "sent" {
					sent = append(sent, strings.TrimSuffix(r.Target, "@example.org"))
				} else if r.Status != "skipped" {
					t.Errorf("record %+v", r)
				}
			}
			if strings.Join(sent, " ") != tt.want {
				t.Errorf("sent to %v, want %s", sent, tt.want)
			}
			if n := len(ms.messages()) - before; n != 2 {
				t.Errorf("server got %d messages, want 2", n)
			}
			if log := e.setupLog(job.ID); strings.Count(log, "Skipping trigger, condition unmet\n") != 1 {
				t.Errorf("setup log:\n%s", log)
			}
			got, err := e.svc.Job(app.SystemContext(context.Background()), job.ID)
			if err != nil || got.Status != tt.status {
				t.Errorf("job status changed to %v (%v)", got.Status, err)
			}
		})
	}
}

func TestEmailTriggerErrors(t *testing.T) {
	cert, _ := testCert(t)
	tests := []struct {
		name     string
		mode     string // mail server mode
		setup    func(cfg *app.Config, ms *mailServer)
		attempts int    // records expected
		wantMsg  string // in the last record and the setup log
	}{
		{
			name: "UntrustedCertificate", mode: "starttls", attempts: 1, wantMsg: "certificate",
			setup: func(cfg *app.Config, ms *mailServer) { cfg.Mail.SMTPEncryption = "starttls" },
		},
		{
			name: "NoSTARTTLSOffered", mode: "none", attempts: 1, wantMsg: "STARTTLS",
			setup: func(cfg *app.Config, ms *mailServer) { cfg.Mail.SMTPEncryption = "starttls" },
		},
		{
			name: "WrongPassword", mode: "none", attempts: 1, wantMsg: "smtp auth",
			setup: func(cfg *app.Config, ms *mailServer) {
				ms.user, ms.pass = "ci", "right"
				cfg.Mail.SMTPUser, cfg.Mail.SMTPPassword = "ci", "wrong"
			},
		},
		{
			name: "TemporaryFailureRetried", mode: "none", attempts: 3, wantMsg: "sent to",
			setup: func(cfg *app.Config, ms *mailServer) { ms.failNext = 2 },
		},
		{
			// Email retries obey [mail] max-attempts, not [webhooks].
			name: "MailAttemptsNotWebhookAttempts", mode: "none", attempts: 2, wantMsg: "try again later",
			setup: func(cfg *app.Config, ms *mailServer) {
				ms.failNext = 5
				cfg.Mail.MaxAttempts, cfg.Webhooks.MaxAttempts = 2, 1
			},
		},
		{
			name: "NotConfigured", mode: "none", attempts: 1, wantMsg: "smtp-host is empty",
			setup: func(cfg *app.Config, ms *mailServer) { cfg.Mail.SMTPHost = "" },
		},
	}
	manifest := "image: debian/stable\ntasks:\n  - build: make\ntriggers:\n  - {action: email, condition: always, to: dev@example.org}\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := newMailServer(t, tt.mode, cert)
			cfg := testConfig(t)
			cfg.Mail.SMTPHost, cfg.Mail.SMTPPort, cfg.Mail.SMTPEncryption = "127.0.0.1", ms.port, "none"
			tt.setup(cfg, ms)
			e := newEnv(t, cfg)
			job := e.runToEnd(jobSpec{manifest: manifest}, app.JobSuccess)
			recs := e.deliveries(job.ID, tt.attempts)
			last := recs[len(recs)-1]
			waitFor(t, "final record", func() bool {
				recs, _ = e.db.FindTriggerDeliveries(context.Background(), job.ID)
				last = recs[len(recs)-1]
				return last.Status == "sent" || last.Attempts == tt.attempts || tt.attempts == 1
			})
			if len(recs) != tt.attempts || last.Attempts != tt.attempts || !strings.Contains(last.Message, tt.wantMsg) {
				for _, r := range recs {
					t.Logf("record %+v", r)
				}
				t.Fatalf("want %d records, the last mentioning %q", tt.attempts, tt.wantMsg)
			}
			if tt.wantMsg != "sent to" && !strings.Contains(e.setupLog(job.ID), "Error sending email: ") {
				t.Errorf("setup log:\n%s", e.setupLog(job.ID))
			}
		})
	}
}

func TestEmailPGPSigned(t *testing.T) {
	ms := newMailServer(t, "none", nil)
	cfg := testConfig(t)
	cfg.Mail.SMTPHost, cfg.Mail.SMTPPort, cfg.Mail.SMTPEncryption = "127.0.0.1", ms.port, "none"
	entity, err := openpgp.NewEntity("CI", "", "ci@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	var keyBuf bytes.Buffer
	w, err := armor.Encode(&keyBuf, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := entity.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	cfg.Mail.PGPKey = filepath.Join(t.TempDir(), "mail.asc")
	if err := os.WriteFile(cfg.Mail.PGPKey, keyBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, cfg)
	job := e.runToEnd(jobSpec{manifest: emailManifest, tasks: emailTasks}, app.JobSuccess)
	if recs := e.deliveries(job.ID, 1); recs[0].Status != "sent" {
		t.Fatalf("record %+v", recs[0])
	}
	raw := ms.messages()[0].data
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/signed" || params["protocol"] != "application/pgp-signature" || params["micalg"] != "pgp-sha256" {
		t.Fatalf("Content-Type = %q", msg.Header.Get("Content-Type"))
	}
	body, _ := io.ReadAll(msg.Body)
	// Verifiers canonicalize line ends to CRLF, the form that was signed
	// (RFC 3156 §5), whatever the mail store keeps.
	body = bytes.ReplaceAll(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	b := params["boundary"]
	start := bytes.Index(body, []byte("--"+b+"\r\n"))
	if start < 0 {
		t.Fatalf("no parts in:\n%s", body)
	}
	start += len(b) + 4
	end := bytes.Index(body[start:], []byte("\r\n--"+b+"\r\n"))
	if end < 0 {
		t.Fatalf("no second part in:\n%s", body)
	}
	end += start
	signed := body[start:end] // the CRLF before the boundary belongs to it
	sigStart := end + len(b) + 6
	sigPart, err := mail.ReadMessage(bytes.NewReader(body[sigStart:]))
	if err != nil {
		t.Fatal(err)
	}
	if ct := sigPart.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/pgp-signature") {
		t.Fatalf("second part Content-Type = %q", ct)
	}
	sig, _ := io.ReadAll(sigPart.Body)
	sig = sig[:bytes.Index(sig, []byte("--"+b+"--"))]
	if _, err := openpgp.CheckArmoredDetachedSignature(openpgp.EntityList{entity}, bytes.NewReader(signed), bytes.NewReader(sig), nil); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	inner, text := parseMail(t, string(signed))
	if inner.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.Contains(text, "✓ build ✗ test - deploy") {
		t.Errorf("signed part:\n%s", signed)
	}
}

func TestEmailText(t *testing.T) {
	cfg := testConfig(t)
	owner := &app.User{Username: "alice"}
	note := "line one\nline two"
	tests := []struct {
		name        string
		job         app.Job
		tasks       []*app.Task
		wantSubject string
		wantBody    string
	}{
		{
			name:        "NoTagsNoNote",
			job:         app.Job{ID: 7, Status: app.JobSuccess, Created: t0},
			tasks:       []*app.Task{{Name: "build", Status: app.TaskSuccess}},
			wantSubject: "[builds] build success",
			wantBody:    "Job #7: SUCCESS in 3m12s\n\nhttps://ci.example.org/~alice/job/7\n\n✓ build\n",
		},
		{
			name:        "TagsNoteHiddenTasks",
			job:         app.Job{ID: 8, Status: app.JobTimeout, Created: t0, Tags: "a/b", Note: &note},
			tasks:       []*app.Task{{Name: "_setup", Status: app.TaskFailed}, {Name: "x", Status: app.TaskSkipped}, {Name: "y", Status: app.TaskRunning}, {Name: "z", Status: app.TaskCancelled}},
			wantSubject: "[a/b] build timeout",
			wantBody:    "a/b #8: TIMEOUT in 3m12s\n\nline one\nline two\n\nhttps://ci.example.org/~alice/job/8\n\n- x - y ✗ z\n",
		},
		{
			name:        "NoTasks",
			job:         app.Job{ID: 9, Status: app.JobCancelled, Created: t0},
			wantSubject: "[builds] build cancelled",
			wantBody:    "Job #9: CANCELLED in 3m12s\n\nhttps://ci.example.org/~alice/job/9\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subject, body := jobEmail(cfg, &tt.job, owner, tt.tasks, t0.Add(finishAfter))
			if subject != tt.wantSubject || body != tt.wantBody {
				t.Errorf("got %q\n%q\nwant %q\n%q", subject, body, tt.wantSubject, tt.wantBody)
			}
		})
	}
}

func TestNormalizeMsgID(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "Bracketed", in: "<a@b>", want: "<a@b>"},
		{name: "Bare", in: "a@b", want: "<a@b>"},
		{name: "Empty", in: "", want: ""},
		{name: "HeaderInjection", in: "<a@b>\r\nBcc: evil@example.org", wantErr: true},
		{name: "Two", in: "<a@b> <c@d>", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := normalizeMsgID(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("normalizeMsgID(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

func TestNewDispatcherErrors(t *testing.T) {
	locked, err := openpgp.NewEntity("CI", "", "ci@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := locked.EncryptPrivateKeys([]byte("passphrase"), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err := locked.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	lockedPath := filepath.Join(t.TempDir(), "locked.asc")
	os.WriteFile(lockedPath, buf.Bytes(), 0o600)
	publicPath := filepath.Join(t.TempDir(), "public.asc")
	buf.Reset()
	w, _ = armor.Encode(&buf, openpgp.PublicKeyType, nil)
	locked.Serialize(w)
	w.Close()
	os.WriteFile(publicPath, buf.Bytes(), 0o600)

	tests := []struct {
		name  string
		setup func(cfg *app.Config)
		want  string
	}{
		{name: "ErrMissingPGPKey", setup: func(cfg *app.Config) { cfg.Mail.PGPKey = "/nonexistent/key.asc" }, want: "load pgp key"},
		{name: "ErrPassphraseProtected", setup: func(cfg *app.Config) { cfg.Mail.PGPKey = lockedPath }, want: "passphrase-protected"},
		{name: "ErrPublicKeyOnly", setup: func(cfg *app.Config) { cfg.Mail.PGPKey = publicPath }, want: "no private key usable for signing"},
		{name: "ErrBadFrom", setup: func(cfg *app.Config) { cfg.Mail.From = "not an address" }, want: "mail.from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			tt.setup(cfg)
			svc, err := app.NewService(nil, cfg, make([]byte, 32), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := NewDispatcher(svc, cfg, nil, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
