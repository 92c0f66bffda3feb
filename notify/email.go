package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"builds/app"
)

// message is one outgoing email before encoding.
type message struct {
	From      *mail.Address
	To, Cc    []*mail.Address
	Subject   string
	InReplyTo string // "<id@host>" or ""
	MessageID string // "<id@host>"
	Date      time.Time
	Body      string // text, "\n" line ends
}

// recipients returns every envelope recipient (To then Cc).
func (m *message) recipients() []string {
	var out []string
	for _, a := range append(append([]*mail.Address{}, m.To...), m.Cc...) {
		out = append(out, a.Address)
	}
	return out
}

// parseAddresses parses an RFC 5322 address list; "" gives none.
func parseAddresses(field, list string) ([]*mail.Address, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	addrs, err := mail.ParseAddressList(list)
	if err != nil {
		return nil, fmt.Errorf("invalid %s address list %q: %w", field, list, err)
	}
	return addrs, nil
}

// normalizeMsgID returns a Message-ID reference in angle brackets. Line
// breaks and spaces are refused: they would let a manifest inject headers.
func normalizeMsgID(id string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return "", nil
	}
	if strings.ContainsAny(id, " \t\r\n") || strings.Count(id, "<") > 1 || strings.Count(id, ">") > 1 {
		return "", fmt.Errorf("invalid in_reply_to %q: want one message id such as <id@host>", id)
	}
	if !strings.HasPrefix(id, "<") {
		id = "<" + id
	}
	if !strings.HasSuffix(id, ">") {
		id += ">"
	}
	return id, nil
}

// newMessageID makes "<base36(unix nanos).base36(64 random bits)@domain>"
// (behaviour.md §2.9).
func newMessageID(now time.Time, domain string) string {
	r, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return fmt.Sprintf("<%s.%s@%s>", strconv.FormatInt(now.UnixNano(), 36), r.Text(36), domain)
}

// encode renders the message as RFC 5322 text with CRLF line ends. The
// body is quoted-printable UTF-8, so it survives any relay; with signer
// set, it is wrapped in a PGP/MIME (RFC 3156) multipart/signed entity.
func (m *message) encode(signer *pgpSigner) ([]byte, error) {
	if len(m.To)+len(m.Cc) == 0 {
		return nil, errors.New("encode email: no recipients")
	}
	var h bytes.Buffer
	header := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&h, "%s: %s\r\n", k, v)
		}
	}
	header("From", m.From.String())
	header("To", joinAddresses(m.To))
	header("Cc", joinAddresses(m.Cc))
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", m.Date.Format(time.RFC1123Z))
	header("Message-ID", m.MessageID)
	header("In-Reply-To", m.InReplyTo)
	header("References", m.InReplyTo)
	header("MIME-Version", "1.0")

	part, err := textPart(m.Body)
	if err != nil {
		return nil, err
	}
	if signer == nil {
		h.Write(part)
		return h.Bytes(), nil
	}
	signed, err := signer.multipartSigned(part)
	if err != nil {
		return nil, err
	}
	h.Write(signed)
	return h.Bytes(), nil
}

