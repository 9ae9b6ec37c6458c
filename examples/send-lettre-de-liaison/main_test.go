package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport"
)

// On "mssante dev": the example sends a lettre de liaison from the hospital's DPI to the
// practice's software, which integrates it (a bal.Client watching its BAL); the example
// prints the DSN then the MDN "processed" and returns nil.
func TestSendLettreDeLiaison(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	info := sb.Info
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet

	// The recipient's software.
	rb, rop := info.BAL(to), info.OperatorOf(to)
	cert, err := tls.LoadX509KeyPair(rb.CertFile, rb.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	trust, _ := info.Trust()
	wl, err := info.Whitelist()
	if err != nil {
		t.Fatal(err)
	}
	recv, err := bal.New(&bal.Options{Address: to, Submission: bal.Endpoint{Addr: rop.Submission},
		IMAP: bal.Endpoint{Addr: rop.IMAPS, Security: bal.ImplicitTLS},
		TLS:  transport.TLSOptions{Certificates: []tls.Certificate{cert}, Trust: trust}, Whitelist: wl, StateDir: t.TempDir(), NIL: "DEV000000"})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- recv.Watch(rctx, func(_ context.Context, m *bal.Incoming) error { return nil }, nil)
	}()
	defer func() { rstop(); <-done }()

	dir := t.TempDir()
	pdf := filepath.Join(dir, "lettre.pdf")
	os.WriteFile(pdf, samplepdf.Page("Lettre de liaison (test)"), 0o600)
	sbal, sop := info.BAL(from), info.OperatorOf(from)
	var out bytes.Buffer
	err = run(ctx, []string{"--from", from, "--to", to, "--pdf", pdf,
		"--cert", sbal.CertFile, "--key", sbal.KeyFile, "--ca", info.CAFile, "--crl", info.CRLFile,
		"--whitelist", info.WhitelistFile, "--whitelist-signer", info.WhitelistSigner,
		"--submission", sop.Submission, "--imap", sop.IMAPS, "--state", filepath.Join(dir, "state"), "--wait", "90s"}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// The DSN may come before or after the MDN (then it changes nothing): only "processed" is sure.
	for _, want := range []string{"sent <", to + ": processed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
