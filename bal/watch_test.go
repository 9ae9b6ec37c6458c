package bal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// deliverMaildir drops raw into the BAL's Maildir as a delivery agent does (Dovecot picks
// it up); the same bytes twice make a duplicate delivery.
func (m *mailPeers) deliverMaildir(t testing.TB, raw []byte) {
	t.Helper()
	for _, d := range []string{"tmp", "new", "cur"} {
		p := filepath.Join(m.maildir, d)
		os.MkdirAll(p, 0o700)
		chown(t, "mail:mail", p)
	}
	chown(t, "mail:mail", m.maildir)
	name := fmt.Sprintf("%d.M%dP%d.test", time.Now().Unix(), time.Now().UnixNano(), os.Getpid())
	tmp := filepath.Join(m.maildir, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	chown(t, "mail:mail", tmp)
	if err := os.Rename(tmp, filepath.Join(m.maildir, "new", name)); err != nil {
		t.Fatal(err)
	}
}

func rawLettre(t testing.TB, name, id string) []byte {
	t.Helper()
	m := testLettre(t, testBAL, name, false)
	m.MessageID = id
	var b bytes.Buffer
	if _, err := m.WriteTo(&b, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func watchClient(t testing.TB, p *testPKI, peers *mailPeers, state string, mod ...func(*Options)) *Client {
	t.Helper()
	o := &Options{
		Address:    testBAL,
		NIL:        "DEV000000",
		Submission: Endpoint{Addr: peers.submission, Auth: AuthNone},
		IMAP:       Endpoint{Addr: peers.imaps, Security: ImplicitTLS},
		TLS:        p.clientTLS(),
		Whitelist:  testList(),
		StateDir:   state,
		Logger:     testLogger(t),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		PollInterval: time.Second,
	}
	for _, m := range mod {
		m(o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestWatchFaults: duplicate delivery, a handler that cannot decide yet, the IMAP server
// restarted while the client idles, and the client itself restarted: every message is
// handed to the handler exactly once.
func TestWatchFaults(t *testing.T) {
	p := newTestPKI(t)
	peers := startMailPeers(t, p)
	state := t.TempDir()
	rec := newRecorder()
	var failOnce atomic.Bool
	failOnce.Store(true)
	h := rec.handler(func(m *Incoming) error {
		if err := checkLettre(m); err != nil {
			return err
		}
		if m.Patient.BirthName == "LATER" && failOnce.Swap(false) {
			return errors.New("DPI busy") // not a decision: handed again later
		}
		return nil
	})
	count := func(id string) func() bool { return func() bool { return rec.handled[id] == 1 } }

	c := watchClient(t, p, peers, state)
	stop := startWatch(t, c, h, nil)
	peers.deliverMaildir(t, rawLettre(t, "UN", "a@test.example"))
	rec.waitFor(t, "message a", 30*time.Second, count("a@test.example"))

	// The same message delivered twice, then another: a is not handed again.
	peers.deliverMaildir(t, rawLettre(t, "UN", "a@test.example"))
	peers.deliverMaildir(t, rawLettre(t, "DEUX", "b@test.example"))
	rec.waitFor(t, "message b", 30*time.Second, count("b@test.example"))

	// A handler that cannot decide: handed again on a later round, then once.
	peers.deliverMaildir(t, rawLettre(t, "LATER", "later@test.example"))
	rec.waitFor(t, "message later", 30*time.Second, count("later@test.example"))

	// Dovecot restarted while the client idles.
	reconnects := c.sessions.Load()
	peers.stopDovecot()
	peers.startDovecot(t)
	peers.deliverMaildir(t, rawLettre(t, "TROIS", "c@test.example"))
	rec.waitFor(t, "message c after the server restart", 30*time.Second, count("c@test.example"))
	if c.sessions.Load() <= reconnects {
		t.Errorf("no new IMAP session after the server restart")
	}

	// The client restarted: a new Client on the same state folder, once the first let it go.
	stop()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	peers.deliverMaildir(t, rawLettre(t, "QUATRE", "d@test.example"))
	c2 := watchClient(t, p, peers, state)
	stop2 := startWatch(t, c2, h, nil)
	rec.waitFor(t, "message d after the client restart", 30*time.Second, count("d@test.example"))
	// Let the restarted client go through the whole mailbox once more.
	time.Sleep(1500 * time.Millisecond)
	stop2()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id, n := range rec.handled {
		if n != 1 {
			t.Errorf("%s handed %d times", id, n)
		}
	}
	if len(rec.handled) != 5 {
		t.Errorf("handled %v, want 5 messages", rec.handled)
	}
}

// TestWatchMovesToProcessedMailbox: with ProcessedMailbox the handled message leaves the
// INBOX for that folder.
func TestWatchMovesToProcessedMailbox(t *testing.T) {
	p := newTestPKI(t)
	peers := startMailPeers(t, p)
	rec := newRecorder()
	c := watchClient(t, p, peers, t.TempDir(), func(o *Options) { o.ProcessedMailbox = "Traites" })
	stop := startWatch(t, c, rec.handler(checkLettre), nil)
	peers.deliverMaildir(t, rawLettre(t, "UN", "m@test.example"))
	rec.waitFor(t, "message", 30*time.Second, func() bool { return rec.handled["m@test.example"] == 1 })
	deadline := time.Now().Add(10 * time.Second)
	for {
		inbox, _ := filepath.Glob(filepath.Join(peers.maildir, "cur", "*"))
		moved, _ := filepath.Glob(filepath.Join(peers.maildir, ".Traites", "cur", "*"))
		if len(inbox) == 0 && len(moved) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("INBOX %d, Traites %d", len(inbox), len(moved))
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
}

// TestWatchRefusesBadConfig: no SASL for IMAP, no state folder, untrusted server.
func TestWatchRefusesBadConfig(t *testing.T) {
	p := newTestPKI(t)
	ctx := context.Background()
	c, _ := New(&Options{Address: testBAL, NIL: "DEV000000", TLS: p.clientTLS(), StateDir: t.TempDir(), Auth: AuthNone,
		IMAP: Endpoint{Addr: "127.0.0.1:1"}, Submission: Endpoint{Addr: "127.0.0.1:1"}})
	if err := c.Watch(ctx, func(context.Context, *Incoming) error { return nil }, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("AuthNone for IMAP: %v", err)
	}
	c, _ = New(&Options{Address: testBAL, NIL: "DEV000000", TLS: p.clientTLS(), IMAP: Endpoint{Addr: "127.0.0.1:1"}, Submission: Endpoint{Addr: "127.0.0.1:1"}})
	if err := c.Watch(ctx, func(context.Context, *Incoming) error { return nil }, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("no StateDir: %v", err)
	}
	if err := c.Watch(ctx, nil, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("nil handler: %v", err)
	}
}

// TestWatchStartTLSPlainOnDovecot: IMAP with STARTTLS on 143-style port and SASL PLAIN (the
// certificate is still required by Dovecot); a wrong password is a final ErrAuth.
func TestWatchStartTLSPlainOnDovecot(t *testing.T) {
	p := newTestPKI(t)
	peers := startMailPeers(t, p)
	rec := newRecorder()
	c := watchClient(t, p, peers, t.TempDir(), func(o *Options) {
		o.IMAP = Endpoint{Addr: peers.imap, Security: StartTLS}
		o.Auth, o.Username, o.Password = AuthPlain, testBAL, "secret"
	})
	stop := startWatch(t, c, rec.handler(checkLettre), nil)
	peers.deliverMaildir(t, rawLettre(t, "UN", "p@test.example"))
	rec.waitFor(t, "message", 30*time.Second, func() bool { return rec.handled["p@test.example"] == 1 })
	stop()

	bad := watchClient(t, p, peers, t.TempDir(), func(o *Options) {
		o.IMAP = Endpoint{Addr: peers.imap, Security: StartTLS}
		o.Auth, o.Username, o.Password = AuthPlain, testBAL, "wrong"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bad.Watch(ctx, rec.handler(checkLettre), nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong password: %v", err)
	}
}

// countWriter counts the log lines that hold a phrase.
type countWriter struct {
	phrase string
	n      atomic.Int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.phrase)) {
		w.n.Add(1)
	}
	return len(p), nil
}

// TestWatchLeavesOthersReceipts: a watcher on another state folder meets the DSN of a
// message it did not send behind a message its handler cannot decide yet. It leaves the DSN
// unmarked and remembers it (no fetch on the next rounds); the sender's own watcher, later,
// still finds it and reports the final status.
func TestWatchLeavesOthersReceipts(t *testing.T) {
	p := newTestPKI(t)
	peers := startMailPeers(t, p)
	peers.deliverMaildir(t, rawLettre(t, "LATER", "later@test.example"))

	left := &countWriter{phrase: "left in the mailbox"}
	otherState := t.TempDir()
	other := watchClient(t, p, peers, otherState, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(left, nil))
	})
	busy := newRecorder()
	var tries atomic.Int64
	stop := startWatch(t, other, busy.handler(func(*Incoming) error {
		tries.Add(1)
		return errors.New("DPI busy")
	}), &WatchOptions{OnReceipt: busy.onReceipt})
	// The undecided message first, so that the DSN comes after it.
	busy.waitFor(t, "the undecided message", 30*time.Second, func() bool { return tries.Load() > 0 })

	sender := watchClient(t, p, peers, t.TempDir())
	res, err := sender.Send(context.Background(), testLettre(t, "nobody@other.example", "MARTIN", false), nil)
	if err != nil {
		t.Fatal(err)
	}
	busy.waitFor(t, "the DSN left", 60*time.Second, func() bool { return left.n.Load() == 1 })
	// A few more rounds (PollInterval 1 s): the DSN is not fetched again.
	time.Sleep(2500 * time.Millisecond)
	stop()
	if n := left.n.Load(); n != 1 {
		t.Errorf("the DSN was parsed and left %d times, want once", n)
	}
	busy.mu.Lock()
	if len(busy.receipts) != 0 {
		t.Errorf("the other watcher reported %+v", busy.receipts)
	}
	busy.mu.Unlock()
	cp, err := (&inbox{dir: filepath.Join(otherState, "inbox")}).loadCheckpoint("INBOX")
	if err != nil || cp.LastUID != 0 || len(cp.Skipped) != 1 {
		t.Errorf("other's checkpoint %+v, %v: want nothing handled and one UID skipped", cp, err)
	}

	own := newRecorder()
	stop = startWatch(t, sender, own.handler(func(*Incoming) error { return nil }), &WatchOptions{OnReceipt: own.onReceipt})
	own.waitFor(t, "the sender's final receipt", 60*time.Second, func() bool { return len(own.finals(res.MessageID)) == 1 })
	stop()
	if f := own.finals(res.MessageID)[0]; f.Status != StatusFailed {
		t.Errorf("final %+v, want failed", f)
	}
}

// TestNewRefusesHeldStateDir: one Client per state folder; the refusal names the holder,
// and Close lets the folder go.
func TestNewRefusesHeldStateDir(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	first := newTestClient(t, p, "127.0.0.1:1", func(o *Options) { o.StateDir = dir })
	o := &Options{Address: testBAL, TLS: p.clientTLS(), Auth: AuthNone, StateDir: dir}
	_, err := New(o)
	if !errors.Is(err, ErrStateInUse) || !strings.Contains(err.Error(), "in use by process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second New on %s: %v, want ErrStateInUse naming PID %d", dir, err, os.Getpid())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second, err := New(o)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	second.Close()
}

// TestWatchHandlerLeaves: a handler returning ErrLeave is not asked again about the message,
// which stays unmarked for the watcher that integrates messages.
func TestWatchHandlerLeaves(t *testing.T) {
	p := newTestPKI(t)
	peers := startMailPeers(t, p)
	peers.deliverMaildir(t, rawLettre(t, "UN", "leave@test.example"))
	var asked atomic.Int64
	rec := newRecorder()
	c := watchClient(t, p, peers, t.TempDir())
	stop := startWatch(t, c, rec.handler(func(*Incoming) error {
		asked.Add(1)
		return ErrLeave
	}), nil)
	rec.waitFor(t, "the message left", 30*time.Second, func() bool { return asked.Load() == 1 })
	time.Sleep(2500 * time.Millisecond) // rounds every PollInterval (1 s)
	stop()
	if n := asked.Load(); n != 1 {
		t.Errorf("handler asked %d times, want once", n)
	}

	integrator := newRecorder()
	c2 := watchClient(t, p, peers, t.TempDir())
	stop = startWatch(t, c2, integrator.handler(checkLettre), nil)
	integrator.waitFor(t, "the message handed to the integrating watcher", 30*time.Second, func() bool {
		return integrator.handled["leave@test.example"] == 1
	})
	stop()
}
