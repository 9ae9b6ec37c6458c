package bal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/whitelist"
)

// testList lists test.example, other.example and bench.example.
func testList() *whitelist.List {
	return whitelist.NewList(time.Now(), []whitelist.Entry{
		{Domain: "test.example", OperatorDNs: []string{"CN=localhost,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"}},
		{Domain: "other.example", OperatorDNs: []string{"CN=mx.other.example,O=X,C=FR"}},
		{Domain: "bench.example", OperatorDNs: []string{"CN=mx.bench.example,O=X,C=FR"}},
	})
}

// testLettre builds a lettre de liaison (N1, PDF in the CDA) from the BAL to to, about a
// patient whose birth name is name.
func testLettre(t testing.TB, to, name string, mdn bool) *mssante.Message {
	t.Helper()
	in := cda.Sample(cda.KindN1)
	in.Patient.BirthName = name
	m, err := NewDocumentMessage(mssante.MustAddress("DPI Test", testBAL), []mssante.Address{mssante.MustAddress("", to)},
		in, &DocumentOptions{NIL: "DEV000000", WantMDN: mdn})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// recorder collects what a Watch hands out.
type recorder struct {
	mu       sync.Mutex
	handled  map[string]int // Message-ID → times handed
	subjects []string
	receipts []Receipt
	changed  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{handled: map[string]int{}, changed: make(chan struct{}, 1000)}
}

func (r *recorder) handler(decide func(m *Incoming) error) Handler {
	return func(ctx context.Context, m *Incoming) error {
		err := decide(m)
		r.mu.Lock()
		if err == nil || errors.As(err, new(*RejectError)) {
			r.handled[m.MessageID]++
			if m.Message != nil {
				r.subjects = append(r.subjects, m.Message.Subject)
			}
		}
		r.mu.Unlock()
		r.changed <- struct{}{}
		return err
	}
}

func (r *recorder) onReceipt(ctx context.Context, rc Receipt) {
	r.mu.Lock()
	r.receipts = append(r.receipts, rc)
	r.mu.Unlock()
	r.changed <- struct{}{}
}

// waitFor waits until cond holds (checked on every event and every 100 ms).
func (r *recorder) waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timeout waiting for %s; handled=%v receipts=%+v", what, r.handled, r.receipts)
		}
	}
}

func (r *recorder) finals(msgID string) []Receipt {
	var out []Receipt
	for _, rc := range r.receipts {
		if rc.MessageID == msgID && rc.Final {
			out = append(out, rc)
		}
	}
	return out
}

// checkLettre checks what a handler gets from a testLettre: the CDA in the XDM, the INS
// from METADATA.XML, the PDF copy.
func checkLettre(m *Incoming) error {
	want := cda.Sample(cda.KindN1).Patient.INS
	switch {
	case m.Message == nil:
		return fmt.Errorf("not parsed: %v", m.ParseError)
	case m.XDM == nil:
		return fmt.Errorf("no XDM: %v", m.XDMError)
	case m.INS != want:
		return fmt.Errorf("INS %v, want %v", m.INS, want)
	case len(m.Documents()) != 1 || m.Documents()[0].CDA == nil || m.Patient == nil:
		return fmt.Errorf("documents: %d", len(m.Documents()))
	case len(m.Message.Documents) != 1 || !bytes.HasPrefix(m.Message.Documents[0].PDF, []byte("%PDF")):
		return fmt.Errorf("no PDF copy")
	}
	if ins, ok := m.Documents()[0].CDA.INS(); !ok || ins != want {
		return fmt.Errorf("CDA INS %v", ins)
	}
	return nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// startWatch runs Watch in the background until the test ends or stop is called.
func startWatch(t testing.TB, c *Client, h Handler, opts *WatchOptions) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, h, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Watch: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestInteropPostfixDovecot sends through a real Postfix (STARTTLS submission with the
// BAL's client certificate, no SASL) and reads from a real Dovecot (IMAPS, SASL EXTERNAL with
// the same certificate). The BAL writes to itself: the lettre is delivered to its Maildir,
// Postfix's success DSN and our own MDN come back to the same mailbox and become receipts.
func TestInteropPostfixDovecot(t *testing.T) {
	p := newTestPKI(t)
	peers := startMailPeers(t, p)
	state := t.TempDir()
	opts := &Options{
		Address:    testBAL,
		NIL:        "DEV000000",
		Submission: Endpoint{Addr: peers.submission, Security: StartTLS, Auth: AuthNone},
		IMAP:       Endpoint{Addr: peers.imaps, Security: ImplicitTLS},
		TLS:        p.clientTLS(),
		Whitelist:  testList(),
		StateDir:   state,
		Logger:     testLogger(t),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		PollInterval: 2 * time.Second,
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	accepted := testLettre(t, testBAL, "DUPONT", true)
	rejected := testLettre(t, testBAL, "INCONNU", true)
	bounced := testLettre(t, "nobody@other.example", "MARTIN", false)
	plain := testLettre(t, testBAL, "SANSMDN", false) // no MDN asked: the success DSN is final
	results, err := c.SendBatch(ctx, []*mssante.Message{accepted, rejected, bounced, plain}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if len(r.Recipients) != 1 || !r.Recipients[0].Accepted {
			t.Fatalf("not accepted: %+v", r)
		}
	}

	rec := newRecorder()
	h := rec.handler(func(m *Incoming) error {
		if err := checkLettre(m); err != nil {
			return err
		}
		if m.Patient.BirthName == "INCONNU" {
			return Reject(mssante.CodeUnknownPatient)
		}
		return nil
	})
	stop := startWatch(t, c, h, &WatchOptions{OnReceipt: rec.onReceipt})
	ok, rej, bnc, pln := results[0].MessageID, results[1].MessageID, results[2].MessageID, results[3].MessageID
	rec.waitFor(t, "four final receipts", 60*time.Second, func() bool {
		return len(rec.finals(ok)) == 1 && len(rec.finals(rej)) == 1 && len(rec.finals(bnc)) == 1 && len(rec.finals(pln)) == 1
	})
	stop()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.handled[ok] != 1 || rec.handled[rej] != 1 || rec.handled[pln] != 1 || len(rec.handled) != 3 {
		t.Errorf("handled = %v, want each of the three messages once", rec.handled)
	}
	if f := rec.finals(ok)[0]; f.Status != StatusProcessed || f.Recipient != testBAL {
		t.Errorf("accepted message: final %+v", f)
	}
	if f := rec.finals(rej)[0]; f.Status != StatusError || f.MDNCode != mssante.CodeUnknownPatient {
		t.Errorf("rejected message: final %+v", f)
	}
	if f := rec.finals(bnc)[0]; f.Status != StatusFailed || f.Recipient != "nobody@other.example" {
		t.Errorf("bounced message: final %+v", f)
	}
	// Postfix's success DSN: final for the message without MDN request.
	if f := rec.finals(pln)[0]; f.Status != StatusDelivered || f.Recipient != testBAL {
		t.Errorf("message without MDN: final %+v", f)
	}
}
