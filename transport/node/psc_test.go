package node_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/internal/testpsc"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
)

// TestPSCPasswordsOffByDefault: with the default [auth], IMAP offers no PLAIN and refuses
// LOGIN for a PER BAL that has a password; a [psc] token opens it; allow_plain without
// allow_passwords is a configuration error; allow_passwords logs a warning.
func TestPSCPasswordsOffByDefault(t *testing.T) {
	op := testpsc.New(t)
	ca := filepath.Join(t.TempDir(), "psc-ca.pem")
	os.WriteFile(ca, op.PKI.RootPEM(), 0o600)
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	per := "dr.martin@" + a.domain
	a.extra = fmt.Sprintf("[psc]\nissuer = %q\nclient_ids = [%q]\nca_file = %q\n", op.Issuer, testpsc.ClientID, ca)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, done := s.start(t, ctx, a, nil)
	if err := n.Store.AddBAL(ctx, &mailbox.BAL{Address: per, Type: mailbox.PER, Owner: "810000000001"}); err != nil {
		t.Fatal(err)
	}
	n.Store.SetPassword(ctx, per, "correct horse battery")
	c, err := imapclient.DialTLS(a.addr("imaps"), &imapclient.Options{TLSConfig: s.clientTLS(a, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, _ := c.Capability().Wait()
	if caps.Has("AUTH=PLAIN") || !caps.Has("AUTH=XOAUTH2") || !caps.Has("AUTH=OAUTHBEARER") {
		t.Fatalf("capabilities %v: want XOAUTH2 and OAUTHBEARER, no PLAIN", caps)
	}
	if err := c.Login(per, "correct horse battery").Wait(); err == nil {
		t.Fatal("LOGIN with the right password accepted with passwords off")
	}
	if err := c.Authenticate(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: per, Token: op.Token(t, "810000000001")})); err != nil {
		t.Fatalf("token login through the node: %v", err)
	}
	cancel()
	<-done

	cfg := strings.Replace(node.DefaultConfigTOML(), "allow_plain = false", "allow_plain = true", 1)
	cfg = strings.Replace(cfg, `hostname = ""`, `hostname = "mx.a.mssante.test"`, 1)
	if _, err := node.LoadConfig(strings.NewReader(cfg)); err == nil || !strings.Contains(err.Error(), "auth.allow_passwords") {
		t.Fatalf("allow_plain without allow_passwords: %v", err)
	}

	var logs bytes.Buffer
	b := newSpace(t, "b.mssante.test")
	o := b.ops[0]
	o.extra = "[auth]\nallow_passwords = true\n"
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	_, done2 := b.start(t, ctx2, o, &node.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	cancel2()
	<-done2
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "allow_passwords is on") {
		t.Fatalf("no start-up warning with allow_passwords:\n%s", logs.String())
	}
}
