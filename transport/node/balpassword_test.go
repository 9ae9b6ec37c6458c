package node_test

import (
	"context"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// A [[bal]] PER entry with a password is added to the store with it: the BAL logs in over
// IMAPS with SASL PLAIN (address and password), a wrong password is refused.
func TestBALPasswordFromConfig(t *testing.T) {
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	per := "dr.martin@" + a.domain
	a.extra = "[auth]\nallow_passwords = true\n[[bal]]\naddress = \"" + per + "\"\ntype = \"PER\"\nlogin = \"dr.martin\"\npassword = \"correct horse battery\"\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, done := s.start(t, ctx, a, nil)
	if bal, err := n.Store.GetBAL(ctx, per); err != nil || bal.Type != "PER" {
		t.Fatalf("BAL from [[bal]]: %+v %v", bal, err)
	}
	login := func(pass string) error {
		t.Helper()
		c, err := imapclient.DialTLS(a.addr("imaps"), &imapclient.Options{TLSConfig: s.clientTLS(a, nil)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Authenticate(sasl.NewPlainClient("", per, pass)); err != nil {
			return err
		}
		if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatalf("SELECT INBOX after PLAIN login: %v", err)
		}
		return c.Logout().Wait()
	}
	if err := login("correct horse battery"); err != nil {
		t.Fatalf("PLAIN login with the [[bal]] password: %v", err)
	}
	if err := login("wrong horse battery"); err == nil {
		t.Fatal("PLAIN login with a wrong password accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
