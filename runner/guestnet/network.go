// Package guestnet is the network a build VM sees: a user-mode TCP/IP
// stack (gVisor's netstack) in the runner's own process, attached to QEMU
// through a datagram socket. It speaks QEMU's user-mode addressing
// (10.0.2.15 for the guest, 10.0.2.2 for the host, 10.0.2.3 for DNS) and
// turns each connection the guest opens into a host socket only after
// app.GuestPolicy allowed its destination. Unlike QEMU's slirp, the
// gateway is not the host's loopback: the host's own services are closed
// to guests unless listed in [runner] guest-allow.
package guestnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"builds/app"
)

// Limits of one guest network.
const (
	mtu            = 1500
	defaultFlows   = 1024             // concurrent TCP connections and UDP flows per VM
	dialTimeout    = 30 * time.Second // outbound connect
	udpIdle        = 60 * time.Second // a UDP flow without traffic is closed
	dnsTimeout     = 3 * time.Second  // per upstream resolver and query
	socketBuffer   = 4 << 20          // SO_SNDBUF/SO_RCVBUF of the QEMU socket
	synBacklog     = 256              // handshakes being dialled at once
	nicID          = tcpip.NICID(1)
	gatewayMAC     = tcpip.LinkAddress("\x52\x55\x0a\x00\x02\x02") // QEMU slirp's
	maxDNSDatagram = 4096
	dnsInFlight    = 64 // queries being asked upstream at once; more are dropped
)

// Config configures one guest's network.
type Config struct {
	Policy *app.GuestPolicy
	// DNS lists the resolvers the relay at 10.0.2.3 asks, in order; nil
	// reads the host's /etc/resolv.conf.
	DNS []netip.AddrPort
	// MaxFlows bounds concurrent connections and UDP flows (0 = 1024), so
	// a guest cannot exhaust the runner's file descriptors.
	MaxFlows int
	// Refused is called for each connection the policy refused (may be
	// nil). It runs on the network's goroutines and must not block.
	Refused func(proto string, r *app.GuestRefusal)
	// Log receives the stack's own errors (default slog.Default()).
	Log *slog.Logger
	// dial opens host-side connections (tests replace it).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Network is one guest's user-mode network. QEMU attaches to it with
// `-netdev dgram,local.type=fd` on the file QEMUFile returns.
type Network struct {
	cfg   Config
	stack *stack.Stack
	link  *link
	peer  *os.File // QEMU's end of the socket pair
	dns   []netip.AddrPort
	flows chan struct{} // semaphore of open flows
	dnsQ  chan struct{} // semaphore of DNS queries in flight
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex
	conns  map[io.Closer]struct{} // open host and guest sides, closed by Close
	closed bool
}

// New builds a guest network with its own stack.
func New(cfg Config) (*Network, error) {
	if cfg.Policy == nil {
		return nil, errors.New("guest network: no policy")
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = defaultFlows
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.dial == nil {
		// targets are IP literals the policy chose: no resolving here
		d := &net.Dialer{Timeout: dialTimeout}
		cfg.dial = d.DialContext
	}
	dns := cfg.DNS
	if dns == nil {
		dns = HostResolvers("/etc/resolv.conf")
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("guest network: socketpair: %w", err)
	}
	for _, fd := range fds {
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, socketBuffer)
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, socketBuffer)
	}
	ctx, stop := context.WithCancel(context.Background())
	n := &Network{
		cfg: cfg, peer: os.NewFile(uintptr(fds[1]), "guestnet"),
		dns: dns, flows: make(chan struct{}, cfg.MaxFlows), dnsQ: make(chan struct{}, dnsInFlight), ctx: ctx, stop: stop,
		conns: map[io.Closer]struct{}{},
	}
	if n.link, err = newLink(os.NewFile(uintptr(fds[0]), "guestnet"), gatewayMAC); err != nil {
		stop()
		n.peer.Close()
		return nil, fmt.Errorf("guest network: %w", err)
	}
	if err := n.build(); err != nil {
		n.Close()
		return nil, err
	}
	n.link.start(ctx)
	return n, nil
}

