package bal

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"
)

// BenchmarkSendRaw submits 100 KB messages over one connection to an in-process submission
// server (STARTTLS, client certificate): the client's own cost, outbox fsyncs included.
func BenchmarkSendRaw(b *testing.B) {
	p := newTestPKI(b)
	f := startFakeSubmission(b, p, true)
	c := newTestClient(b, p, f.addr)
	body := bytes.Repeat([]byte("0123456789012345678901234567890123456789012345678901234567890123456789012\r\n"), 100*1024/76)
	opts := &SendOptions{Recipients: []string{"x@bench.example"}, Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := fmt.Appendf(nil, "From: <%s>\r\nTo: <x@bench.example>\r\nMessage-ID: <b%d@test.example>\r\n\r\n%s", testBAL, i, body)
		if _, err := c.SendRaw(context.Background(), bytes.NewReader(m), opts); err != nil {
			b.Fatal(err)
		}
	}
}
