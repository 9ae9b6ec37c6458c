package node_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
)

// Two nodes of one operator with [store] backend = "postgres" on one database (the DSN of
// node B in a 0600 dsn_file): a message submitted to node A is queued and delivered through
// PostgreSQL, and node B's IMAP shows it; then a session IDLE on node B hears of the next
// delivery node A makes within one second of its 250.
func TestPostgresBackendSharedByTwoNodes(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	b := s.twin(t, a)
	dsnFile := filepath.Join(b.dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(pg.DSN()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The bodies live in a folder both nodes mount ([store] blobs).
	blobs := t.TempDir()
	a.store = "[store]\nbackend = \"postgres\"\ndsn = \"" + pg.DSN() + "\"\npool_size = 4\nblobs = \"dir:" + blobs + "\"\n[node]\nname = \"node-a\""
	b.store = "[store]\nbackend = \"postgres\"\ndsn_file = \"" + dsnFile + "\"\nblobs = \"dir:" + blobs + "\"\n[node]\nname = \"node-b\""
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	na, _ := s.start(t, ctx, a, nil)
	nb, _ := s.start(t, ctx, b, nil)
	if _, ok := na.Store.(*mailbox.Postgres); !ok {
		t.Fatalf("node A's store is a %T", na.Store)
	}
	if _, ok := nb.Queue().(interface{ Kick() }); !ok {
		t.Fatalf("node B's queue is a %T", nb.Queue())
	}
	const msg = "From: dpi@a.mssante.test\r\nTo: dpi@a.mssante.test\r\nSubject: shared\r\nMessage-ID: <shared@a>\r\n\r\nbody\r\n"
	s.submit(t, a, a.appBAL(), a.appBAL(), msg)
	var got [][]byte
	for deadline := time.Now().Add(15 * time.Second); len(got) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the message submitted to node A never reached the INBOX seen by node B")
		}
		got = s.inbox(t, b)
	}
	if len(got) != 1 || !strings.Contains(string(got[0]), "Message-ID: <shared@a>") {
		t.Fatalf("node B's INBOX: %d messages", len(got))
	}
	var files int
	filepath.WalkDir(blobs, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
		}
		return nil
	})
	if files == 0 {
		t.Error("no body in the shared blobs folder")
	}

	// IDLE on node B hears of a delivery that node A makes.
	exists := make(chan uint32, 16)
	c, err := imapclient.DialTLS(b.addr("imaps"), &imapclient.Options{TLSConfig: s.clientTLS(b, b.app),
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	// From the 250 of node A's submission server: its queue commits, it delivers into the
	// store, which notifies every node.
	s.submit(t, a, a.appBAL(), a.appBAL(), strings.Replace(msg, "<shared@a>", "<idle@a>", 1))
	start := time.Now()
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("IDLE on node B: EXISTS %d, want 2", n)
		}
		t.Logf("IDLE on node B woken %v after node A's 250", time.Since(start))
		if d := time.Since(start); d > time.Second {
			t.Errorf("IDLE on node B woken %v after node A's 250, want within 1 s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("IDLE on node B never heard of node A's delivery")
	}
	idle.Close()
	idle.Wait()
	c.Logout().Wait()
}

// A [store] table that cannot be used safely is refused with a clear message, before any
// connection: a DSN file others can read, a database over TCP without verified TLS, settings
// of the other backend.
func TestStoreConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "dsn")
	os.WriteFile(open, []byte("host=/tmp dbname=x"), 0o644)
	const base = "hostname = \"mx.a.test\"\ndomains = [\"a.test\"]\nspool_dir = \"/s\"\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n[whitelist]\nfile = \"w\"\n[audit]\ndir = \"/a\"\n"
	for _, c := range []struct{ name, store, want string }{
		{"unknown backend", "backend = \"mysql\"", "store.backend must be sqlite or postgres"},
		{"dsn on sqlite", "dsn = \"host=/tmp\"", "need store.backend = \"postgres\""},
		{"blobs on sqlite", "blobs = \"dir:/b\"", "need store.backend = \"postgres\""},
		{"no dsn", "backend = \"postgres\"", "exactly one of store.dsn and store.dsn_file"},
		{"both dsns", "backend = \"postgres\"\ndsn = \"host=/tmp\"\ndsn_file = \"" + open + "\"", "exactly one of"},
		{"negative pool", "backend = \"postgres\"\ndsn = \"host=/tmp\"\npool_size = -1", "pool_size must not be negative"},
		{"mailbox dir", "backend = \"postgres\"\ndsn = \"host=/tmp\"\n[mailbox]\ndir = \"/m\"", "mailbox.dir is the SQLite store's folder"},
	} {
		_, err := node.LoadConfig(strings.NewReader(base + "[store]\n" + c.store + "\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		name string
		st   node.StoreConfig
		want string
	}{
		{"open dsn file", node.StoreConfig{Backend: "postgres", DSNFile: open}, "chmod 600"},
		{"tcp without tls", node.StoreConfig{Backend: "postgres", DSN: "host=db.example user=u password=secret sslmode=require"}, "without verify-full TLS"},
		{"tcp url without tls", node.StoreConfig{Backend: "postgres", DSN: "postgres://u:secret@db.example/mssante"}, "without verify-full TLS"},
		{"missing ca file", node.StoreConfig{Backend: "postgres", DSN: "host=db.example", TLSCAFile: filepath.Join(dir, "none.pem")}, "store.tls_ca_file"},
		{"bad dsn", node.StoreConfig{Backend: "postgres", DSN: "postgres://u:secret@db.example:notaport/x"}, "does not parse"},
	} {
		_, err := c.st.ConnString()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v, want %q and no password", c.name, err, c.want)
		}
	}
	p, err := testpki.New(&testpki.Options{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, p.RootPEM(), 0o644)
	for _, dsn := range []string{"postgres://u@db.example/mssante", "host=db.example user=u"} {
		st := node.StoreConfig{Backend: "postgres", DSN: dsn, TLSCAFile: ca, PoolSize: 8}
		if got, err := st.ConnString(); err != nil || !strings.Contains(got, "verify-full") || !strings.Contains(got, "pool_max_conns") {
			t.Errorf("%s with tls_ca_file: %q, %v", dsn, got, err)
		}
	}
	os.WriteFile(ca, []byte("not a certificate"), 0o644)
	if _, err := (&node.StoreConfig{Backend: "postgres", DSN: "host=db.example", TLSCAFile: ca}).ConnString(); err == nil {
		t.Error("a tls_ca_file without a certificate accepted")
	}
	if err := os.Chmod(open, 0o600); err != nil {
		t.Fatal(err)
	}
	if dsn, err := (&node.StoreConfig{Backend: "postgres", DSNFile: open, PoolSize: 3}).ConnString(); err != nil ||
		!strings.Contains(dsn, "pool_max_conns='3'") {
		t.Errorf("dsn_file 0600 with a Unix socket: %q, %v", dsn, err)
	}
}

// PostgreSQL restarted while messages are submitted to a node on it: what the node answered
// 250 is delivered once; what it could not commit is refused with a 4xx (the client retries),
// never a 5xx; the node reconnects by itself.
func TestPostgresRestartUnderSubmissions(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	a.store = "[store]\nbackend = \"postgres\"\ndsn = \"" + pg.DSN() + "\"\n[node]\nname = \"node-a\""
	// A delivery cut by the restart keeps its lease until it expires: a short one here.
	a.queue = "lease = \"2s\""
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, _ := s.start(t, ctx, a, nil)
	var (
		mu       sync.Mutex
		accepted []string
		temp     int
		perm     []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("<restart-%d-%d@a>", w, i)
				msg := "From: " + a.appBAL() + "\r\nTo: " + a.appBAL() + "\r\nSubject: r\r\nMessage-ID: " + id + "\r\n\r\nbody\r\n"
				err := sendOnce(s, a, msg)
				mu.Lock()
				var se *smtp.SMTPError
				switch {
				case err == nil:
					accepted = append(accepted, id)
				case errors.As(err, &se) && se.Code >= 500:
					perm = append(perm, fmt.Sprintf("%s: %v", id, err))
				default:
					temp++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(time.Second)
	pg.Stop()
	time.Sleep(time.Second)
	pg.Start(t)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d accepted, %d refused with a 4xx or a cut session, %d with a 5xx", len(accepted), temp, len(perm))
	for _, p := range perm {
		t.Errorf("permanent refusal while PostgreSQL restarted: %s", p)
	}
	if temp == 0 {
		t.Error("no submission was refused while PostgreSQL was down")
	}
	want := map[string]bool{}
	for _, id := range accepted {
		want[id] = true
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		mb, err := n.Store.Mailbox(ctx, a.appBAL(), mailbox.Inbox)
		if err == nil && n.Queue().Stats().Messages == 0 && int(mb.Messages) >= len(want) {
			hs, err := n.Store.Headers(ctx, mb.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, h := range hs {
				if i := strings.Index(string(h), "Message-ID: "); i >= 0 {
					id, _, _ := strings.Cut(string(h[i+len("Message-ID: "):]), "\r\n")
					seen[id]++
				}
			}
			for id := range want {
				if seen[id] != 1 {
					t.Errorf("%s, answered 250, delivered %d times", id, seen[id])
				}
			}
			for id, k := range seen {
				if k > 1 {
					t.Errorf("%s delivered %d times", id, k)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %v in the queue, INBOX %v (%v), %d accepted", n.Queue().Stats(), mb, err, len(want))
		}
	}
}

// sendOnce submits msg to o over a new session (SASL EXTERNAL with its APP BAL's certificate).
func sendOnce(s *space, o *operator, msg string) error {
	c, err := smtp.DialStartTLS(o.addr("submission"), s.clientTLS(o, o.app))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewExternalClient("")); err != nil {
		return err
	}
	if err := c.SendMail(o.appBAL(), []string{o.appBAL()}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}
