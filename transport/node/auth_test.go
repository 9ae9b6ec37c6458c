package node_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/transport/audit"
)

// A failed password login takes as long for an address that has no BAL as for a BAL with a
// wrong password, over IMAPS and over submission: the answer time does not tell which
// addresses exist. Medians of interleaved tries; the bounds are wide because only a missing
// key derivation (a ratio near 100) is the defect.
func TestLoginTimingDoesNotRevealAccounts(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	per := "dr.martin@" + a.domain
	a.extra = "[submission]\nallow_plain = true\n" + authNoBrake +
		"[[bal]]\naddress = \"" + per + "\"\ntype = \"PER\"\nlogin = \"" + per + "\"\npassword = \"correct horse battery\"\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := s.start(t, ctx, a, nil)

	imapLogin := func(user string) time.Duration {
		t.Helper()
		c, err := imapclient.DialTLS(a.addr("imaps"), &imapclient.Options{TLSConfig: s.clientTLS(a, nil)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		if err := c.Authenticate(sasl.NewPlainClient("", user, "wrong horse battery")); err == nil {
			t.Fatalf("IMAP login of %s with a wrong password accepted", user)
		}
		return time.Since(start)
	}
	smtpLogin := func(user string) time.Duration {
		t.Helper()
		c, err := smtp.DialStartTLS(a.addr("submission"), s.clientTLS(a, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Auth(sasl.NewPlainClient("", user, "wrong horse battery")); err == nil {
			t.Fatalf("submission login of %s with a wrong password accepted", user)
		}
		return time.Since(start)
	}
	for _, p := range []struct {
		name  string
		login func(string) time.Duration
	}{{"imaps", imapLogin}, {"submission", smtpLogin}} {
		const tries = 20
		var known, unknown []time.Duration
		for range tries {
			known = append(known, p.login(per))
			unknown = append(unknown, p.login("nobody@"+a.domain))
		}
		mk, mu := median(known), median(unknown)
		ratio := float64(mk) / float64(mu)
		t.Logf("%s: median wrong password %v, unknown address %v, ratio %.2f", p.name, mk, mu, ratio)
		if ratio < 0.5 || ratio > 2 {
			t.Errorf("%s: a known address with a wrong password takes %v, an unknown one %v (ratio %.1f, want 0.5–2)",
				p.name, mk, mu, ratio)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func median(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}

// authNoBrake is an [auth] table that neither delays nor refuses, for tests that repeat
// failures on purpose.
const authNoBrake = "[auth]\nmax_connection_failures = 1000\nfree_failures = 1000\nfree_address_failures = 1000\n" +
	"lockout_failures = 1000\nlockout_address_failures = 1000\naccount_failures = 1000\nallow_passwords = true\n"

// The [auth] brake is one for IMAP and submission: a failure on each refuses the login on
// both from that address, the owner still logs in from another address, and the audit log
// of the node holds the failures of both listeners, each naming the node ([node] name).
func TestAuthBrakeSharedByIMAPAndSubmission(t *testing.T) {
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	per := "dr.martin@" + a.domain
	const pw = "correct horse battery"
	a.extra = "[node]\nname = \"node-a\"\n[submission]\nallow_plain = true\n[auth]\nlockout_failures = 2\nallow_passwords = true\n" +
		"[[bal]]\naddress = \"" + per + "\"\ntype = \"PER\"\npassword = \"" + pw + "\"\nlogin = \"" + per + "\"\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := s.start(t, ctx, a, nil)
	dialer := func(from string) *net.Dialer {
		return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	}
	imapLogin := func(from, pass string) error {
		t.Helper()
		conn, err := tls.DialWithDialer(dialer(from), "tcp", a.addr("imaps"), s.clientTLS(a, nil))
		if err != nil {
			t.Fatal(err)
		}
		c := imapclient.New(conn, nil)
		defer c.Close()
		return c.Login(per, pass).Wait()
	}
	smtpLogin := func(from, pass string) error {
		t.Helper()
		conn, err := dialer(from).Dial("tcp", a.addr("submission"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClientStartTLS(conn, s.clientTLS(a, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		return c.Auth(sasl.NewPlainClient("", per, pass))
	}
	if imapLogin("127.0.0.1", "guess") == nil || smtpLogin("127.0.0.1", "guess") == nil {
		t.Fatal("a wrong password accepted")
	}
	if err := imapLogin("127.0.0.1", pw); err == nil {
		t.Error("IMAP: the right password accepted from the locked-out address")
	}
	if err := smtpLogin("127.0.0.1", pw); err == nil {
		t.Error("submission: the right password accepted from the locked-out address")
	}
	if err := imapLogin("127.0.0.2", pw); err != nil {
		t.Errorf("IMAP: the owner from another address: %v", err)
	}
	if err := smtpLogin("127.0.0.2", pw); err != nil {
		t.Errorf("submission: the owner from another address: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(a.dir, "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for line := range strings.Lines(string(b)) {
		var r audit.Record
		if json.Unmarshal([]byte(line), &r) != nil {
			t.Fatalf("audit: %q", line)
		}
		if r.Node != "node-a" {
			t.Errorf("audit: node %q, want node-a: %s", r.Node, line)
		}
		if r.Event == audit.EventAuthFailed {
			got = append(got, r.Source+" "+r.Reason)
		}
	}
	want := "imap bad_credentials, submission bad_credentials, imap locked_out, submission locked_out"
	if strings.Join(got, ", ") != want {
		t.Errorf("audit: %q, want %q", strings.Join(got, ", "), want)
	}
}
