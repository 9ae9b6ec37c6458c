package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
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
	"github.com/mssante-go/sdk/internal/testpsc"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/psc"
)

const (
	perBAL    = "jean.dupont@hopital.test.mssante.fr"
	dupont    = "810000000001" // holds perBAL, member of orgBAL
	durand    = "810000000002" // holds otherPER
	nobody    = "810000000009" // holds nothing
	otherPER  = "marie.durand@hopital.test.mssante.fr"
	bearerMsg = "From: a@hopital.test.mssante.fr\r\nSubject: bearer\r\n\r\nbody\r\n"
)

type bearerEnv struct {
	*env
	op    *testpsc.Provider
	audit string // audit folder
	ca    string // the server's root, for curl and python
}

// newBearerEnv starts the server with OAuth on a test provider; configure edits the options,
// the authenticator (o.OAuth) included.
func newBearerEnv(t *testing.T, configure func(*Options)) *bearerEnv {
	t.Helper()
	op := testpsc.New(t)
	v, err := psc.New(op.Options())
	if err != nil {
		t.Fatal(err)
	}
	adir := t.TempDir()
	al, err := audit.Open(&audit.Options{Dir: adir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	e := newEnvWith(t, func(o *Options) {
		o.OAuth = &psc.Authenticator{Verifier: v}
		o.Audit = al
		if configure != nil {
			configure(o)
		}
	})
	e.srv.opts.OAuth.Holdings = e.store
	ctx := context.Background()
	for _, b := range []*mailbox.BAL{{Address: perBAL, Type: mailbox.PER, Owner: dupont}, {Address: otherPER, Type: mailbox.PER, Owner: durand}} {
		if err := e.store.AddBAL(ctx, b); err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.Append(ctx, b.Address, "INBOX", strings.NewReader(bearerMsg), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.AddMember(ctx, orgBAL, dupont); err != nil {
		t.Fatal(err)
	}
	e.store.Append(ctx, orgBAL, "INBOX", strings.NewReader(bearerMsg), nil)
	ca := filepath.Join(e.dir, "root.pem")
	os.WriteFile(ca, e.pki.RootPEM(), 0o600)
	return &bearerEnv{env: e, op: op, audit: adir, ca: ca}
}

func (e *bearerEnv) curl(t *testing.T, mech, user, token, addr string) (string, error) {
	curl := testenv.Require(t, "curl")
	_, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(curl, "-sS", "--cacert", e.ca, "--resolve", "localhost:"+port+":127.0.0.1",
		"--login-options", "AUTH="+mech, "--user", user+":", "--oauth2-bearer", token,
		fmt.Sprintf("imaps://localhost:%s/INBOX;UID=1", port)).Output()
	return string(out), err
}

// TestOAuthCurlIMAP reads a PER BAL and an ORG BAL (as a member) with curl --oauth2-bearer, with
// both mechanisms, and checks that every bad token, a token for someone who holds no BAL and a
// token naming another person's BAL all get the same refusal.
func TestOAuthCurlIMAP(t *testing.T) {
	e := newBearerEnv(t, nil)
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		for _, bal := range []string{perBAL, orgBAL} {
			out, err := e.curl(t, mech, bal, e.op.Token(t, dupont), e.tlsAddr)
			if err != nil || out != bearerMsg {
				t.Fatalf("%s %s: %q, %v (%s)", mech, bal, out, err, stderr(err))
			}
		}
	}
	expired := e.op.Claims(dupont)
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	refusals := map[string]struct{ user, token string }{
		"expired token":          {perBAL, e.op.Sign(t, expired)},
		"another person's BAL":   {otherPER, e.op.Token(t, dupont)},
		"holder of no BAL":       {perBAL, e.op.Token(t, nobody)},
		"ORG BAL of non-members": {orgBAL, e.op.Token(t, durand)},
		"garbage":                {perBAL, "not-a-token"},
	}
	var first string
	for name, r := range refusals {
		for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
			out, err := e.curl(t, mech, r.user, r.token, e.tlsAddr)
			if err == nil {
				t.Fatalf("%s %s: curl read %q", name, mech, out)
			}
			msg := fmt.Sprintf("%v: %s", err, stderr(err))
			if first == "" {
				first = msg
			}
			if msg != first {
				t.Errorf("%s %s: %q, want the same refusal as the others (%q)", name, mech, msg, first)
			}
		}
	}
	if !strings.Contains(first, "exit status 67") { // CURLE_LOGIN_DENIED
		t.Fatalf("refusal %q is not curl's login denied", first)
	}
	recs := readAudit(t, e.audit)
	if !strings.Contains(recs, `"event":"login"`) || !strings.Contains(recs, `"person":"`+dupont+`"`) ||
		!strings.Contains(recs, `"bal":"`+orgBAL+`"`) {
		t.Fatalf("audit has no login naming the person and the ORG BAL:\n%s", recs)
	}
}

func readAudit(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const pyXOAUTH2 = `
import imaplib, ssl, sys
host, port, ca, user, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
auth = "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)
try:
    typ, _ = m.authenticate("XOAUTH2", lambda challenge: auth)
except imaplib.IMAP4.error as e:
    print("refused:", e)
    sys.exit(0)
typ, data = m.select("INBOX")
typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
sys.stdout.write(data[0][1].decode())
m.logout()
`

// TestOAuthPythonImaplib logs in with imaplib authenticate('XOAUTH2', …): a good token reads
// the BAL, bad ones get NO [AUTHENTICATIONFAILED], a provider that is down NO [UNAVAILABLE].
func TestOAuthPythonImaplib(t *testing.T) {
	py := testenv.Require(t, "python3")
	e := newBearerEnv(t, nil)
	_, port, _ := net.SplitHostPort(e.tlsAddr)
	run := func(user, token string) string {
		out, err := exec.Command(py, "-c", pyXOAUTH2, "localhost", port, e.ca, user, token).Output()
		if err != nil {
			t.Fatalf("python: %v\n%s", err, stderr(err))
		}
		return string(out)
	}
	if out := run(perBAL, e.op.Token(t, dupont)); out != bearerMsg {
		t.Fatalf("good token: %q", out)
	}
	bad := run(perBAL, e.op.Token(t, nobody))
	if !strings.Contains(bad, "refused") || !strings.Contains(bad, "AUTHENTICATIONFAILED") {
		t.Fatalf("no BAL: %q", bad)
	}
	if other := run(otherPER, e.op.Token(t, dupont)); other != bad {
		t.Fatalf("other person's BAL: %q, want %q", other, bad)
	}
	c := e.op.Claims(dupont)
	c["acr"] = "eidas0"
	if low := run(perBAL, e.op.Sign(t, c)); low != bad {
		t.Fatalf("acr too low: %q, want %q", low, bad)
	}
	// Provider down: a fresh server (the keys are not cached yet) answers UNAVAILABLE.
	e2 := newBearerEnv(t, nil)
	e2.op.SetDown(true)
	_, port, _ = net.SplitHostPort(e2.tlsAddr)
	out, err := exec.Command(py, "-c", pyXOAUTH2, "localhost", port, e2.ca, perBAL, e2.op.Token(t, dupont)).Output()
	if err != nil || !strings.Contains(string(out), "UNAVAILABLE") {
		t.Fatalf("provider down: %q %v %s", out, err, stderr(err))
	}
}

// TestOAuthSTARTTLSOnly: the mechanisms are offered after STARTTLS on 143, not before.
func TestOAuthSTARTTLSOnly(t *testing.T) {
	e := newBearerEnv(t, nil)
	c, err := imapclient.DialInsecure(e.plainAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if caps.Has("AUTH=XOAUTH2") || caps.Has("AUTH=OAUTHBEARER") {
		t.Fatalf("bearer mechanisms offered in clear text: %v", caps)
	}
	if err := c.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: perBAL, Token: e.op.Token(t, dupont)})); err == nil {
		t.Fatal("OAUTHBEARER accepted in clear text")
	}
	s, err := imapclient.DialStartTLS(e.plainAddr, &imapclient.Options{TLSConfig: e.clientTLS(false)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: perBAL, Token: e.op.Token(t, dupont)})); err != nil {
		t.Fatalf("OAUTHBEARER after STARTTLS: %v", err)
	}
}

