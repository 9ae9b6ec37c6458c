package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

// mssante serve with the mailbox side on: an APP BAL of the configuration submits to a BAL
// that "mssante bal add" creates in the same store while serve runs (refused before, accepted
// after), which reads the message over IMAPS with its client certificate; "bal suspend"
// makes serve refuse it (550 5.2.1) and "bal resume" take it again. On SQLite the bal
// commands name the store's folder (--store); on PostgreSQL, serve's configuration
// (--config), as on a cluster whose nodes share the database.
func TestServeMailboxSide(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { serveMailboxSide(t, false) })
	t.Run("postgres", func(t *testing.T) { serveMailboxSide(t, true) })
}

func serveMailboxSide(t *testing.T, postgres bool) {
	f := newServeFixture(t, t.TempDir())
	store := filepath.Join(f.dir, "mailbox")
	storeSection := fmt.Sprintf("[mailbox]\ndir = %q\n", store)
	storeArgs := []string{"--store", store}
	if postgres {
		pg := peers.StartPostgres(t, nil)
		storeSection = fmt.Sprintf("[store]\nbackend = \"postgres\"\ndsn = %q\n", pg.DSN())
		storeArgs = []string{"--config", f.config}
	}
	imaps := testenv.FreePort(t)
	sender, err := f.pki.Org("dpi@"+ourDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := f.pki.Org("labo@"+ourDomain, nil)
	if err != nil {
		t.Fatal(err)
	}
	readerCrt, _, err := reader.WriteFiles(f.dir, "labo")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's Maildir section gives way to the mailbox store, IMAPS and a [[bal]] entry
	// for the sender (added to the store at start).
	conf := strings.Replace(string(cfg), "[local]\nmaildir = \""+f.maildir+"\"\n", fmt.Sprintf(`[[bal]]
address = "dpi@%s"
cert_dn = %q
%s[imap]
listen_tls = "127.0.0.1:%d"
`, ourDomain, transport.SubjectDN(sender.Cert), storeSection, imaps), 1)
	if conf == string(cfg) {
		t.Fatal("fixture configuration changed: no [local] section to replace")
	}
	if err := os.WriteFile(f.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &errb})
	}()
	tcfg := func(l *testpki.Leaf) *tls.Config {
		return &tls.Config{RootCAs: f.pki.Roots(), ServerName: "localhost", Certificates: []tls.Certificate{l.TLSCertificate()}}
	}
	submit := func(to string) error {
		c, err := smtp.DialStartTLS(fmt.Sprintf("127.0.0.1:%d", f.submission), tcfg(sender))
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Auth(sasl.NewExternalClient("")); err != nil {
			return err
		}
		msg := fmt.Sprintf("From: <dpi@%s>\r\nTo: <%s>\r\nSubject: resultat\r\nMessage-ID: <r1@%s>\r\n\r\nbonjour\r\n", ourDomain, to, ourDomain)
		return c.SendMail("dpi@"+ourDomain, []string{to}, strings.NewReader(msg))
	}
	to := "labo@" + ourDomain
	var se *smtp.SMTPError
	waitUntil(t, "serve refusing an unknown BAL", time.Minute, func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before answering:\n%s", code, errb.String())
		default:
		}
		err := submit(to)
		return errors.As(err, &se) && se.Code == 550 && se.EnhancedCode == smtp.EnhancedCode{5, 1, 1}
	})

	var out, eb bytes.Buffer
	if code := run(ctx, append([]string{"bal", "add", to, "--type", "APP", "--cert", readerCrt}, storeArgs...),
		&env{stdout: &out, stderr: &eb}); code != 0 {
		t.Fatalf("bal add: exit %d: %s", code, eb.String())
	}
	if err := submit(to); err != nil {
		t.Fatalf("submit after bal add: %v", err)
	}

	var got []byte
	waitUntil(t, "the message over IMAPS", 20*time.Second, func() bool {
		c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", imaps), &imapclient.Options{TLSConfig: tcfg(reader)})
		if err != nil {
			t.Fatalf("imaps: %v", err)
		}
		defer c.Close()
		if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
			t.Fatalf("EXTERNAL: %v", err)
		}
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil || sel.NumMessages == 0 {
			return false
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
		if err != nil || len(msgs) != 1 || len(msgs[0].BodySection) != 1 {
			t.Fatalf("fetch: %v", err)
		}
		got = msgs[0].BodySection[0].Bytes
		c.Logout().Wait()
		return true
	})
	for _, want := range []string{"Return-Path: <dpi@" + ourDomain + ">\r\n", "Message-ID: <r1@" + ourDomain + ">", "bonjour"} {
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("message read over IMAPS lacks %q:\n%s", want, got)
		}
	}

	// The sender's own certificate does not open the reader's BAL.
	c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", imaps), &imapclient.Options{TLSConfig: tcfg(sender)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Authenticate(sasl.NewExternalClient(to)); err == nil {
		t.Error("EXTERNAL as another BAL than the certificate's accepted")
	}
	c.Close()

	// Suspended, the BAL takes no new mail (550 5.2.1) while serve runs; resumed, it does.
	for _, step := range []struct {
		cmd  string
		want func(error) bool
	}{
		{"suspend", func(err error) bool {
			return errors.As(err, &se) && se.Code == 550 && se.EnhancedCode == smtp.EnhancedCode{5, 2, 1}
		}},
		{"resume", func(err error) bool { return err == nil }},
	} {
		eb.Reset()
		if code := run(ctx, append([]string{"bal", step.cmd, to}, storeArgs...), &env{stdout: &out, stderr: &eb}); code != 0 {
			t.Fatalf("bal %s: exit %d: %s", step.cmd, code, eb.String())
		}
		if err := submit(to); !step.want(err) {
			t.Errorf("submit after bal %s: %v", step.cmd, err)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exit %d: %s", code, errb.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop")
	}
}