// build makes the stack: one NIC that owns the gateway and DNS addresses,
// accepts packets for any address (promiscuous) and answers from any
// (spoofing), so every connection the guest opens ends here.
func (n *Network) build() error {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	n.stack = s
	sack := tcpip.TCPSACKEnabled(true)
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack)
	// handlers first: packets may arrive as soon as the NIC exists
	tcpFwd := tcp.NewForwarder(s, 0, synBacklog, n.acceptTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, udp.NewForwarder(s, n.acceptUDP).HandlePacket)
	if terr := s.CreateNIC(nicID, n.link.ep); terr != nil {
		return fmt.Errorf("guest network: nic: %s", terr)
	}
	for _, a := range []netip.Addr{app.GuestGateway, app.GuestDNS} {
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFrom4(a.As4()), PrefixLen: app.GuestSubnet.Bits()}}
		if terr := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
			return fmt.Errorf("guest network: address %s: %s", a, terr)
		}
	}
	s.SetPromiscuousMode(nicID, true)
	s.SetSpoofing(nicID, true)
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, NIC: nicID}})
	return nil
}

// QEMUFile is the socket QEMU's netdev uses. Pass it to QEMU (ExtraFiles)
// and close it after QEMU started.
func (n *Network) QEMUFile() *os.File { return n.peer }

// QEMUArgs returns the -netdev/-device pair for the socket when QEMU has
// it as file descriptor fd.
func QEMUArgs(fd int) []string {
	return []string{
		"-netdev", fmt.Sprintf("dgram,id=n0,local.type=fd,local.str=%d", fd),
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
	}
}

// DialGuest opens a TCP connection from the host to the guest's port: the
// only way in, so the control channel never listens on the host.
func (n *Network) DialGuest(ctx context.Context, port uint16) (net.Conn, error) {
	c, err := gonet.DialContextTCP(ctx, n.stack,
		tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(app.GuestAddr.As4()), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("dial guest port %d: %w", port, err)
	}
	return c, nil
}

// Close tears the network down: every forwarded connection, the stack
// and the sockets. Closing twice is harmless.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	conns := n.conns
	n.conns = nil
	n.mu.Unlock()
	n.stop()
	for c := range conns {
		c.Close()
	}
	n.link.close()
	if n.stack != nil {
		n.stack.Close()
		n.stack.Wait()
	}
	n.wg.Wait()
	n.peer.Close()
	return nil
}

// track registers conns to be closed by Close; it reports false (and
// closes them) when the network is already closed.
func (n *Network) track(cs ...io.Closer) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		n.conns[c] = struct{}{}
	}
	return true
}

func (n *Network) untrack(cs ...io.Closer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range cs {
		if n.conns != nil {
			delete(n.conns, c)
		}
		c.Close()
	}
}

// takeFlow reserves a flow slot; false when the guest has too many open.
func (n *Network) takeFlow() bool {
	select {
	case n.flows <- struct{}{}:
		return true
	default:
		return false
	}
}

func (n *Network) releaseFlow() { <-n.flows }

// refused reports a refusal to the Refused callback.
func (n *Network) refused(proto string, r *app.GuestRefusal) {
	if n.cfg.Refused != nil {
		n.cfg.Refused(proto, r)
	}
}

// dst returns the guest's destination of an endpoint id.
func dst(id stack.TransportEndpointID) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(id.LocalAddress.As4()), id.LocalPort)
}

// target resolves a guest's destination to a host address, or refuses
// it (reporting why). The DNS relay's address is the caller's: isDNS
// says a connection is for it (unless the network is off).
func (n *Network) target(proto string, id stack.TransportEndpointID) (t netip.AddrPort, isDNS, ok bool) {
	d := dst(id)
	if d.Addr() == app.GuestDNS && d.Port() == 53 && n.cfg.Policy.Mode() != app.GuestNone && len(n.dns) > 0 {
		return netip.AddrPort{}, true, true
	}
	t, err := n.cfg.Policy.Target(d)
	if err != nil {
		var r *app.GuestRefusal
		if errors.As(err, &r) {
			n.refused(proto, r)
		}
		return netip.AddrPort{}, false, false
	}
	return t, false, true
}

