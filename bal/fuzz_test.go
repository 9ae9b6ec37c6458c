package bal

import (
	"bytes"
	"context"
	"testing"

	"github.com/mssante-go/sdk/mssante"
)

// FuzzIncoming feeds arbitrary bytes through what Watch does with a received message:
// parse (mssante.ReadMessage, XDM), then, for a receipt, matching against the outbox. It must
// never panic, hang or touch a record other than the one it names.
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
		m := &Incoming{data: raw}
		m.readMessageID()
		m.parse(1 << 20)
		if m.Message != nil && m.Message.Kind != mssante.KindOrdinary {
			w.applyReceipt(context.Background(), m.Message)
		}
		_ = diagnosticCode(string(raw))
		_ = originalMessageID(raw)
	})
}