// textPart is the MIME entity (headers and body) of a text/plain part.
func textPart(body string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n"))); err != nil {
		return nil, fmt.Errorf("encode email body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("encode email body: %w", err)
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}

func joinAddresses(list []*mail.Address) string {
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// taskMarks renders "✓ build ✗ test - deploy": ✓ success, ✗ failed or
// cancelled, - any other status. Tasks whose name starts with "_" are hidden.
func taskMarks(tasks []*app.Task) string {
	var parts []string
	for _, t := range tasks {
		if strings.HasPrefix(t.Name, "_") {
			continue
		}
		mark := "-"
		switch t.Status.API() { // a cancelled task is ✗, as it was as failed
		case app.TaskSuccess:
			mark = "✓"
		case app.TaskFailed:
			mark = "✗"
		}
		parts = append(parts, mark+" "+t.Name)
	}
	return strings.Join(parts, " ")
}

// jobURL is the job's page, as linked from emails.
func jobURL(cfg *app.Config, owner *app.User, jobID int64) string {
	return cfg.JobURL(owner.Username, jobID)
}

// elapsed is the "in 3m12s" of emails: from created to end, whole seconds.
func elapsed(from, to time.Time) string {
	d := to.Sub(from).Truncate(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String()
}

// jobEmail returns the subject and body of a job's result email
// (behaviour.md §2.9). The subject falls back to the site name where
// builds.sr.ht writes its own name.
func jobEmail(cfg *app.Config, job *app.Job, owner *app.User, tasks []*app.Task, end time.Time) (subject, body string) {
	status := string(job.Status)
	label := cfg.Builds.SiteName
	if job.Tags != "" {
		label = job.Tags
	}
	subject = fmt.Sprintf("[%s] build %s", label, status)
	name := "Job"
	if job.Tags != "" {
		name = job.Tags
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d: %s in %s\n\n", name, job.ID, strings.ToUpper(status), elapsed(job.Created, end))
	if job.Note != nil && strings.TrimSpace(*job.Note) != "" {
		b.WriteString(strings.TrimRight(*job.Note, "\n") + "\n\n")
	}
	b.WriteString(jobURL(cfg, owner, job.ID) + "\n")
	if marks := taskMarks(tasks); marks != "" {
		b.WriteString("\n" + marks + "\n")
	}
	return subject, b.String()
}

// commonTagPrefix is the longest "/"-separated prefix shared by every
// job's tags ("" if some job has none).
func commonTagPrefix(jobs []*app.Job) string {
	var prefix []string
	for i, j := range jobs {
		tags := j.TagList()
		if i == 0 {
			prefix = tags
			continue
		}
		n := 0
		for n < len(prefix) && n < len(tags) && prefix[n] == tags[n] {
			n++
		}
		prefix = prefix[:n]
	}
	return strings.Join(prefix, "/")
}

// groupEmail returns the subject and body of a group's result email: one
// line per job, "✓|✗ #<id> <STATUS> <tags or image> <url>", in columns.
func groupEmail(cfg *app.Config, g *app.JobGroup, status app.JobStatus, jobs []*app.Job, owner *app.User, end time.Time) (subject, body string) {
	prefix := commonTagPrefix(jobs)
	label, name := cfg.Builds.SiteName, "Job group"
	if prefix != "" {
		label, name = prefix, prefix
	}
	subject = fmt.Sprintf("[%s] build %s", label, status)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s in %s\n\n", name, strings.ToUpper(string(status)), elapsed(g.Created, end))
	if g.Note != nil && strings.TrimSpace(*g.Note) != "" {
		b.WriteString(strings.TrimRight(*g.Note, "\n") + "\n\n")
	}
	statusW, descW := 0, 0
	for _, j := range jobs {
		statusW = max(statusW, len(j.Status))
		descW = max(descW, len(jobDesc(j)))
	}
	for _, j := range jobs {
		mark := "✗"
		if j.Status == app.JobSuccess {
			mark = "✓"
		}
		fmt.Fprintf(&b, "%s #%d %-*s %-*s %s\n", mark, j.ID, statusW, strings.ToUpper(string(j.Status)),
			descW, jobDesc(j), jobURL(cfg, owner, j.ID))
	}
	return subject, b.String()
}

func jobDesc(j *app.Job) string {
	if j.Tags != "" {
		return j.Tags
	}
	return j.Image
}

// emailTrigger sends the results email, retrying by the mail policy
// (network errors, SMTP 4xx replies). Attempts and the per-attempt time
// limit are [mail] max-attempts and timeout.
func (d *Dispatcher) emailTrigger(ctx context.Context, r *run, t trigger) {
	msg, err := d.newMessage(t, r)
	if err != nil {
		d.svc.SetupLogf(r.jobID, "Error sending email: %v", err)
		d.record(r, t, "failed", err.Error(), 0)
		return
	}
	m := &mailer{cfg: d.cfg.Mail, tls: d.MailTLS, signer: d.signer, helo: d.heloName(), timeout: d.cfg.Mail.Timeout}
	p := d.mailRetry()
	p.run(ctx, func(attempt int) error {
		err := m.send(ctx, msg)
		if err == nil {
			d.svc.SetupLogf(r.jobID, "Sent build results email to %s", strings.Join(msg.recipients(), ", "))
			d.record(r, t, "sent", "sent to "+strings.Join(msg.recipients(), ", "), attempt)
			return nil
		}
		err = cutShort(ctx, err)
		d.svc.SetupLogf(r.jobID, "Error sending email: %v", err)
		d.record(r, t, "failed", err.Error(), attempt)
		return err
	}, d.logRetry(r, "email", p))
}

// newMessage builds the email of a trigger; bad addresses are errors.
func (d *Dispatcher) newMessage(t trigger, r *run) (*message, error) {
	from, err := mail.ParseAddress(d.cfg.Mail.From)
	if err != nil {
		return nil, fmt.Errorf("invalid [mail] from %q: %w", d.cfg.Mail.From, err)
	}
	to, err := parseAddresses("to", t.to)
	if err != nil {
		return nil, err
	}
	cc, err := parseAddresses("cc", t.cc)
	if err != nil {
		return nil, err
	}
	if len(to)+len(cc) == 0 {
		return nil, errors.New("Expected `to` in email trigger")
	}
	irt, err := normalizeMsgID(t.inReplyTo)
	if err != nil {
		return nil, err
	}
	subject, body := r.email()
	now := d.svc.Now()
	domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	return &message{From: from, To: to, Cc: cc, Subject: subject, InReplyTo: irt,
		MessageID: newMessageID(now, domain), Date: now, Body: body}, nil
}

// heloName is the name given to the SMTP server: the public host name,
// or an address literal.
func (d *Dispatcher) heloName() string {
	name := d.cfg.RunnerName()
	if ip, err := netip.ParseAddr(name); err == nil {
		if ip.Is6() {
			return "[IPv6:" + ip.String() + "]"
		}
		return "[" + ip.String() + "]"
	}
	return name
}
