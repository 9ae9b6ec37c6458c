package connector

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpsc"
	"github.com/mssante-go/sdk/transport/psc"
)

const (
	tokenHolder = "810000000001" // holds the node's BAL
	tokenOther  = "810000000002" // holds another BAL
)

// bearerHoldings stands for the mailbox store: who holds which BAL.
type bearerHoldings map[string][]string

func (h bearerHoldings) BALsHeldBy(_ context.Context, id string) ([]string, error) { return h[id], nil }

// newBearerNode starts a node whose submission listener takes tokens; configure, when not nil,
// edits its options.
func newBearerNode(t *testing.T, configure func(*ServerOptions)) (*node, *testpsc.Provider, string) {
	t.Helper()
	op := testpsc.New(t)
	v, err := psc.New(op.Options())
	if err != nil {
		t.Fatal(err)
	}
	domain := "a.mssante.test"
	n := newNode(t, domain, &nodeOpts{limits: func(o *ServerOptions) {
		o.OAuth = &psc.Authenticator{Verifier: v, Holdings: bearerHoldings{
			tokenHolder: {"bal@" + domain}, tokenOther: {"other@" + domain}}}
		if configure != nil {
			configure(o)
		}
	}})
	n.policy.set(trust(n))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, testPKI(t).RootPEM(), 0o600)
	return n, op, ca
}

// TestOAuthCurlSubmission submits with curl --oauth2-bearer (XOAUTH2 and OAUTHBEARER) over
// STARTTLS; bad tokens, no BAL and another person's BAL are refused alike.
func TestOAuthCurlSubmission(t *testing.T) {
	curl := testenv.Require(t, "curl")
	n, op, ca := newBearerNode(t, nil)
	_, port, _ := net.SplitHostPort(n.subAddr)
	body := filepath.Join(t.TempDir(), "msg.eml")
	run := func(mech, user, token, subject string) (string, error) {
		os.WriteFile(body, []byte(msg(n.bal, "dr@"+n.domain, subject)), 0o600)
		out, err := exec.Command(curl, "-sS", "--ssl-reqd", "--cacert", ca, "--resolve", "localhost:"+port+":127.0.0.1",
			"--login-options", "AUTH="+mech, "--user", user+":", "--oauth2-bearer", token,
			"--mail-from", n.bal, "--mail-rcpt", "dr@"+n.domain, "--upload-file", body,
			"smtp://localhost:"+port).CombinedOutput()
		return string(out), err
	}
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		if out, err := run(mech, n.bal, op.Token(t, tokenHolder), "bearer-"+mech); err != nil {
			t.Fatalf("%s: %v %s", mech, err, out)
		}
	}
	waitFor(t, "two messages", func() bool { return n.count("dr@"+n.domain) == 2 })
	expired := op.Claims(tokenHolder)
	expired["exp"] = 1
	var first string
	for name, r := range map[string]struct{ user, token string }{
		"expired":              {n.bal, op.Sign(t, expired)},
		"another person's BAL": {n.bal, op.Token(t, tokenOther)},
		"holder of no BAL":     {n.bal, op.Token(t, "810000000009")},
		"garbage":              {n.bal, "garbage"},
	} {
		for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
			out, err := run(mech, r.user, r.token, "refused")
			if err == nil {
				t.Fatalf("%s %s accepted: %s", name, mech, out)
			}
			got := fmt.Sprintf("%v %s", err, out)
			if first == "" {
				first = got
			}
			if got != first {
				t.Errorf("%s %s: %q, want %q as for every refusal", name, mech, got, first)
			}
		}
	}
	if !strings.Contains(first, "exit status 67") {
		t.Fatalf("refusal %q is not curl's login denied", first)
	}
	b, _ := os.ReadFile(filepath.Join(n.auditDir, "audit.jsonl"))
	if !strings.Contains(string(b), `"event":"queued"`) || !strings.Contains(string(b), `"person":"`+tokenHolder+`"`) {
		t.Fatalf("audit does not name the person:\n%s", b)
	}
}

const pySMTPXOAUTH2 = `
import smtplib, ssl, sys
port, ca, user, token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = smtplib.SMTP("localhost", port)
s.starttls(context=ssl.create_default_context(cafile=ca))
s.ehlo()
auth = "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)
try:
    s.auth("XOAUTH2", lambda challenge=None: auth)
    print("accepted")
except smtplib.SMTPAuthenticationError as e:
    print(e.smtp_code, e.smtp_error.decode())
`

// TestOAuthSubmissionUnavailable: with the provider down, Python's smtplib gets 454 4.7.0,
// and 535 5.7.8 for a bad token.
func TestOAuthSubmissionUnavailable(t *testing.T) {
	py := testenv.Require(t, "python3")
	n, op, ca := newBearerNode(t, nil)
	_, port, _ := net.SplitHostPort(n.subAddr)
	run := func(token string) string {
		out, err := exec.Command(py, "-c", pySMTPXOAUTH2, port, ca, n.bal, token).Output()
		if err != nil {
			t.Fatalf("python: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	if out := run("bad"); !strings.HasPrefix(out, "535 5.7.8") {
		t.Fatalf("bad token: %q", out)
	}
	op.SetDown(true)
	if out := run(op.Token(t, tokenHolder)); !strings.HasPrefix(out, "454 4.7.0") {
		t.Fatalf("provider down: %q", out)
	}
	op.SetDown(false)
	if out := run(op.Token(t, tokenHolder)); out != "accepted" {
		t.Fatalf("provider back: %q", out)
	}
}

// TestOAuthLongToken: a token of 3 KB (a Keycloak access token with many roles) fits in the
// AUTH line (RFC 4954 §4 allows 12288 octets).
func TestOAuthLongToken(t *testing.T) {
	py := testenv.Require(t, "python3")
	n, op, ca := newBearerNode(t, nil)
	_, port, _ := net.SplitHostPort(n.subAddr)
	c := op.Claims(tokenHolder)
	c["realm_access"] = map[string]any{"roles": strings.Split(strings.Repeat("role-of-the-practitioner,", 100), ",")}
	tok := op.Sign(t, c)
	if len(tok) < 3000 {
		t.Fatalf("token of %d bytes", len(tok))
	}
	out, err := exec.Command(py, "-c", pySMTPXOAUTH2, port, ca, n.bal, tok).Output()
	if err != nil || strings.TrimSpace(string(out)) != "accepted" {
		t.Fatalf("long token: %q %v", out, err)
	}
}
