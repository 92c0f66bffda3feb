package app

import (
	"net/netip"
	"strings"
	"testing"
)

func TestGuestPolicyTarget(t *testing.T) {
	host := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.168.7.2"),
		netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("172.17.0.1")}
	allow := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3142"), netip.MustParseAddrPort("[::1]:9418"),
		netip.MustParseAddrPort("192.168.7.2:8443")}
	tests := []struct {
		name   string
		mode   GuestNetwork
		dst    string
		want   string // target, or "" for refused
		reason string // part of the refusal
	}{
		{name: "OutsideWorld", mode: GuestInternet, dst: "198.51.100.4:443", want: "198.51.100.4:443"},
		{name: "LAN", mode: GuestInternet, dst: "192.168.7.50:22", want: "192.168.7.50:22"},
		{name: "GatewayIsNotLoopback", mode: GuestInternet, dst: "10.0.2.2:8080", reason: "guest-allow"},
		{name: "GatewayAllowed", mode: GuestInternet, dst: "10.0.2.2:3142", want: "127.0.0.1:3142"},
		{name: "GatewayAllowedIPv6Loopback", mode: GuestInternet, dst: "10.0.2.2:9418", want: "[::1]:9418"},
		{name: "Loopback", mode: GuestInternet, dst: "127.0.0.1:8080", reason: "loopback"},
		{name: "LoopbackAllowedEntry", mode: GuestInternet, dst: "127.0.0.1:3142", want: "127.0.0.1:3142"},
		{name: "OtherLoopback", mode: GuestInternet, dst: "127.1.2.3:22", reason: "loopback"},
		{name: "Unspecified", mode: GuestInternet, dst: "0.0.0.0:8080", reason: "loopback"},
		{name: "CloudMetadata", mode: GuestInternet, dst: "169.254.169.254:80", reason: "link-local"},
		{name: "HostLANAddress", mode: GuestInternet, dst: "192.168.7.2:8080", reason: "host's own"},
		{name: "HostPublicAddress", mode: GuestInternet, dst: "203.0.113.9:2222", reason: "host's own"},
		{name: "HostBridgeAddress", mode: GuestInternet, dst: "172.17.0.1:5432", reason: "host's own"},
		{name: "HostAddressAllowed", mode: GuestInternet, dst: "192.168.7.2:8443", want: "192.168.7.2:8443"},
		{name: "GuestSubnet", mode: GuestInternet, dst: "10.0.2.7:80", reason: "no such host"},
		{name: "Broadcast", mode: GuestInternet, dst: "255.255.255.255:67", reason: "broadcast"},
		{name: "Multicast", mode: GuestInternet, dst: "224.0.0.251:5353", reason: "multicast"},
		{name: "NoLANPrivate", mode: GuestNoLAN, dst: "192.168.7.50:22", reason: "no-lan"},
		{name: "NoLANTen", mode: GuestNoLAN, dst: "10.1.2.3:22", reason: "no-lan"},
		{name: "NoLANCGNAT", mode: GuestNoLAN, dst: "100.100.1.1:80", reason: "no-lan"},
		{name: "NoLANOutside", mode: GuestNoLAN, dst: "198.51.100.4:443", want: "198.51.100.4:443"},
		{name: "NoLANAllowed", mode: GuestNoLAN, dst: "192.168.7.2:8443", want: "192.168.7.2:8443"},
		{name: "NoneOutside", mode: GuestNone, dst: "198.51.100.4:443", reason: "guest-network = none"},
		{name: "NoneAllowed", mode: GuestNone, dst: "10.0.2.2:3142", want: "127.0.0.1:3142"},
		{name: "NoneGatewayNotAllowed", mode: GuestNone, dst: "10.0.2.2:80", reason: "guest-allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewGuestPolicy(tt.mode, allow)
			if err != nil {
				t.Fatal(err)
			}
			p.hostAddrs = func() ([]netip.Addr, error) { return host, nil }
			got, err := p.Target(netip.MustParseAddrPort(tt.dst))
			if tt.want != "" {
				if err != nil || got.String() != tt.want {
					t.Fatalf("Target(%s) = %v, %v; want %s", tt.dst, got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Target(%s) = %v, %v; want a refusal about %q", tt.dst, got, err, tt.reason)
			}
			if _, ok := err.(*GuestRefusal); !ok {
				t.Errorf("error %T is not a *GuestRefusal", err)
			}
		})
	}
}

func TestCheckGuestAllow(t *testing.T) {
	for _, tt := range []struct {
		name  string
		allow []string
		err   string
	}{
		{name: "OK", allow: []string{"127.0.0.1:3142", "127.0.0.1:9418", "192.168.1.5:80"}},
		{name: "ErrSameLoopbackPort", allow: []string{"127.0.0.1:3142", "[::1]:3142"}, err: "both be 10.0.2.2:3142"},
		{name: "ErrWildcard", allow: []string{"0.0.0.0:80"}, err: "wildcard"},
		{name: "ErrPortZero", allow: []string{"127.0.0.1:0"}, err: "invalid address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var as []netip.AddrPort
			for _, a := range tt.allow {
				as = append(as, netip.MustParseAddrPort(a))
			}
			err := CheckGuestAllow(as)
			if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("CheckAllow = %v, want %q", err, tt.err)
			}
		})
	}
	if _, err := ParseGuestNetwork("open"); err == nil || !strings.Contains(err.Error(), "internet, no-lan or none") {
		t.Errorf("ParseGuestNetwork(open) = %v", err)
	}
}
