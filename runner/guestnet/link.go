package guestnet

import (
	"context"
	"net"
	"os"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkQueue is how many outbound frames wait for the socket; beyond it
// frames are dropped and TCP slows down, as on a real wire.
const linkQueue = 4096

// link carries Ethernet frames between a stack and a datagram socket, one
// frame per datagram (QEMU's dgram netdev). Reads and writes go through
// Go's poller, so closing the socket ends both loops at once.
type link struct {
	ch   *channel.Endpoint
	ep   *ethernet.Endpoint
	conn net.Conn
	wg   sync.WaitGroup
}

// newLink wraps f, a SOCK_DGRAM unix socket; f is closed (its descriptor
// now belongs to the link).
func newLink(f *os.File, mac tcpip.LinkAddress) (*link, error) {
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	ch := channel.New(linkQueue, mtu+header.EthernetMinimumSize, mac)
	return &link{ch: ch, ep: ethernet.New(ch), conn: conn}, nil
}

// start runs the two copy loops until ctx ends or the socket closes.
func (l *link) start(ctx context.Context) {
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 65536)
		for {
			k, err := l.conn.Read(buf)
			if err != nil {
				return
			}
			if k < header.EthernetMinimumSize {
				continue
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				Payload: buffer.MakeWithData(append([]byte(nil), buf[:k]...))})
			l.ch.InjectInbound(0, pkt)
			pkt.DecRef()
		}
	}()
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 0, 65536)
		for {
			pkt := l.ch.ReadContext(ctx)
			if pkt == nil {
				return
			}
			buf = buf[:0]
			for _, s := range pkt.AsSlices() {
				buf = append(buf, s...)
			}
			pkt.DecRef()
			if _, err := l.conn.Write(buf); err != nil && ctx.Err() != nil {
				return
			}
		}
	}()
}

// close ends the loops (the context must be cancelled too) and waits.
func (l *link) close() {
	l.conn.Close()
	l.wg.Wait()
	l.ch.Close()
	for l.ch.Drain() > 0 {
	}
}
