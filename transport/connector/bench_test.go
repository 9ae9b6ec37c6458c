package connector

import (
	"strings"
	"testing"
)

// BenchmarkRelaySession is one relay session over STARTTLS with a client certificate, sending
// 10 KiB messages one after the other, each queued before its 250: the server's whole path for
// a message, crlfGuard included. The sub-benchmark nosync leaves out the queue's fsync, which
// otherwise dominates and varies with the disk's other load.
func BenchmarkRelaySession(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchRelaySession(b, false) })
	b.Run("nosync", func(b *testing.B) { benchRelaySession(b, true) })
}

func benchRelaySession(b *testing.B, noSync bool) {
	p := testPKI(b)
	a := newNode(b, "a.mssante.test", &nodeOpts{noRun: true})
	n := newNode(b, "b.mssante.test", &nodeOpts{noRun: true, noSync: noSync})
	trust(a, n)
	line := strings.Repeat("x", 76) + "\r\n"
	body := "From: <x@a.mssante.test>\r\nTo: <dr@b.mssante.test>\r\nSubject: bench\r\n\r\n" + strings.Repeat(line, 10240/len(line)) + ".\r\n"
	s := rawDial(b, n.relayAddr, clientTLS(a.server, p))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		s.cmd("MAIL FROM:<x@a.mssante.test>", "250")
		s.cmd("RCPT TO:<dr@b.mssante.test>", "250")
		s.cmd("DATA", "354")
		s.write(body)
		s.expect("250")
	}
}
