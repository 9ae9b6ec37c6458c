package node_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
)

// Two nodes of one operator with [store] backend = "postgres" on one database (the DSN of
// node B in a 0600 dsn_file): a message submitted to node A is queued and delivered through
// PostgreSQL, and node B's IMAP shows it; both see the same store.
func TestPostgresBackendSharedByTwoNodes(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	b := &operator{dir: a.dir + "-b", domain: a.domain, server: a.server, app: a.app, lns: map[string]net.Listener{}}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.server.WriteFiles(b.dir, "server"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"relay", "submission", "imap", "imaps"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b.lns[n] = l
	}
	dsnFile := filepath.Join(b.dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte(pg.DSN()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.store = "[store]\nbackend = \"postgres\"\ndsn = \"" + pg.DSN() + "\"\npool_size = 4\n[node]\nname = \"node-a\""
	b.store = "[store]\nbackend = \"postgres\"\ndsn_file = \"" + dsnFile + "\"\n[node]\nname = \"node-b\""
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
