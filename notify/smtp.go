package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"builds/app"
)

// mailer sends mail through the [mail] SMTP server.
type mailer struct {
	cfg     app.MailConfig
	tls     *tls.Config // base TLS settings (nil = system roots)
	signer  *pgpSigner  // nil = unsigned
	helo    string      // name given in EHLO
	timeout time.Duration
}

// send delivers msg. TLS certificates are always verified; a password is
// only ever sent over TLS (or to a loopback server).
func (m *mailer) send(ctx context.Context, msg *message) error {
	if m.cfg.SMTPHost == "" {
		return permanent(errors.New("mail is not configured ([mail] smtp-host is empty)"))
	}
	data, err := msg.encode(m.signer)
	if err != nil {
		return permanent(err)
	}
	// One deadline for the whole exchange: the SMTP library's own
	// per-command timeouts are minutes long.
	ctx, cancel := context.WithTimeout(ctx, 3*m.timeout)
	defer cancel()
	c, err := m.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := m.auth(c); err != nil {
		return err
	}
	if err := c.SendMail(msg.From.Address, msg.recipients(), bytes.NewReader(data)); err != nil {
		return fmt.Errorf("send mail: %w", err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("send mail: quit: %w", err)
	}
	return nil
}

// dial connects and, per [mail] smtp-encryption, secures the connection.
func (m *mailer) dial(ctx context.Context) (*smtp.Client, error) {
	addr := net.JoinHostPort(m.cfg.SMTPHost, strconv.Itoa(m.cfg.SMTPPort))
	d := &net.Dialer{Timeout: m.timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to smtp server: %w", err)
	}
	// Closing the connection is the only way to interrupt the client; the
	// caller's deadline covers the whole exchange.
	context.AfterFunc(ctx, func() { conn.Close() })
	tc := &tls.Config{}
	if m.tls != nil {
		tc = m.tls.Clone()
	}
	tc.ServerName = m.cfg.SMTPHost
	var c *smtp.Client
	switch m.cfg.SMTPEncryption {
	case "tls":
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("smtp tls handshake: %w", err)
		}
		c = smtp.NewClient(tconn)
	case "none":
		c = smtp.NewClient(conn)
	default: // starttls
		if c, err = smtp.NewClientStartTLS(conn, tc); err != nil {
			conn.Close()
			return nil, fmt.Errorf("smtp starttls: %w", err)
		}
	}
	c.CommandTimeout = m.timeout
	c.SubmissionTimeout = 2 * m.timeout
	if err := c.Hello(m.helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("smtp hello: %w", err)
	}
	return c, nil
}

// auth logs in when [mail] smtp-user is set.
func (m *mailer) auth(c *smtp.Client) error {
	if m.cfg.SMTPUser == "" {
		return nil
	}
	if _, isTLS := c.TLSConnectionState(); !isTLS && !isLoopbackHost(m.cfg.SMTPHost) {
		return permanent(errors.New("refusing to send the smtp password over an unencrypted connection (use smtp-encryption starttls or tls)"))
	}
	var sc sasl.Client
	switch {
	case c.SupportsAuth("PLAIN"):
		sc = sasl.NewPlainClient("", m.cfg.SMTPUser, m.cfg.SMTPPassword)
	case c.SupportsAuth("LOGIN"):
		sc = sasl.NewLoginClient(m.cfg.SMTPUser, m.cfg.SMTPPassword)
	default:
		return permanent(errors.New("smtp server offers neither PLAIN nor LOGIN authentication"))
	}
	if err := c.Auth(sc); err != nil {
		return fmt.Errorf("smtp auth: %w", err)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
