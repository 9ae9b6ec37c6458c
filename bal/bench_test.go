package bal

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	nettextproto "net/textproto"
	"sync/atomic"
	"testing"
)

// BenchmarkSendRaw submits 100 KB messages over one connection to an in-process submission
// server (STARTTLS, client certificate): the client's own cost, outbox fsyncs included.
// The Parallel variant sends from several goroutines over the same connection, whose
// journal fsyncs are shared (group commit) and overlap the next message's transfer.
func BenchmarkSendRaw(b *testing.B) {
	for _, par := range []bool{false, true} {
		name := "Serial"
		if par {
			name = "Parallel"
		}
		b.Run(name, func(b *testing.B) {
			p := newTestPKI(b)
			f := startFakeSubmission(b, p, true)
			c := newTestClient(b, p, f.addr)
			body := bytes.Repeat([]byte("0123456789012345678901234567890123456789012345678901234567890123456789012\r\n"), 100*1024/76)
			opts := &SendOptions{Recipients: []string{"x@bench.example"}, Notify: []DSNNotify{NotifyNever}}
			var n atomic.Int64
			send := func() {
				m := fmt.Appendf(nil, "From: <%s>\r\nTo: <x@bench.example>\r\nX-MSS-NIL: DEV000000\r\nMessage-ID: <b%d@test.example>\r\n\r\n%s", testBAL, n.Add(1), body)
				if _, err := c.SendRaw(context.Background(), bytes.NewReader(m), opts); err != nil {
					b.Error(err)
				}
			}
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			if !par {
				for b.Loop() {
					send()
				}
				return
			}
			b.SetParallelism(2)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					send()
				}
			})
		})
	}
}

// BenchmarkDotStuffer: the DATA encoding of a 100 KB message by dotStuffer beside
// net/textproto's DotWriter (what go-smtp's DataCommand.Write does).
func BenchmarkDotStuffer(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789012345678901234567890123456789012345678901234567890123456789012\r\n"), 100*1024/76)
	b.Run("dotStuffer", func(b *testing.B) {
		w := bufio.NewWriterSize(io.Discard, 64<<10)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			(&dotStuffer{w: w}).Write(body)
		}
	})
	b.Run("textproto.DotWriter", func(b *testing.B) {
		w := bufio.NewWriter(io.Discard)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			dw := nettextproto.NewWriter(w).DotWriter()
			dw.Write(body)
			dw.Close()
		}
	})
}
