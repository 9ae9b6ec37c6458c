package imapd

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A refused login reaches the operational log as a warning naming the listener, the peer,
// the mechanism and the reason, and the login only when it is an address; never the password.
func TestFailedLoginLogged(t *testing.T) {
	var logs syncBuffer
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

	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if r["msg"] == "imapd: authentication failed" {
			got = append(got, r)
		}
	}
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
