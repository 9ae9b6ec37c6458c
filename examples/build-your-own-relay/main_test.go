package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/mailbox"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const relais = "relais.dev.mssante.fr"

// The example joins the trust space of "mssante dev" as a third operator: the hopital's
// connector delivers to it over mutual TLS, its BAL sends to the cabinet and to the test
// responder, and the responder's answer comes back to it.
func TestAgainstSandbox(t *testing.T) {
	dir := t.TempDir()
	sbDir := filepath.Join(dir, "sandbox")
	// The sandbox's PKI (the same one Start reloads) issues our server certificate.
	pki, err := testpki.New(&testpki.Options{Dir: filepath.Join(sbDir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Server("mx."+relais, &testpki.LeafOptions{Org: "RELAIS DEV", DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := leaf.WriteFiles(dir, "relais")
	if err != nil {
		t.Fatal(err)
	}
	relayAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	subAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: sbDir,
		Extra: []sandbox.Extra{{Domain: relais, CertDN: transport.SubjectDN(leaf.Cert), Relay: relayAddr}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	info := sb.Info

	secretariat, password := "secretariat@"+relais, "motdepasse-de-test"
	args := []string{"--domain", relais, "--hostname", "mx." + relais, "--cert", certFile, "--key", keyFile,
		"--ca", info.CAFile, "--crl", info.CRLFile, "--whitelist", info.WhitelistFile, "--dir", filepath.Join(dir, "state"),
		"--relay", relayAddr, "--submission", subAddr, "--bal", secretariat + ":" + password}
	for _, op := range info.Operators {
		for _, d := range op.Domains {
			args = append(args, "--route", d+"="+op.Relay)
		}
	}
	// start runs the relay until stop and waits for its "ready": stopping it while it still
	// opens its store would end the run with that cancellation.
	var stop context.CancelFunc
	done := make(chan error, 1)
	start := func() {
		var runCtx context.Context
		runCtx, stop = context.WithCancel(ctx)
		out := &syncBuffer{}
		go func() { done <- run(runCtx, args, out) }()
		for !strings.Contains(out.String(), "ready") {
			select {
			case err := <-done:
				t.Fatalf("exited: %v\n%s", err, out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	start()

	// Inbound: the hopital's APP BAL writes to our BAL.
	from := "dpi@" + sandbox.Hopital
	msg := func(from, to, id string) []byte {
		return []byte(fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: test\r\nMessage-ID: <%s>\r\nDate: %s\r\n\r\nbonjour\r\n",
			from, to, id, time.Now().Format(time.RFC1123Z)))
	}
	if err := info.Submit(ctx, from, []string{secretariat}, msg(from, secretariat, "in@test")); err != nil {
		t.Fatal(err)
	}

	// Outbound: our BAL writes to the cabinet's PER BAL and to the test responder.
	trust, err := info.Trust()
	if err != nil {
		t.Fatal(err)
	}
	tcfg, err := transport.ClientConfig(nil, "127.0.0.1", &transport.TLSOptions{Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.DialStartTLS(subAddr, tcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewPlainClient("", secretariat, password)); err != nil {
		t.Fatal(err)
	}
	marie := "marie.durand@" + sandbox.Cabinet
	if err := c.SendMail(secretariat, []string{marie, info.Responder}, bytes.NewReader(msg(secretariat, marie, "out@test"))); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if _, err := info.WaitFor(ctx, marie, func(b []byte) bool { return bytes.Contains(b, []byte("<out@test>")) }); err != nil {
		t.Fatal(err)
	}

	// Our BAL's mailbox holds the hopital's message and the responder's answer.
	deadline := time.Now().Add(time.Minute)
	var n int64
	for time.Now().Before(deadline) {
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		st, err := mailbox.OpenSQLite(ctx, filepath.Join(dir, "state", "mailbox"), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := st.GetBAL(ctx, secretariat)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n = b.Messages; n >= 2 {
			break
		}
		start()
		time.Sleep(500 * time.Millisecond)
	}
	stop()
	if n != 2 {
		t.Fatalf("our BAL holds %d messages, want the hopital's and the responder's answer", n)
	}
}
