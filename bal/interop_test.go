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

	"github.com/emersion/go-message/mail"

	"github.com/mssante-go/sdk/whitelist"
)

// testList lists test.example and other.example.
func testList() *whitelist.List {
	return whitelist.NewList(time.Now(), []whitelist.Entry{
		{Domain: "test.example", OperatorDNs: []string{"CN=localhost,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"}},
		{Domain: "other.example", OperatorDNs: []string{"CN=mx.other.example,O=X,C=FR"}},
	})
}

// testMessage builds a small MSSanté-like message with an attachment.
func testMessage(t testing.TB, from, to, subject string, mdn bool) []byte {
	t.Helper()
	var b bytes.Buffer
	var h mail.Header
	h.SetDate(time.Now())
	h.SetAddressList("From", []*mail.Address{{Address: from}})
	h.SetAddressList("To", []*mail.Address{{Address: to}})
	h.SetSubject(subject)
	if err := h.GenerateMessageID(); err != nil {
		t.Fatal(err)
	}
	if mdn {
		h.SetAddressList("Disposition-Notification-To", []*mail.Address{{Address: from}})
	}
	w, err := mail.CreateWriter(&b, h)
	if err != nil {
		t.Fatal(err)
	}
	var ih mail.InlineHeader
	ih.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	iw, err := w.CreateSingleInline(ih)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(iw, "Lettre de liaison en pièce jointe.\r\n")
	iw.Close()
	var ah mail.AttachmentHeader
	ah.SetContentType("application/pdf", nil)
	ah.SetFilename("20261128_LDL_DUPONT_JEAN.pdf")
	aw, err := w.CreateAttachment(ah)
	if err != nil {
		t.Fatal(err)
	}
	aw.Write(bytes.Repeat([]byte("%PDF-1.4 test\n"), 100))
	aw.Close()
	w.Close()
	return b.Bytes()
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
			s, _ := m.Header.Subject()
			r.subjects = append(r.subjects, s)
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
		Submission: Endpoint{Addr: peers.submission, Security: StartTLS, Auth: AuthNone},
		IMAP:       Endpoint{Addr: peers.imaps, Security: ImplicitTLS},
		TLSConfig:  p.clientTLS(),
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

	accepted := testMessage(t, testBAL, testBAL, "XDM/1.0/DDM+Lettre de liaison DUPONT Jean", true)
	rejected := testMessage(t, testBAL, testBAL, "XDM/1.0/DDM+Lettre de liaison INCONNU Paul", true)
	bounced := testMessage(t, testBAL, "nobody@other.example", "XDM/1.0/DDM+Lettre de liaison MARTIN Luc", false)
	results, err := c.SendBatch(ctx, []Message{RawMessage(accepted), RawMessage(rejected), RawMessage(bounced)}, nil)
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
		if len(m.Attachments) != 1 || m.Attachments[0].Filename != "20261128_LDL_DUPONT_JEAN.pdf" {
			return fmt.Errorf("attachments: %+v", m.Attachments)
		}
		if s, _ := m.Header.Subject(); bytes.Contains([]byte(s), []byte("INCONNU")) {
			return Reject(902)
		}
		return nil
	})
	stop := startWatch(t, c, h, &WatchOptions{OnReceipt: rec.onReceipt})
	ok, rej, bnc := results[0].MessageID, results[1].MessageID, results[2].MessageID
	rec.waitFor(t, "three final receipts", 60*time.Second, func() bool {
		return len(rec.finals(ok)) == 1 && len(rec.finals(rej)) == 1 && len(rec.finals(bnc)) == 1
	})
	stop()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.handled[ok] != 1 || rec.handled[rej] != 1 || len(rec.handled) != 2 {
		t.Errorf("handled = %v, want each of the two messages once", rec.handled)
	}
	if f := rec.finals(ok)[0]; f.Status != StatusProcessed || f.Recipient != testBAL {
		t.Errorf("accepted message: final %+v", f)
	}
	if f := rec.finals(rej)[0]; f.Status != StatusError || f.Code != 902 {
		t.Errorf("rejected message: final %+v", f)
	}
	if f := rec.finals(bnc)[0]; f.Status != StatusFailed || f.Recipient != "nobody@other.example" {
		t.Errorf("bounced message: final %+v", f)
	}
	var delivered bool
	for _, r := range rec.receipts {
		delivered = delivered || (r.MessageID == ok && r.Status == StatusDelivered && !r.Final)
	}
	if !delivered {
		t.Errorf("no non-final delivered receipt (Postfix success DSN) for the accepted message: %+v", rec.receipts)
	}
}
