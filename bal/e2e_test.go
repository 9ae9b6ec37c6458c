package bal

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/transport"
)

// sandboxClient is the client of an APP BAL of the sandbox: its certificate, the sandbox's
// trust store and signed whitelist, the STARTTLS submission and IMAPS of its operator.
func sandboxClient(t testing.TB, info *sandbox.Info, addr string) *Client {
	t.Helper()
	b, op := info.BAL(addr), info.OperatorOf(addr)
	if b == nil || op == nil || b.CertFile == "" {
		t.Fatalf("no APP BAL %s in the sandbox", addr)
	}
	cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := info.Trust()
	if err != nil {
		t.Fatal(err)
	}
	wl, err := info.Whitelist()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(&Options{
		Address:    addr,
		Submission: Endpoint{Addr: op.Submission, Security: StartTLS},
		IMAP:       Endpoint{Addr: op.IMAPS, Security: ImplicitTLS},
		TLS:        transport.TLSOptions{Certificates: []tls.Certificate{cert}, Trust: trust},
		Whitelist:  wl,
		StateDir:   t.TempDir(),
		NIL:        "DEV000000",
		Logger:     testLogger(t),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		PollInterval: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEndToEndConnectors: on two reference connectors on loopback, the DPI's APP BAL of the
// hospital sends lettres de liaison to the APP BAL of a medical practice. The practice's
// handler gets the CDA and the INS and accepts the first (the hospital gets the success DSN
// then the MDN processed), refuses the second with 902 (MDN processed/Error 902); a third
// to an unknown mailbox comes back as a failure DSN.
func TestEndToEndConnectors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two connectors")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() }) // after the watchers (cleanups run last-in first-out)
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	a, b := sandboxClient(t, sb.Info, from), sandboxClient(t, sb.Info, to)

	lettre := func(dest, name string) *mssante.Message {
		in := cda.Sample(cda.KindN1)
		in.Patient.BirthName = name
		m, err := NewDocumentMessage(mssante.MustAddress("DPI", from), []mssante.Address{mssante.MustAddress("", dest)},
			in, &DocumentOptions{WantMDN: true, NIL: "DEV000000"})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ok, ko, lost := lettre(to, "ACCEPTE"), lettre(to, "INCONNU"), lettre("personne@"+sandbox.Cabinet, "PERDU")
	plain := lettre(to, "SANSMDN")
	plain.WantMDN = false // its success DSN is its final receipt

	// B integrates what it receives.
	got := newRecorder()
	var insSeen []mssante.INS
	startWatch(t, b, got.handler(func(m *Incoming) error {
		if err := checkLettre(m); err != nil {
			return err
		}
		got.mu.Lock() // decide runs on the watcher's goroutine, outside the recorder's lock
		insSeen = append(insSeen, m.INS)
		got.mu.Unlock()
		if m.Patient.BirthName == "INCONNU" {
			return Reject(mssante.CodeUnknownPatient)
		}
		return nil
	}), nil)
	// A watches its receipts.
	sent := newRecorder()
	startWatch(t, a, sent.handler(func(m *Incoming) error { return nil }), &WatchOptions{OnReceipt: sent.onReceipt})

	results, err := a.SendBatch(ctx, []*mssante.Message{ok, ko, lost, plain}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if !r.Recipients[0].Accepted {
			t.Fatalf("submission refused %+v", r.Recipients)
		}
	}
	sent.waitFor(t, "final receipts", 90*time.Second, func() bool {
		return len(sent.finals(ok.MessageID)) == 1 && len(sent.finals(ko.MessageID)) == 1 &&
			len(sent.finals(lost.MessageID)) == 1 && len(sent.finals(plain.MessageID)) == 1
	})

	// A's final receipt for the message without MDN is its success DSN, which can come before
	// B's watcher has handed that message: wait for B too.
	got.waitFor(t, "B's three messages", 90*time.Second, func() bool { return len(got.handled) >= 3 })
	got.mu.Lock()
	if got.handled[ok.MessageID] != 1 || got.handled[ko.MessageID] != 1 || got.handled[plain.MessageID] != 1 || len(got.handled) != 3 {
		t.Errorf("B handled %v", got.handled)
	}
	want := cda.Sample(cda.KindN1).Patient.INS
	for _, ins := range insSeen {
		if ins != want {
			t.Errorf("INS %v, want %v", ins, want)
		}
	}
	got.mu.Unlock()

	sent.mu.Lock()
	defer sent.mu.Unlock()
	if f := sent.finals(ok.MessageID)[0]; f.Status != StatusProcessed || f.Recipient != to {
		t.Errorf("accepted: final %+v", f)
	}
	if f := sent.finals(ko.MessageID)[0]; f.Status != StatusError || f.MDNCode != mssante.CodeUnknownPatient {
		t.Errorf("rejected: final %+v", f)
	}
	if f := sent.finals(lost.MessageID)[0]; f.Status != StatusFailed {
		t.Errorf("unknown recipient: final %+v", f)
	}
	if f := sent.finals(plain.MessageID)[0]; f.Status != StatusDelivered || f.Recipient != to {
		t.Errorf("without MDN request: final %+v (the success DSN)", f)
	}
	if len(sent.handled) != 0 {
		t.Errorf("receipts handed to A's handler: %v", sent.handled)
	}
}
