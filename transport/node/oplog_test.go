package node_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/node"
)

// firstRecord returns the first JSON record of logs whose message is msg, or nil.
func firstRecord(t *testing.T, logs *testenv.Buffer, msg string) map[string]any {
	t.Helper()
	if rs := testenv.JSONRecords(t, logs.String(), msg); len(rs) > 0 {
		return rs[0]
	}
	return nil
}

// Once every listener is up the node writes one record saying how it serves: build, hostname,
// domains, each listener's address, the liste blanche held, the CRLs, the mailbox store; as a
// warning with the reasons when no liste blanche is held.
func TestReadyLogged(t *testing.T) {
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	for _, noList := range []bool{false, true} {
		var logs testenv.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		cfg := s.config(t, a)
		if noList { // a URL that does not answer and no cache: nothing held at start
			cfg.Whitelist.File, cfg.Whitelist.URL = "", "https://127.0.0.1:1/liste-blanche.xml"
			cfg.Whitelist.CacheFile = filepath.Join(t.TempDir(), "cache.xml")
		}
		a.lns = s.listeners(t)
		n, err := node.New(ctx, cfg, &node.Options{Listeners: a.lns, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- n.Serve(ctx) }()
		var r map[string]any
		waitUntil(t, "the ready record", func() bool { r = firstRecord(t, &logs, "node: ready"); return r != nil })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		if r["version"] == nil || r["hostname"] != "mx.a.mssante.test" || r["mailbox_store"] != true {
			t.Errorf("ready record: %v", r)
		}
		if d, _ := r["domains"].([]any); len(d) != 1 || d[0] != "a.mssante.test" {
			t.Errorf("domains: %v", r["domains"])
		}
		ls, _ := r["listeners"].(map[string]any)
		for _, name := range []string{"relay", "submission", "imap", "imaps"} {
			if ls[name] != a.addr(name) {
				t.Errorf("listeners.%s = %v, want %s", name, ls[name], a.addr(name))
			}
		}
		if crl, _ := r["crl"].(map[string]any); crl["held"] != float64(1) || crl["revocation"] != "required" || crl["next_update"] == nil {
			t.Errorf("crl: %v", r["crl"])
		}
		wl, _ := r["whitelist"].(map[string]any)
		switch {
		case !noList && (r["level"] != "INFO" || wl["entries"] != float64(1) || wl["generated"] == nil || r["not_ready"] != nil):
			t.Errorf("with a list: %v", r)
		case noList && (r["level"] != "WARN" || wl["state"] != "none held" || r["not_ready"] == nil):
			t.Errorf("without a list: %v", r)
		}
	}
}

// listeners returns fresh 127.0.0.1 listeners for a node's relay, submission and IMAP sides.
func (s *space) listeners(t testing.TB) map[string]net.Listener {
	t.Helper()
	lns := map[string]net.Listener{}
	for _, n := range []string{"relay", "submission", "imap", "imaps"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[n] = l
	}
	return lns
}

// twin returns a second node of operator o: same domain, certificates and BALs, a folder and
// listeners of its own.
func (s *space) twin(t testing.TB, o *operator) *operator {
	t.Helper()
	b := &operator{dir: o.dir + "-b", domain: o.domain, server: o.server, app: o.app, lns: s.listeners(t)}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.server.WriteFiles(b.dir, "server"); err != nil {
		t.Fatal(err)
	}
	return b
}
