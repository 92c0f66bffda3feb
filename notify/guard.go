package notify

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"builds/app"
)

// addrPolicy decides which addresses outgoing deliveries may reach. The
// check runs on the address actually being dialled (net.Dialer.Control),
// after DNS resolution, so a host name pointing at 127.0.0.1, a DNS answer
// that changes between check and connect, and redirects to internal hosts
// are all caught: every connection, including each redirect's, passes
// through it.
type addrPolicy struct {
	allowPrivate  bool
	allowLoopback bool
}

// errRefused marks a delivery refused by the address policy; retrying it
// is pointless.
var errRefused = errors.New("address refused")

// check returns an error naming why ip may not be dialled.
func (p addrPolicy) check(ip netip.Addr) error {
	ip = ip.Unmap()
	why := ""
	switch {
	case ip.IsLoopback():
		if p.allowLoopback {
			return nil
		}
		why = "a loopback"
	case ip.IsUnspecified() || ip.Is4() && ip.As4()[0] == 0:
		why = "an unspecified"
	case ip.IsLinkLocalUnicast():
		why = "a link-local"
	case ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		why = "a multicast or broadcast"
	case ip.IsPrivate():
		if p.allowPrivate {
			return nil
		}
		why = "a private network"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s is %s address", errRefused, ip, why)
}

// control is a net.Dialer Control function enforcing the policy.
func (p addrPolicy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialled address %q", errRefused, address)
	}
	return p.check(ap.Addr())
}

// newHTTPClient returns the client used for every outgoing delivery: no
// proxy from the environment (it would hide the real destination from the
// check), the address policy on every dial, and at most 5 redirects, each
// to http or https.
func newHTTPClient(cfg *app.Config) *http.Client {
	p := addrPolicy{allowPrivate: cfg.Webhooks.AllowPrivate, allowLoopback: cfg.Webhooks.AllowLoopback}
	dialer := &net.Dialer{Timeout: cfg.Webhooks.Timeout, Control: p.control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          20,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.Webhooks.Timeout,
		ResponseHeaderTimeout: cfg.Webhooks.Timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   cfg.Webhooks.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("refusing redirect to %s URL", req.URL.Scheme)
			}
			return nil
		},
	}
}