// TestOAuthSessionEndsDuringIdle: a session opened with a token ends at the configured
// session length, even in IDLE, with BYE.
func TestOAuthSessionEndsDuringIdle(t *testing.T) {
	e := newBearerEnv(t, func(o *Options) { o.OAuth.SessionLength = 2 * time.Second })
	c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS(false)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: perBAL, Token: e.op.Token(t, dupont)})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("session still open 10 s after its end")
	}
	idle.Close()
}

// TestOAuthMalformedAndOversized: a malformed or oversized SASL response is refused with a
// tagged NO or BAD, and the connection stays usable for a good login.
func TestOAuthMalformedAndOversized(t *testing.T) {
	e := newBearerEnv(t, nil)
	conn, err := tls.Dial("tcp", e.tlsAddr, e.clientTLS(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	cmd := func(tag, line string) string {
		t.Helper()
		fmt.Fprintf(conn, "%s %s\r\n", tag, line)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", tag, err)
			}
			if strings.HasPrefix(l, "+") { // an error challenge: answer it
				fmt.Fprintf(conn, "AQ==\r\n")
				continue
			}
			if strings.HasPrefix(l, tag+" ") {
				return l
			}
		}
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for name, ir := range map[string]string{
		"no auth field":  "user=" + perBAL + "\x01\x01",
		"not Bearer":     "user=" + perBAL + "\x01auth=Basic abc\x01\x01",
		"oversized":      "user=" + perBAL + "\x01auth=Bearer " + strings.Repeat("A", 20000) + "\x01\x01",
		"not terminated": "user=" + perBAL + "\x01auth=Bearer abc",
	} {
		if l := cmd("a", "AUTHENTICATE XOAUTH2 "+b64(ir)); !strings.HasPrefix(l, "a NO") && !strings.HasPrefix(l, "a BAD") {
			t.Fatalf("%s: %q", name, l)
		}
	}
	if l := cmd("b", "AUTHENTICATE OAUTHBEARER "+b64("p=tls-unique,,\x01auth=Bearer x\x01\x01")); !strings.HasPrefix(l, "b NO") {
		t.Fatalf("channel binding asked: %q", l)
	}
	good := "user=" + perBAL + "\x01auth=Bearer " + e.op.Token(t, dupont) + "\x01\x01"
	if l := cmd("c", "AUTHENTICATE XOAUTH2 "+b64(good)); !strings.HasPrefix(l, "c OK") {
		t.Fatalf("good login after the refusals: %q", l)
	}
}

// TestOAuthLongToken: a 3 KB token (a Keycloak access token listing many roles) logs in with
// curl, which sends it as a SASL initial response (RFC 4959). A client without SASL-IR sends it
// as a continuation line, which go-imap reads through a 4096-byte buffer: there a token of
// more than about 3 KB is refused.
func TestOAuthLongToken(t *testing.T) {
	e := newBearerEnv(t, nil)
	c := e.op.Claims(dupont)
	c["realm_access"] = map[string]any{"roles": strings.Split(strings.Repeat("role-of-the-practitioner,", 100), ",")}
	tok := e.op.Sign(t, c)
	if len(tok) < 3000 {
		t.Fatalf("token of %d bytes", len(tok))
	}
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		if out, err := e.curl(t, mech, perBAL, tok, e.tlsAddr); err != nil || out != bearerMsg {
			t.Fatalf("%s with a long token: %q %v %s", mech, out, err, stderr(err))
		}
	}
}
