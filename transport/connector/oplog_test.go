package connector

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport"
)

// The operational log names each refusal by its command, with the reply code, the reason
// key, the peer and the client's BAL or DN, and of a recipient only its domain: a patient's
// address (<INS>@patient.mssante.fr) never reaches it, nor does the content of a refused
// message.
func TestRefusalsLogged(t *testing.T) {
	var logs testenv.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true, limits: func(o *ServerOptions) { o.Logger = logger }})
	trust(a)
	const ins, subject = "279035121518989", "Compte rendu Durand confidentiel"

	// Relay: a recipient not hosted here.
	rc, err := dialSMTP(t, a.relayAddr, clientTLS(a.server, testPKI(t)))
	if err != nil {
		t.Fatal(err)
	}
	if got := send(rc, "x@a.mssante.test", []string{ins + "@patient.mssante.fr"}, "", nil, nil); got != "550 5.7.1" {
		t.Fatalf("relay RCPT: %s", got)
	}

	// Submission: an unlisted recipient domain, then a From header that is not the BAL.
	sc, err := dialSMTP(t, a.subAddr, clientTLS(a.balCert, testPKI(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Auth(sasl.NewExternalClient("")); err != nil {
		t.Fatal(err)
	}
	if got := send(sc, a.bal, []string{ins + "@unlisted.test"}, "", nil, nil); got != "550 5.7.1" {
		t.Fatalf("submission RCPT: %s", got)
	}
	sc.Reset()
	if got := send(sc, a.bal, []string{"dr@a.mssante.test"}, msg("other@a.mssante.test", "dr@a.mssante.test", subject),
		nil, nil); got != "554 5.7.1" {
		t.Fatalf("submission DATA: %s", got)
	}

	// Submission: a wrong password for a login that is an address, and one that is not.
	for _, login := range []string{"bal@a.mssante.test", "hunter2-typed-as-login"} {
		c, err := dialSMTP(t, a.subAddr, clientTLS(nil, testPKI(t)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(sasl.NewPlainClient("", login, "wrong")); code(err) != "535 5.7.8" {
			t.Fatalf("AUTH PLAIN %s: %v", login, err)
		}
	}

	check := func(msg string, n int, want map[string]any) []map[string]any {
		t.Helper()
		rs := testenv.JSONRecords(t, logs.String(), msg)
		if len(rs) != n {
			t.Fatalf("%d records %q, want %d:\n%s", len(rs), msg, n, logs.String())
		}
		for _, r := range rs {
			for k, v := range want {
				if r[k] != v {
					t.Errorf("%q: %s = %v, want %v", msg, k, r[k], v)
				}
			}
		}
		return rs
	}
	rs := check("connector: recipient refused", 2, map[string]any{"level": "INFO", "code": "550 5.7.1"})
	for k, v := range map[string]any{"listener": "relay", "reason": "relay_denied", "rcpt_domain": "patient.mssante.fr",
		"peer_dn": transport.SubjectDN(a.server.Cert), "from_domain": "a.mssante.test"} {
		if rs[0][k] != v {
			t.Errorf("relay refusal: %s = %v, want %v", k, rs[0][k], v)
		}
	}
	for k, v := range map[string]any{"listener": "submission", "reason": "recipient_domain", "rcpt_domain": "unlisted.test",
		"bal": a.bal} {
		if rs[1][k] != v {
			t.Errorf("submission refusal: %s = %v, want %v", k, rs[1][k], v)
		}
	}
	if !strings.HasPrefix(rs[0]["peer"].(string), "127.0.0.1:") {
		t.Errorf("peer = %v", rs[0]["peer"])
	}
	check("connector: message refused", 1, map[string]any{"code": "554 5.7.1", "reason": "from_header_not_bal",
		"bal": a.bal, "rcpts": float64(1)})
	rs = check("connector: authentication failed", 2, map[string]any{"level": "WARN", "listener": "submission",
		"code": "535 5.7.8", "reason": "auth_plain_failed", "mech": "PLAIN"})
	if rs[0]["login"] != "bal@a.mssante.test" || rs[1]["login"] != nil {
		t.Errorf("logins %v, %v: want the address only", rs[0]["login"], rs[1]["login"])
	}
	for _, secret := range []string{ins, "Durand", "body line", "hunter2", "wrong"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs.String())
		}
	}
}
