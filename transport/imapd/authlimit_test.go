package imapd

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
)

// Password guessing over IMAPS is braked: the connection is closed with BYE at its third
// failure; from that address the next attempt waits, then the account is refused even with
// the right password; the owner, from another address, logs in at once; each failure and
// refusal is audited.
func TestLoginBruteForceBrake(t *testing.T) {
	const delay = time.Second
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
