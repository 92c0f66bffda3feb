package app

// The guest network policy: what a build VM may reach ([runner]
// guest-network and guest-allow). runner/guestnet enforces it on every
// connection a guest opens; the rules live here.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// GuestNetwork is how far a guest's network reaches ([runner]
// guest-network).
type GuestNetwork string

// The guest network modes.
const (
	// GuestInternet lets guests reach the outside world and the LAN, but
	// not the host itself, loopback or link-local addresses.
	GuestInternet GuestNetwork = "internet"
	// GuestNoLAN is GuestInternet without the private ranges either.
	GuestNoLAN GuestNetwork = "no-lan"
	// GuestNone lets guests reach nothing but the services in guest-allow.
	GuestNone GuestNetwork = "none"
)

// ParseGuestNetwork checks a guest-network value.
func ParseGuestNetwork(s string) (GuestNetwork, error) {
	switch m := GuestNetwork(s); m {
	case GuestInternet, GuestNoLAN, GuestNone:
		return m, nil
	}
	return "", fmt.Errorf("invalid value %q (want internet, no-lan or none)", s)
}

// The guest network's fixed addresses: those of QEMU's user-mode
// networking, which images configure statically (images/README.md).
var (
	GuestSubnet  = netip.MustParsePrefix("10.0.2.0/24")
	GuestGateway = netip.MustParseAddr("10.0.2.2")  // the host, as the guest sees it
	GuestDNS     = netip.MustParseAddr("10.0.2.3")  // the resolver relay
	GuestAddr    = netip.MustParseAddr("10.0.2.15") // the guest itself
)

// Ranges the policy refuses.
var (
	guestLinkLocal = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10")}
	// guestPrivate are refused in no-lan: RFC 1918, carrier-grade NAT (where
	// overlay VPNs live), IPv6 unique-local.
	guestPrivate = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("fc00::/7"),
	}
)

// hostAddrsTTL bounds how stale the list of the host's own addresses may
// be (DHCP renewals, VPNs coming up).
const hostAddrsTTL = 5 * time.Second

// GuestPolicy decides where guest-initiated connections may go. One
// policy serves every VM of a runner.
type GuestPolicy struct {
	mode  GuestNetwork
	allow []netip.AddrPort
	// hostAddrs lists the host's interface addresses (replaced in tests).
	hostAddrs func() ([]netip.Addr, error)

	mu      sync.Mutex
	cached  []netip.Addr
	fetched time.Time
}

// NewGuestPolicy returns the policy for mode with the allowed host
// services. A loopback entry is reached from the guest at GuestGateway
// with the same port, so two loopback entries must not share a port.
func NewGuestPolicy(mode GuestNetwork, allow []netip.AddrPort) (*GuestPolicy, error) {
	if _, err := ParseGuestNetwork(string(mode)); err != nil {
		return nil, err
	}
	if err := CheckGuestAllow(allow); err != nil {
		return nil, err
	}
	return &GuestPolicy{mode: mode, allow: allow, hostAddrs: interfaceAddrs}, nil
}

// CheckGuestAllow validates a guest-allow list.
func CheckGuestAllow(allow []netip.AddrPort) error {
	ports := map[uint16]netip.AddrPort{}
	for _, a := range allow {
		switch {
		case !a.IsValid() || a.Port() == 0:
			return fmt.Errorf("invalid address %s (want IP:port)", a)
		case a.Addr().IsUnspecified() || a.Addr().IsMulticast():
			return fmt.Errorf("%s: name one address, not a wildcard or multicast group", a)
		case a.Addr().IsLoopback():
			if prev, ok := ports[a.Port()]; ok {
				return fmt.Errorf("%s and %s would both be %s:%d in the guest", prev, a, GuestGateway, a.Port())
			}
			ports[a.Port()] = a
		}
	}
	return nil
}

// Mode returns the policy's mode.
func (p *GuestPolicy) Mode() GuestNetwork { return p.mode }

// Allowed returns the allowed host services.
func (p *GuestPolicy) Allowed() []netip.AddrPort { return p.allow }

// GuestRefusal says why a destination is closed to guests.
type GuestRefusal struct {
	Dst    netip.AddrPort
	Reason string
}

func (r *GuestRefusal) Error() string { return fmt.Sprintf("%s: %s", r.Dst, r.Reason) }

// Target returns the host-side address a guest connection to dst goes to,
// or a *GuestRefusal. dst is as the guest addressed it: GuestGateway
// stands for the host's loopback services in guest-allow. The DNS relay
// is the caller's.
func (p *GuestPolicy) Target(dst netip.AddrPort) (netip.AddrPort, error) {
	a := dst.Addr().Unmap()
	dst = netip.AddrPortFrom(a, dst.Port())
	refuse := func(reason string) (netip.AddrPort, error) {
		return netip.AddrPort{}, &GuestRefusal{Dst: dst, Reason: reason}
	}
	if a == GuestGateway {
		for _, al := range p.allow {
			if al.Addr().IsLoopback() && al.Port() == dst.Port() {
				return al, nil
			}
		}
		return refuse("the host's own services are closed to guests (list one in [runner] guest-allow)")
	}
	for _, al := range p.allow {
		if al == dst {
			return dst, nil
		}
	}
	switch {
	case p.mode == GuestNone:
		return refuse("the guest network is off ([runner] guest-network = none)")
	case GuestSubnet.Contains(a):
		return refuse("no such host on the guest network")
	case a.IsLoopback() || a.IsUnspecified():
		return refuse("loopback addresses are closed to guests")
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return refuse("multicast and broadcast are not forwarded")
	case inAny(guestLinkLocal, a):
		return refuse("link-local addresses (cloud metadata) are closed to guests")
	case p.mode == GuestNoLAN && inAny(guestPrivate, a):
		return refuse("private addresses are closed to guests ([runner] guest-network = no-lan)")
	}
	own, err := p.ownAddrs()
	if err != nil {
		return refuse("cannot list the host's addresses: " + err.Error())
	}
	for _, h := range own {
		if h == a {
			return refuse("the host's own addresses are closed to guests (list a service in [runner] guest-allow)")
		}
	}
	return dst, nil
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ownAddrs returns the host's interface addresses, cached briefly.
func (p *GuestPolicy) ownAddrs() ([]netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cached != nil && time.Since(p.fetched) < hostAddrsTTL {
		return p.cached, nil
	}
	addrs, err := p.hostAddrs()
	if err != nil {
		return nil, err
	}
	p.cached, p.fetched = addrs, time.Now()
	return addrs, nil
}

// interfaceAddrs lists the addresses of the host's interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no interface addresses")
	}
	return out, nil
}
