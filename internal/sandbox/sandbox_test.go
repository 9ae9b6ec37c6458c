package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/whitelist"
)

func start(t *testing.T, dir string) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func message(from, to, id string) []byte {
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: test\r\nMessage-ID: <%s>\r\nDate: %s\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbonjour\r\n",
		from, to, id, time.Now().Format(time.RFC1123Z)))
}

func hasID(id string) func([]byte) bool {
	return func(raw []byte) bool { return bytes.Contains(raw, []byte("<"+id+">")) }
}

// Mail crosses the trust space both ways: an APP BAL (SASL EXTERNAL) and a PER BAL (PLAIN)
// submit to their connector, which relays over mutual TLS to the other operator, whose BAL
// reads it over IMAPS.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	info, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cases := []struct{ from, to string }{
		{"dpi@" + sandbox.Hopital, "marie.durand@" + sandbox.Cabinet},
		{"marie.durand@" + sandbox.Cabinet, "dpi@" + sandbox.Hopital},
		{"accueil@" + sandbox.Cabinet, "logiciel@" + sandbox.Cabinet}, // local delivery
	}
	for i, c := range cases {
		id := fmt.Sprintf("rt%d.%d@test", i, time.Now().UnixNano())
		if err := info.Submit(ctx, c.from, []string{c.to}, message(c.from, c.to, id)); err != nil {
			t.Fatalf("%s → %s: %v", c.from, c.to, err)
		}
		got, err := info.WaitFor(ctx, c.to, hasID(id))
		if err != nil {
			t.Fatalf("%s → %s: %v", c.from, c.to, err)
		}
		t.Logf("%s → %s at %s", c.from, c.to, time.Now().Format("15:04:05.000"))
		if !bytes.Contains(got, []byte("bonjour")) {
			t.Fatalf("body lost: %q", got)
		}
	}
	_ = s

	// The test responder answers across the trust space (RFC 3834 auto-reply, null sender).
	if info.Responder != sandbox.ResponderAddress {
		t.Fatalf("responder: %q", info.Responder)
	}
	from := "dpi@" + sandbox.Hopital
	id := fmt.Sprintf("resp.%d@test", time.Now().UnixNano())
	if err := info.Submit(ctx, from, []string{info.Responder}, message(from, info.Responder, id)); err != nil {
		t.Fatal(err)
	}
	reply, err := info.WaitFor(ctx, from, func(raw []byte) bool { return bytes.Contains(raw, []byte("In-Reply-To: <"+id+">")) })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(reply, []byte("Auto-Submitted: auto-replied")) {
		t.Fatalf("reply without Auto-Submitted: %q", reply)
	}
}

// The trust space refuses what MSSanté refuses: a recipient outside the liste blanche, a
// sender that is not the authenticated BAL, a client without a certificate of the PKI.
func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	start(t, dir)
	info, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	from := "dpi@" + sandbox.Hopital
	err = info.Submit(ctx, from, []string{"someone@gmail.com"}, message(from, "someone@gmail.com", "x@test"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("non-MSSanté recipient: %v", err)
	}
	err = info.Submit(ctx, from, []string{"marie.durand@" + sandbox.Cabinet}, message("jean.dupont@"+sandbox.Hopital, "marie.durand@"+sandbox.Cabinet, "y@test"))
	if err == nil {
		t.Fatal("a From that is not the BAL was accepted")
	}
	// IMAP with STARTTLS (port 143): a PER BAL logs in with its password after the upgrade.
	per := "jean.dupont@" + sandbox.Hopital
	op := info.OperatorOf(per)
	host, _, _ := net.SplitHostPort(op.IMAP)
	tcfg, err := info.ClientTLS(nil, host)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := imapclient.DialStartTLS(op.IMAP, &imapclient.Options{TLSConfig: tcfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.Login(per, info.BAL(per).Password).Wait(); err != nil {
		t.Fatalf("IMAP STARTTLS login: %v", err)
	}
	ic.Logout().Wait()
	ic.Close()

	// A PER BAL with a wrong password.
	bad := *info
	bad.Operators = nil
	for _, op := range info.Operators {
		o := *op
		o.BALs = nil
		for _, b := range op.BALs {
			bb := *b
			if bb.Password != "" {
				bb.Password = "wrong" + bb.Password
			}
			o.BALs = append(o.BALs, &bb)
		}
		bad.Operators = append(bad.Operators, &o)
	}
	if err := bad.Submit(ctx, per, []string{"marie.durand@" + sandbox.Cabinet}, message(per, "marie.durand@"+sandbox.Cabinet, "z@test")); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := bad.Messages(ctx, per); err == nil {
		t.Fatal("wrong IMAP password accepted")
	}
}

// A restart on the same state folder keeps the PKI, the certificates, the passwords and the
// mailboxes; the whitelist, annuaire and configuration files describe the running sandbox.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	info1, _ := sandbox.Load(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	from, to := "dpi@"+sandbox.Hopital, "jean.dupont@"+sandbox.Hopital
	if err := info1.Submit(ctx, from, []string{to}, message(from, to, "keep@test")); err != nil {
		t.Fatal(err)
	}
	if _, err := info1.WaitFor(ctx, to, hasID("keep@test")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir, ReusePorts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	info2, _ := sandbox.Load(dir)
	if info2.BAL(to).Password != info1.BAL(to).Password || info2.Operators[0].CertDN != info1.Operators[0].CertDN {
		t.Fatal("credentials changed across a restart")
	}
	a, _ := os.ReadFile(info1.BAL(from).CertFile)
	b, _ := os.ReadFile(info2.BAL(from).CertFile)
	if !bytes.Equal(a, b) {
		t.Fatal("BAL certificate re-issued across a restart")
	}
	if info2.Operators[0].Submission != info1.Operators[0].Submission {
		t.Logf("submission port moved: %s → %s", info1.Operators[0].Submission, info2.Operators[0].Submission)
	}
	if info2.API == nil || info2.API.Request == "" {
		t.Fatalf("no HTTP API in sandbox.json: %+v", info2.API)
	} else if info2.API.Listen != info1.API.Listen {
		t.Logf("HTTP API port moved: %s → %s", info1.API.Listen, info2.API.Listen)
	}
	if _, err := info2.WaitFor(ctx, to, hasID("keep@test")); err != nil {
		t.Fatalf("message lost across a restart: %v", err)
	}

	// The whitelist file verifies against the test PKI and lists every domain with its
	// operator's DN; it is also what the HTTPS URL serves.
	list, err := info2.Whitelist()
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range info2.Operators {
		for _, d := range op.Domains {
			if err := list.CheckOperator(d, op.CertDN); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
		}
	}
	if err := list.CheckDomain("gmail.com"); !errors.Is(err, whitelist.ErrDomainNotListed) {
		t.Fatalf("gmail.com: %v", err)
	}
	// The annuaire finds the sandbox's PER BAL by name.
	x, err := annuaire.LoadFile(info2.Annuaire, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := x.Search(ctx, annuaire.Query{Name: "dupont jean"})
	if err != nil || len(res.Entries) == 0 || res.Entries[0].Address != to {
		t.Fatalf("annuaire: %+v %v", res, err)
	}
	// The configuration written for each operator is one "mssante serve" accepts.
	for _, op := range info2.Operators {
		cfg, err := os.ReadFile(op.Config)
		if err != nil || !strings.Contains(string(cfg), op.Relay) {
			t.Fatalf("%s: %v", op.Config, err)
		}
	}
}