// acceptTCP handles a guest's SYN (on its own goroutine): it dials the
// destination first and completes the handshake only when that worked,
// so the guest sees "connection refused" where the outside refused.
func (n *Network) acceptTCP(r *tcp.ForwarderRequest) {
	target, isDNS, ok := n.target("tcp", r.ID())
	if !ok {
		r.Complete(true)
		return
	}
	if isDNS {
		target = n.dns[0] // DNS over TCP: the first resolver
	}
	if !n.takeFlow() {
		n.refused("tcp", &app.GuestRefusal{Dst: dst(r.ID()), Reason: fmt.Sprintf("the guest has %d connections open", n.cfg.MaxFlows)})
		r.Complete(true)
		return
	}
	n.wg.Add(1)
	defer n.wg.Done()
	defer n.releaseFlow()
	out, err := n.cfg.dial(n.ctx, "tcp", target.String())
	if err != nil {
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		out.Close()
		r.Complete(true)
		return
	}
	r.Complete(false)
	in := gonet.NewTCPConn(&wq, ep)
	if !n.track(in, out) {
		return
	}
	defer n.untrack(in, out)
	relayTCP(in, out)
}

// relayTCP copies both ways, passing half-closes on, until both
// directions ended.
func relayTCP(in *gonet.TCPConn, out net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(out, in)
		if cw, ok := out.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			out.Close()
		}
		done <- struct{}{}
	}()
	go func() {
		io.Copy(in, out)
		in.CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// acceptUDP starts a flow for a new (guest port, destination) pair. It
// runs on the stack's goroutine, so the dial happens on the flow's own.
// Returning false makes the stack answer ICMP port unreachable, so a
// refused guest fails at once instead of waiting for a timeout.
func (n *Network) acceptUDP(r *udp.ForwarderRequest) bool {
	target, isDNS, ok := n.target("udp", r.ID())
	if !ok {
		return false
	}
	if !n.takeFlow() {
		n.refused("udp", &app.GuestRefusal{Dst: dst(r.ID()), Reason: fmt.Sprintf("the guest has %d flows open", n.cfg.MaxFlows)})
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		n.releaseFlow()
		return false
	}
	in := gonet.NewUDPConn(&wq, ep)
	if !n.track(in) {
		n.releaseFlow()
		return true
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.releaseFlow()
		defer n.untrack(in)
		if isDNS {
			n.relayDNS(in)
			return
		}
		out, err := n.cfg.dial(n.ctx, "udp", target.String())
		if err != nil || !n.track(out) {
			return
		}
		defer n.untrack(out)
		relayUDP(in, out)
	}()
	return true
}

// relayUDP copies datagrams both ways until the flow is idle for udpIdle.
func relayUDP(in, out net.Conn) {
	done := make(chan struct{}, 2)
	pump := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65536)
		for {
			src.SetReadDeadline(time.Now().Add(udpIdle))
			k, err := src.Read(buf)
			if err != nil {
				return
			}
			dst.Write(buf[:k])
		}
	}
	go pump(out, in)
	go pump(in, out)
	<-done
	in.Close()
	out.Close()
	<-done
}

// relayDNS answers the guest's queries on one flow by asking the host's
// resolvers in order.
func (n *Network) relayDNS(in net.Conn) {
	buf := make([]byte, maxDNSDatagram)
	for {
		in.SetReadDeadline(time.Now().Add(udpIdle))
		k, err := in.Read(buf)
		if err != nil {
			return
		}
		select {
		case n.dnsQ <- struct{}{}:
		default:
			continue // the guest floods the relay: drop, it retries
		}
		q := append([]byte(nil), buf[:k]...)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() { <-n.dnsQ }()
			if a := n.askResolvers(q); a != nil {
				in.Write(a)
			}
		}()
	}
}

// askResolvers sends one query to each resolver in turn until one answers.
func (n *Network) askResolvers(q []byte) []byte {
	for _, r := range n.dns {
		c, err := n.cfg.dial(n.ctx, "udp", r.String())
		if err != nil {
			continue
		}
		c.SetDeadline(time.Now().Add(dnsTimeout))
		buf := make([]byte, maxDNSDatagram)
		_, err = c.Write(q)
		var k int
		if err == nil {
			k, err = c.Read(buf)
		}
		c.Close()
		if err == nil && k >= 2 && k <= len(buf) && len(q) >= 2 && buf[0] == q[0] && buf[1] == q[1] {
			return buf[:k]
		}
		if n.ctx.Err() != nil {
			return nil
		}
	}
	return nil
}
