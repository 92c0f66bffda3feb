package guestnet

import (
	"bufio"
	"net/netip"
	"os"
	"strings"
)

// HostResolvers returns the nameservers of a resolv.conf file, as the
// host's own resolver library would use them; with none listed it falls
// back to 127.0.0.1:53, as glibc does.
func HostResolvers(path string) []netip.AddrPort {
	var out []netip.AddrPort
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 || fields[0] != "nameserver" {
				continue
			}
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
			}
		}
	}
	if len(out) == 0 {
		out = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return out
}
