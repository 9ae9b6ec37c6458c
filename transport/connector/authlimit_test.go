package connector

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
)

// Password guessing on submission AUTH PLAIN is braked: the session is closed with 421 4.7.0
// at its third failure, also when EHLO is sent again between tries; from that address the
// next attempt waits, then the login is refused even with the right password; the owner, from
// another address, logs in at once; each failure and refusal is audited.
func TestSubmissionAuthBruteForceBrake(t *testing.T) {
	const delay = time.Second
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	lim := authlimit.New(&authlimit.Options{Delay: delay, MaxDelay: delay, LockoutFailures: 4, Audit: a.audit})
	s, err := NewServer(&ServerOptions{Mode: ModeSubmission, Hostname: "mx.a.mssante.test",
		TLS:    &transport.TLSOptions{Trust: trustStore(t), Certificates: []tls.Certificate{a.server.TLSCertificate()}},
		Policy: a.policy, LocalDomains: []string{a.domain}, Local: a.maildir, Queue: a.q, Audit: a.audit,
		Accounts:   &StaticAccounts{Passwords: map[string]PasswordAccount{"bal": {Password: "secret", BAL: a.bal}}},
		AllowPlain: true, AuthLimiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s).Addr().String()
	dial := func(from string) *smtp.Client {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClientStartTLS(conn, clientTLS(nil, testPKI(t)))
		if err == nil {
			err = c.Hello("client.test")
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	auth := func(c *smtp.Client, pw string) (time.Duration, string) {
		start := time.Now()
		err := c.Auth(sasl.NewPlainClient("", "bal", pw))
		return time.Since(start), code(err)
	}

	c1 := rawDial(t, addr, clientTLS(nil, testPKI(t)))
	guess := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00bal\x00guess"))
	c1.cmd(guess, "535 5.7.8")
	c1.cmd(guess, "535 5.7.8")
	c1.cmd("EHLO again.test", "250") // a new session of the connection: its failures still count
	c1.cmd(guess, "421 4.7.0")
	if got := c1.reply(); got != "EOF" {
		t.Fatalf("after 3 failures: %q, want the connection closed", got)
	}

	c2 := dial("127.0.0.1")
	if d, got := auth(c2, "guess"); got != "535 5.7.8" || d < delay {
		t.Fatalf("4th attempt from the address: %s after %v, want 535 5.7.8 after ≥ %v", got, d, delay)
	}
	if _, got := auth(c2, "secret"); got != "421 4.7.0" {
		t.Fatalf("the right password from the locked-out address: %s, want 421 4.7.0", got)
	}
	if err := c2.Noop(); err == nil {
		t.Fatal("the session is still open after a refusal")
	}

	c3 := dial("127.0.0.2")
	if d, got := auth(c3, "secret"); got != "ok" || d >= delay {
		t.Fatalf("the owner from another address: %s after %v", got, d)
	}

	a.audit.Close()
	f, err := os.Open(filepath.Join(a.auditDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var reasons []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Event != audit.EventAuthFailed {
			continue
		}
		if host, _, _ := net.SplitHostPort(r.PeerAddr); host != "127.0.0.1" || r.Source != "submission" {
			t.Errorf("audit record %+v", r)
		}
		reasons = append(reasons, r.Reason)
	}
	want := "bad_credentials bad_credentials bad_credentials_disconnect bad_credentials locked_out"
	if got := strings.Join(reasons, " "); got != want {
		t.Fatalf("audit reasons %q, want %q", got, want)
	}
}

// Token guessing on submission is braked like password guessing, in the same limiter: a
// provider that is down (454 4.7.0) counts for nothing; a bad token, a token naming another
// person's BAL and one whose holder has no BAL close the session with 421 4.7.0 at the third;
// from that address Python's smtplib then waits, and even a good token gets 421 4.7.0.
func TestOAuthSubmissionBruteForceBrake(t *testing.T) {
	py := testenv.Require(t, "python3")
	const delay = time.Second
	lim := authlimit.New(&authlimit.Options{Delay: delay, MaxDelay: delay, LockoutFailures: 4})
	n, op, ca := newBearerNode(t, func(o *ServerOptions) { o.AuthLimiter = lim })
	xoauth2 := func(token string) string {
		return "AUTH XOAUTH2 " + base64.StdEncoding.EncodeToString([]byte("user="+n.bal+"\x01auth=Bearer "+token+"\x01\x01"))
	}
	c1 := rawDial(t, n.subAddr, clientTLS(nil, testPKI(t)))
	op.SetDown(true) // a fresh server: the keys are not cached, the token cannot be checked
	for range 5 {
		c1.cmd(xoauth2(op.Token(t, tokenHolder)), "454 4.7.0")
	}
	op.SetDown(false)
	c1.cmd(xoauth2("not-a-token"), "334")
	c1.cmd("AQ==", "535 5.7.8")
	c1.cmd(xoauth2(op.Token(t, tokenOther)), "334")
	c1.cmd("AQ==", "535 5.7.8")
	c1.cmd(xoauth2(op.Token(t, "810000000009")), "421 4.7.0")
	if got := c1.reply(); got != "EOF" {
		t.Fatalf("after 3 failed tokens: %q, want the connection closed", got)
	}

	_, port, _ := net.SplitHostPort(n.subAddr)
	start := time.Now()
	out, err := exec.Command(py, "-c", pySMTPXOAUTH2, port, ca, n.bal, "guess").Output()
	if d := time.Since(start); err != nil || !strings.HasPrefix(string(out), "535 5.7.8") || d < delay {
		t.Fatalf("4th token from the address: %q %v after %v, want 535 5.7.8 after ≥ %v", out, err, d, delay)
	}
	c2 := rawDial(t, n.subAddr, clientTLS(nil, testPKI(t)))
	c2.cmd(xoauth2(op.Token(t, tokenHolder)), "421 4.7.0")
	if got := c2.reply(); got != "EOF" {
		t.Fatalf("after a refusal: %q, want the connection closed", got)
	}
}
