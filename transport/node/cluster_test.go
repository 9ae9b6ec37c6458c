package node_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/connshare"
	"github.com/mssante-go/sdk/transport/node"
)

// Two nodes of one operator (same domain, same certificate, each its own spool and store)
// over one PostgreSQL, as node.Options wires it: failed IMAP logins on node A lock the login
// on node B from that address, IMAP connections held on A count against
// max_connections_per_address on B, and each node's audit log names it.
func TestTwoNodesShareAuthAndConnectionLimits(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	b := s.twin(t, a)
	per := "dr.martin@" + a.domain
	const pw = "correct horse battery"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shares := map[string]*connshare.Share{}
	for name, o := range map[string]*operator{"node-a": a, "node-b": b} {
		o.extra = "[node]\nname = \"" + name + "\"\n[auth]\nlockout_failures = 2\nallow_passwords = true\n" +
			"[imap]\nmax_connections_per_address = 2\n" +
			"[[bal]]\naddress = \"" + per + "\"\ntype = \"PER\"\npassword = \"" + pw + "\"\nlogin = \"" + per + "\"\n"
		pool, err := pgxpool.New(ctx, pg.DSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		counters, err := authlimit.NewPostgres(ctx, pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		share, err := connshare.Open(ctx, pool, &connshare.Options{Node: name, Delay: 20 * time.Millisecond, Interval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { share.Close() })
		shares[name] = share
		s.start(t, ctx, o, &node.Options{AuthCounters: counters, ConnShare: share})
	}
	dial := func(o *operator, from string) (*imapclient.Client, error) {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", o.addr("imaps"), s.clientTLS(o, nil))
		if err != nil {
			return nil, err
		}
		c := imapclient.New(conn, nil)
		if err := c.WaitGreeting(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	login := func(o *operator, from, pass string) error {
		t.Helper()
		c, err := dial(o, from)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Login(per, pass).Wait()
	}

	for range 2 {
		if login(a, "127.0.0.1", "guess") == nil {
			t.Fatal("a wrong password accepted")
		}
	}
	if login(b, "127.0.0.1", pw) == nil {
		t.Error("node B accepted the right password from the address locked out on node A")
	}
	if err := login(b, "127.0.0.2", pw); err != nil {
		t.Errorf("node B, the owner from another address: %v", err)
	}

	for i := range 2 {
		c, err := dial(a, "127.0.0.3")
		if err != nil {
			t.Fatalf("connection %d to node A: %v", i+1, err)
		}
		defer c.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); shares["node-b"].Others("imap", "127.0.0.3") != 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node B never saw node A's connections")
		}
	}
	if c, err := dial(b, "127.0.0.3"); err == nil {
		c.Close()
		t.Error("node B accepted a third IMAP connection from the address (two on node A)")
	}
	if c, err := dial(b, "127.0.0.4"); err != nil {
		t.Errorf("node B refused another address: %v", err)
	} else {
		c.Close()
	}

	cancel()
	for name, o := range map[string]*operator{"node-a": a, "node-b": b} {
		data, err := os.ReadFile(filepath.Join(o.dir, "audit", "audit.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		var reasons []string
		for line := range strings.Lines(string(data)) {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil || r.Node != name {
				t.Errorf("%s's audit: %q", name, line)
			}
			if r.Event == audit.EventAuthFailed {
				reasons = append(reasons, r.Reason)
			}
		}
		want := map[string]string{"node-a": "bad_credentials bad_credentials", "node-b": "locked_out"}[name]
		if strings.Join(reasons, " ") != want {
			t.Errorf("%s's audit: %q, want %q", name, reasons, want)
		}
	}
}
