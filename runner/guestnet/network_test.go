package guestnet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"builds/app"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testGuest is a second netstack on the QEMU side of the socket: it plays
// the VM, configured as the images configure theirs.
type testGuest struct {
	s      *stack.Stack
	l      *link
	cancel context.CancelFunc
}

func newTestGuest(t *testing.T, n *Network) *testGuest {
	t.Helper()
	g := newGuestNoCleanup(t, n)
	t.Cleanup(g.close)
	return g
}

func (g *testGuest) close() {
	g.cancel()
	g.l.close()
	g.s.Close()
	g.s.Wait()
}

func newGuestNoCleanup(t *testing.T, n *Network) *testGuest {
	t.Helper()
	fd, err := syscall.Dup(int(n.QEMUFile().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	l, err := newLink(os.NewFile(uintptr(fd), "guest"), tcpip.LinkAddress("\x52\x54\x00\x12\x34\x56"))
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := s.CreateNIC(1, l.ep); err != nil {
		t.Fatal(err)
	}
	s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(app.GuestAddr.As4()), PrefixLen: 24}}, stack.AddressProperties{})
	s.SetRouteTable([]tcpip.Route{
		{Destination: mustSubnet(app.GuestSubnet), NIC: 1},
		{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(app.GuestGateway.As4()), NIC: 1},
	})
	ctx, cancel := context.WithCancel(context.Background())
	l.start(ctx)
	return &testGuest{s: s, l: l, cancel: cancel}
}

func mustSubnet(p netip.Prefix) tcpip.Subnet {
	s, err := tcpip.NewSubnet(tcpip.AddrFrom4(p.Addr().As4()), tcpip.MaskFromBytes(net.CIDRMask(p.Bits(), 32)))
	if err != nil {
		panic(err)
	}
	return s
}

func full(ap netip.AddrPort) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}
}

// dial connects from the guest.
func (g *testGuest) dial(dst string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return gonet.DialContextTCP(ctx, g.s, full(netip.MustParseAddrPort(dst)), ipv4.ProtocolNumber)
}

// udpExchange sends one datagram from the guest and waits for the reply.
func (g *testGuest) udpExchange(dst string, msg []byte) ([]byte, error) {
	raddr := full(netip.MustParseAddrPort(dst))
	c, err := gonet.DialUDP(g.s, nil, &raddr, ipv4.ProtocolNumber)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 2048)
	k, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:k], nil
}

// echoServer listens on addr and echoes every connection.
func echoServer(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// refusals collects the network's Refused reports.
type refusals struct {
	mu  sync.Mutex
	got []string
}

func (r *refusals) add(proto string, ref *app.GuestRefusal) {
	r.mu.Lock()
	r.got = append(r.got, proto+" "+ref.Error())
	r.mu.Unlock()
}

func (r *refusals) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.got, "\n")
}

func newNet(t *testing.T, mode app.GuestNetwork, allow []netip.AddrPort, mod func(*Config)) (*Network, *testGuest, *refusals) {
	t.Helper()
	p, err := app.NewGuestPolicy(mode, allow)
	if err != nil {
		t.Fatal(err)
	}
	ref := &refusals{}
	cfg := Config{Policy: p, Refused: ref.add, DNS: []netip.AddrPort{}}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, newTestGuest(t, n), ref
}

func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("hello through the guest network\n")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

func isRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection was refused")
}

