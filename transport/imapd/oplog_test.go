package imapd

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mssante-go/sdk/internal/testenv"
)

// A refused login reaches the operational log as a warning naming the listener, the peer,
// the mechanism and the reason, and the login only when it is an address; never the password.
func TestFailedLoginLogged(t *testing.T) {
	var logs testenv.Buffer
	e := newEnvWith(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	for _, login := range []string{orgBAL, "pw-typed-as-login"} {
		c, err := imapclient.DialTLS(e.tlsAddr, &imapclient.Options{TLSConfig: e.clientTLS(false)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(login, "wrong-password").Wait(); err == nil {
			t.Fatal("wrong password accepted")
		}
		c.Close()
	}
	c, err := imapclient.DialStartTLS(e.plainAddr, &imapclient.Options{TLSConfig: e.clientTLS(false)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(orgBAL, "wrong-password").Wait(); err == nil {
		t.Fatal("wrong password accepted")
	}
	c.Close()

	got := testenv.JSONRecords(t, logs.String(), "imapd: authentication failed")
	if len(got) != 3 {
		t.Fatalf("%d records, want 3:\n%s", len(got), logs.String())
	}
	for i, want := range []struct{ listener, login any }{{"imaps", orgBAL}, {"imaps", nil}, {"imap", orgBAL}} {
		r := got[i]
		if r["level"] != "WARN" || r["listener"] != want.listener || r["login"] != want.login || r["mech"] != "PLAIN" ||
			r["reason"] != "auth_plain_failed" || !strings.HasPrefix(r["peer"].(string), "127.0.0.1:") {
			t.Errorf("record %d: %v", i, r)
		}
	}
	for _, secret := range []string{"wrong-password", "pw-typed-as-login"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}
