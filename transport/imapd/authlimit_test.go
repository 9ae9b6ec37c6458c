package imapd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
)

// Password guessing over IMAPS is braked: the connection is closed with BYE at its third
// failure; from that address the next attempt waits, then the account is refused even with
// the right password; the owner, from another address, logs in at once; each failure and
// refusal is audited.
func TestLoginBruteForceBrake(t *testing.T) {
	const delay = 3 * time.Second // wide enough that a loaded machine does not make the owner look braked
	auditDir := t.TempDir()
	al, err := audit.Open(&audit.Options{Dir: auditDir})
	if err != nil {
		t.Fatal(err)
	}
	lim := authlimit.New(&authlimit.Options{Delay: delay, MaxDelay: delay, LockoutFailures: 4, Audit: al})
	e := newEnvWith(t, func(o *Options) { o.AuthLimiter = lim })
	// dial connects over implicit TLS from the local address from (the whole 127/8 is
	// loopback, so 127.0.0.2 is another source).
	dial := func(from string) *imapclient.Client {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", e.tlsAddr, e.clientTLS(false))
		if err != nil {
			t.Fatal(err)
		}
		c := imapclient.New(conn, nil)
		t.Cleanup(func() { c.Close() })
		if err := c.WaitGreeting(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	login := func(c *imapclient.Client, pw string) (time.Duration, error) {
		start := time.Now()
		err := c.Login(orgBAL, pw).Wait()
		return time.Since(start), err
	}

	c1 := dial("127.0.0.1")
	for i := 1; i <= 3; i++ {
		if _, err := login(c1, "guess"); err == nil {
			t.Fatalf("wrong password %d accepted", i)
		}
	}
	if err := c1.Noop().Wait(); err == nil {
		t.Fatal("the connection is still open after 3 failures")
	}

	c2 := dial("127.0.0.1")
	if d, err := login(c2, "guess"); err == nil || d < delay {
		t.Fatalf("4th attempt from the address: %v after %v, want a failure after ≥ %v", err, d, delay)
	}
	if _, err := login(c2, orgPW); err == nil {
		t.Fatal("the right password accepted from the locked-out address")
	}
	if err := c2.Noop().Wait(); err == nil {
		t.Fatal("the connection is still open after a refusal")
	}

	c3 := dial("127.0.0.2")
	d, err := login(c3, orgPW)
	if err != nil {
		t.Fatalf("the owner from another address: %v", err)
	}
	if d >= delay {
		t.Errorf("the owner from another address waited %v", d)
	}

	al.Close()
	f, err := os.Open(filepath.Join(auditDir, "audit.jsonl"))
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
		if r.Event != audit.EventAuthFailed || r.Source != "imap" || r.BAL != orgBAL {
			t.Errorf("audit record %+v", r)
		}
		if host, _, _ := net.SplitHostPort(r.PeerAddr); host != "127.0.0.1" {
			t.Errorf("audit record from %s", r.PeerAddr)
		}
		reasons = append(reasons, r.Reason)
	}
	want := []string{"bad_credentials", "bad_credentials", "bad_credentials_disconnect", "bad_credentials", "locked_out"}
	if len(reasons) != len(want) {
		t.Fatalf("audit reasons %q, want %q", reasons, want)
	}
	for i := range want {
		if reasons[i] != want[i] {
			t.Fatalf("audit reasons %q, want %q", reasons, want)
		}
	}
}

// Token guessing is braked like password guessing, in the same limiter: a provider that is
// down (NO [UNAVAILABLE]) counts for nothing; bad tokens, a token naming another person's
// BAL and one whose holder has no BAL close the connection with BYE at the third; from that
// address, Python's imaplib then waits, then even a good token is refused with BYE, and a
// password on that BAL too (AUTHENTICATE PLAIN and LOGIN); the owner, from another address, logs in at once.
func TestOAuthBruteForceBrake(t *testing.T) {
	py := testenv.Require(t, "python3")
	const delay = 3 * time.Second
	lim := authlimit.New(&authlimit.Options{Delay: delay, MaxDelay: delay, LockoutFailures: 4})
	e := newBearerEnv(t, func(o *Options) { o.AuthLimiter = lim })
	dial := func(from string) net.Conn {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", e.tlsAddr, e.clientTLS(false))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		return conn
	}
	// session runs XOAUTH2 logins on conn (the error challenge answered with ^A, as RFC 7628
	// §3.2.3 asks) and returns the replies: the tagged ones and a BYE, or "EOF".
	session := func(conn net.Conn) func(bal, token string) []string {
		r := bufio.NewReader(conn)
		r.ReadString('\n')
		return func(bal, token string) []string {
			ir := base64.StdEncoding.EncodeToString([]byte("user=" + bal + "\x01auth=Bearer " + token + "\x01\x01"))
			fmt.Fprintf(conn, "a AUTHENTICATE XOAUTH2 %s\r\n", ir)
			var replies []string
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return append(replies, "EOF")
				}
				switch {
				case strings.HasPrefix(l, "+"):
					fmt.Fprintf(conn, "AQ==\r\n")
				case strings.HasPrefix(l, "* BYE"):
					replies = append(replies, strings.TrimSpace(l))
				case strings.HasPrefix(l, "a "):
					return append(replies, strings.TrimSpace(l))
				}
			}
		}
	}

	c1 := session(dial("127.0.0.1"))
	e.op.SetDown(true) // a fresh server: the keys are not cached, the token cannot be checked
	for i := range 5 {
		if got := c1(perBAL, e.op.Token(t, dupont)); !strings.Contains(got[0], "a NO [UNAVAILABLE]") {
			t.Fatalf("provider down, try %d: %q, want NO [UNAVAILABLE]", i, got)
		}
	}
	e.op.SetDown(false)
	bye := "* BYE Too many failed authentications, try again later"
	for i, tok := range []string{"not-a-token", e.op.Token(t, durand), e.op.Token(t, nobody)} {
		got := c1(perBAL, tok)
		if i < 2 && (len(got) != 1 || !strings.HasPrefix(got[0], "a NO [AUTHENTICATIONFAILED]")) {
			t.Fatalf("bad login %d: %q", i, got)
		}
		if i == 2 && (len(got) == 0 || got[0] != bye) {
			t.Fatalf("third bad login: %q, want %q and the connection closed", got, bye)
		}
	}

	_, port, _ := net.SplitHostPort(e.tlsAddr)
	start := time.Now()
	out, err := exec.Command(py, "-c", pyXOAUTH2, "localhost", port, e.ca, perBAL, "guess").CombinedOutput()
	if d := time.Since(start); err != nil || !strings.Contains(string(out), "AUTHENTICATIONFAILED") || d < delay {
		t.Fatalf("4th token from the address: %q %v after %v, want a refusal after ≥ %v", out, err, d, delay)
	}
	if got := session(dial("127.0.0.1"))(perBAL, e.op.Token(t, dupont)); len(got) == 0 || got[0] != bye {
		t.Fatalf("a good token from the locked-out address: %q, want %q", got, bye)
	}
	// AUTHENTICATE PLAIN holds go-imap's response encoder for its whole exchange: the refusal
	// must still reach the client, not wait for it.
	plain := dial("127.0.0.1")
	r := bufio.NewReader(plain)
	r.ReadString('\n')
	fmt.Fprintf(plain, "p AUTHENTICATE PLAIN %s\r\n", base64.StdEncoding.EncodeToString([]byte("\x00"+perBAL+"\x00guess")))
	if l, err := r.ReadString('\n'); err != nil || strings.TrimSpace(l) != bye {
		t.Fatalf("AUTHENTICATE PLAIN from the locked-out address: %q %v, want %q", l, err, bye)
	}
	c2 := imapclient.New(dial("127.0.0.1"), nil)
	if err := c2.Login(perBAL, "guess").Wait(); err == nil || c2.Noop().Wait() == nil {
		t.Fatalf("a password on the BAL locked out by tokens: %v, want BYE", err)
	}

	c3 := imapclient.New(dial("127.0.0.2"), nil)
	start = time.Now()
	if err := c3.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: perBAL, Token: e.op.Token(t, dupont)})); err != nil {
		t.Fatalf("the owner from another address: %v", err)
	}
	if d := time.Since(start); d >= delay {
		t.Errorf("the owner from another address waited %v", d)
	}
}