func TestNetworkHostServices(t *testing.T) {
	closed := echoServer(t, "127.0.0.1:0")  // a host service nobody allowed
	allowed := echoServer(t, "127.0.0.1:0") // a site's package cache
	n, g, ref := newNet(t, app.GuestInternet, []netip.AddrPort{allowed}, nil)

	t.Run("LoopbackThroughGatewayRefused", func(t *testing.T) {
		_, err := g.dial(fmt.Sprintf("10.0.2.2:%d", closed.Port()))
		if !isRefused(err) {
			t.Fatalf("dial = %v, want refused", err)
		}
		if !strings.Contains(ref.String(), fmt.Sprintf("tcp 10.0.2.2:%d: the host's own services are closed", closed.Port())) {
			t.Errorf("refusals:\n%s", ref)
		}
	})
	t.Run("AllowedAtGateway", func(t *testing.T) {
		c, err := g.dial(fmt.Sprintf("10.0.2.2:%d", allowed.Port()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c)
	})
	t.Run("HostOwnAddressRefused", func(t *testing.T) {
		var lan netip.Addr
		as, _ := net.InterfaceAddrs()
		for _, a := range as {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				lan, _ = netip.AddrFromSlice(ipn.IP.To4())
			}
		}
		if !lan.IsValid() {
			t.Skip("the host has no non-loopback IPv4 address")
		}
		wild := echoServer(t, "0.0.0.0:0") // listening on every address
		_, err := g.dial(netip.AddrPortFrom(lan, wild.Port()).String())
		if !isRefused(err) {
			t.Fatalf("dial %s:%d = %v, want refused", lan, wild.Port(), err)
		}
	})
	t.Run("MetadataRefused", func(t *testing.T) {
		if _, err := g.dial("169.254.169.254:80"); !isRefused(err) {
			t.Fatalf("dial = %v, want refused", err)
		}
	})
	t.Run("ControlChannel", func(t *testing.T) {
		ln, err := gonet.ListenTCP(g.s, tcpip.FullAddress{NIC: 1, Port: 22}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				io.Copy(c, c)
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := n.DialGuest(ctx, 22)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c)
	})
}

// redirect is a dialer that sends every "outside" connection to one
// local server and records where it was meant to go.
type redirect struct {
	mu    sync.Mutex
	to    string
	dials []string
}

func (r *redirect) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.dials = append(r.dials, network+" "+addr)
	r.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, r.to)
}

func TestNetworkOutside(t *testing.T) {
	srv := echoServer(t, "127.0.0.1:0")
	for _, tt := range []struct {
		name string
		mode app.GuestNetwork
		dst  string
		ok   bool
	}{
		{"InternetOutside", app.GuestInternet, "198.51.100.4:443", true},
		{"InternetLAN", app.GuestInternet, "192.168.77.5:22", true},
		{"NoLANOutside", app.GuestNoLAN, "198.51.100.4:443", true},
		{"NoLANLAN", app.GuestNoLAN, "192.168.77.5:22", false},
		{"NoneOutside", app.GuestNone, "198.51.100.4:443", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rd := &redirect{to: srv.String()}
			_, g, _ := newNet(t, tt.mode, nil, func(c *Config) { c.dial = rd.dial })
			c, err := g.dial(tt.dst)
			if !tt.ok {
				if !isRefused(err) || len(rd.dials) > 0 {
					t.Fatalf("dial = %v (host dials %v), want refused", err, rd.dials)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			roundTrip(t, c)
			if len(rd.dials) != 1 || rd.dials[0] != "tcp "+tt.dst {
				t.Errorf("host dials = %v", rd.dials)
			}
		})
	}
}

// fakeDNS answers every datagram with the query plus a marker.
func fakeDNS(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(append(append([]byte(nil), buf[:k]...), "-answer"...), from)
		}
	}()
	return netip.MustParseAddrPort(c.LocalAddr().String())
}

func TestNetworkDNS(t *testing.T) {
	up := fakeDNS(t)
	dead := netip.MustParseAddrPort("127.0.0.1:9") // discard: never answers
	t.Run("OK", func(t *testing.T) {
		_, g, _ := newNet(t, app.GuestInternet, nil, func(c *Config) { c.DNS = []netip.AddrPort{dead, up} })
		got, err := g.udpExchange("10.0.2.3:53", []byte("\x12\x34query"))
		if err != nil || string(got) != "\x12\x34query-answer" {
			t.Fatalf("dns = %q, %v", got, err)
		}
	})
	t.Run("ErrNone", func(t *testing.T) {
		n, g, ref := newNet(t, app.GuestNone, nil, func(c *Config) { c.DNS = []netip.AddrPort{up} })
		if _, err := g.udpExchange("10.0.2.3:53", []byte("\x12\x34query")); err == nil {
			t.Fatal("DNS answered with guest-network = none")
		}
		if !strings.Contains(ref.String(), "udp 10.0.2.3:53") {
			t.Errorf("refusals:\n%s", ref)
		}
		// the guest's resolver hears "port unreachable" and gives up at once
		if got := n.stack.Stats().ICMP.V4.PacketsSent.DstUnreachable.Value(); got == 0 {
			t.Errorf("no ICMP port unreachable sent")
		}
	})
	t.Run("UDPToHostRefused", func(t *testing.T) {
		_, g, _ := newNet(t, app.GuestInternet, nil, nil)
		if _, err := g.udpExchange(fmt.Sprintf("10.0.2.2:%d", up.Port()), []byte("\x12\x34query")); err == nil {
			t.Fatal("a host UDP service answered through the gateway")
		}
	})
	t.Run("UDPOutside", func(t *testing.T) {
		rd := &redirect{to: up.String()}
		_, g, _ := newNet(t, app.GuestInternet, nil, func(c *Config) { c.dial = rd.dial })
		got, err := g.udpExchange("198.51.100.4:123", []byte("\x12\x34ntp"))
		if err != nil || string(got) != "\x12\x34ntp-answer" {
			t.Fatalf("udp = %q, %v", got, err)
		}
	})
}

