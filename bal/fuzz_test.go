package bal

import (
	"bufio"
	"bytes"
	"context"
	nettextproto "net/textproto"
	"testing"
	"time"

	"github.com/mssante-go/sdk/mssante"
)

// FuzzIncoming feeds arbitrary bytes through what Watch does with a received message:
// parse (ReadIncoming: mssante.ReadMessage, XDM), then, for a receipt, matching against the
// outbox (ReadReport, Record.Apply). It must never panic, hang or touch a record other than
// the one it names.
func FuzzIncoming(f *testing.F) {
	c, rec := outboxWith(f, true, "a@other.example")
	f.Add(dsn(f, rec, mssante.ActionDelivered, "a@other.example", "smtp; 250 2.0.0 ok"))
	f.Add(dsn(f, rec, mssante.ActionFailed, "a@other.example", "smtp; 550"))
	f.Add(mdn(f, rec, "a@other.example", mssante.CodeUnknownPatient))
	f.Add(mdn(f, rec, "a@other.example", 0))
	var b bytes.Buffer
	m := testLettre(f, testBAL, "DUPONT", true)
	m.WriteTo(&b, nil)
	f.Add(b.Bytes())
	f.Add([]byte("Subject: x\r\n\r\nbody"))
	w := &watcher{c: c, onReceipt: func(context.Context, Receipt) {}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := ReadIncoming(raw, 1<<20)
		if m.Message != nil && m.Message.Kind != mssante.KindOrdinary {
			w.applyReceipt(context.Background(), m.Message)
			if rep := ReadReport(m.Message); rep != nil {
				rec := &Record{MessageID: rep.MessageID, Recipients: []RecipientState{{Address: "a@other.example", Status: StatusSubmitted}}}
				rec.Apply(rep.Changes, time.Time{})
			}
		}
		_ = diagnosticCode(string(raw))
		_ = originalMessageID(raw)
	})
}

// FuzzDotStuffer checks dotStuffer against net/textproto's DotWriter, which go-smtp writes
// DATA with: the same bytes on the wire, end marker included, however the input is cut.
func FuzzDotStuffer(f *testing.F) {
	for _, s := range []string{"", "a", ".", "..\r\n.", "a\r\n.b\r\n", "a\nb\n", "a\r", "a\rb", "\r\r\n", "\n\n.\n", "x\r\n.\r\n", "a\r\n\r\n"} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var want bytes.Buffer
		bw := bufio.NewWriter(&want)
		dw := nettextproto.NewWriter(bw).DotWriter()
		dw.Write(data)
		dw.Close()

		var got bytes.Buffer
		ds := &dotStuffer{w: &got}
		for rest, k := data, int(cut)%7+1; len(rest) > 0; {
			n := min(k, len(rest))
			if _, err := ds.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		got.WriteString("\r\n.\r\n") // what go-smtp's untouched DotWriter ends with
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%q: got %q, want %q", data, got.Bytes(), want.Bytes())
		}
	})
}