func TestNetworkFlowLimit(t *testing.T) {
	srv := echoServer(t, "127.0.0.1:0")
	_, g, ref := newNet(t, app.GuestInternet, []netip.AddrPort{srv}, func(c *Config) { c.MaxFlows = 3 })
	var open []net.Conn
	for i := 0; i < 3; i++ {
		c, err := g.dial(fmt.Sprintf("10.0.2.2:%d", srv.Port()))
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		roundTrip(t, c)
		open = append(open, c)
	}
	if _, err := g.dial(fmt.Sprintf("10.0.2.2:%d", srv.Port())); !isRefused(err) {
		t.Fatalf("fourth connection = %v, want refused", err)
	}
	if !strings.Contains(ref.String(), "3 connections open") {
		t.Errorf("refusals:\n%s", ref)
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := g.dial(fmt.Sprintf("10.0.2.2:%d", srv.Port()))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a slot did not free after a close: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range open[1:] {
		c.Close()
	}
}

func TestNetworkCloseEndsConnections(t *testing.T) {
	srv := echoServer(t, "127.0.0.1:0")
	n, g, _ := newNet(t, app.GuestInternet, []netip.AddrPort{srv}, nil)
	c, err := g.dial(fmt.Sprintf("10.0.2.2:%d", srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs with a connection open")
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestNetworkNoLeak opens and closes many networks with traffic: every
// goroutine and descriptor they held is gone afterwards, as a runner
// that boots thousands of VMs needs.
func TestNetworkNoLeak(t *testing.T) {
	srv := echoServer(t, "127.0.0.1:0")
	p, err := app.NewGuestPolicy(app.GuestInternet, []netip.AddrPort{srv})
	if err != nil {
		t.Fatal(err)
	}
	round := func() {
		n, err := New(Config{Policy: p, DNS: []netip.AddrPort{}})
		if err != nil {
			t.Fatal(err)
		}
		g := newGuestNoCleanup(t, n)
		c, err := g.dial(fmt.Sprintf("10.0.2.2:%d", srv.Port()))
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c)
		c.Close()
		n.Close()
		g.close()
	}
	round() // warm up pools
	time.Sleep(100 * time.Millisecond)
	before, fds := runtime.NumGoroutine(), openFDs(t)
	for i := 0; i < 20; i++ {
		round()
	}
	deadline := time.Now().Add(5 * time.Second)
	for (runtime.NumGoroutine() > before+2 || openFDs(t) > fds+2) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines %d -> %d after 20 networks\n%s", before, got, buf[:runtime.Stack(buf, true)])
	}
	if got := openFDs(t); got > fds+2 {
		t.Errorf("open descriptors %d -> %d after 20 networks", fds, got)
	}
}

func openFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestHostResolvers(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/resolv.conf"
	writeFile(t, path, "# comment\nsearch example.org\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:2\n")
	got := HostResolvers(path)
	if len(got) != 2 || got[0].String() != "10.255.255.53:53" || got[1].Addr().Zone() != "eth0" {
		t.Errorf("HostResolvers = %v", got)
	}
	if got := HostResolvers(dir + "/missing"); len(got) != 1 || got[0].String() != "127.0.0.1:53" {
		t.Errorf("HostResolvers(missing) = %v", got)
	}
}
