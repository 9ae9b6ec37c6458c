package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
	"github.com/mssante-go/sdk/transport"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// On "mssante dev": the hospital's DPI sends two lettres de liaison to the practice, one for
// a patient the practice knows, one for a patient it does not. The example files the first
// (CDA and PDF in inbox/P001) and refuses the second with 902; the DPI gets the MDN
// "processed" for one and "processed/Error 902" for the other.
func TestReceiveAndIntegrate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	info := sb.Info
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	dir := t.TempDir()
	known := cda.Sample(cda.KindN1)
	os.WriteFile(filepath.Join(dir, "patients.csv"), []byte(known.Patient.INS.Value+",P001\n"), 0o600)

	// The example, running until the test has seen both receipts.
	rb, rop := info.BAL(to), info.OperatorOf(to)
	ectx, estop := context.WithCancel(ctx)
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ectx, []string{"--bal", to, "--cert", rb.CertFile, "--key", rb.KeyFile,
			"--ca", info.CAFile, "--crl", info.CRLFile, "--whitelist", info.WhitelistFile,
			"--whitelist-signer", info.WhitelistSigner, "--submission", rop.Submission, "--imap", rop.IMAPS,
			"--patients", filepath.Join(dir, "patients.csv"), "--inbox", filepath.Join(dir, "inbox"),
			"--state", filepath.Join(dir, "state")}, &out)
	}()

	// The hospital's DPI.
	sbal, sop := info.BAL(from), info.OperatorOf(from)
	cert, err := tls.LoadX509KeyPair(sbal.CertFile, sbal.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	trust, _ := info.Trust()
	wl, _ := info.Whitelist()
	dpi, err := bal.New(&bal.Options{Address: from, Submission: bal.Endpoint{Addr: sop.Submission},
		IMAP: bal.Endpoint{Addr: sop.IMAPS, Security: bal.ImplicitTLS},
		TLS:  transport.TLSOptions{Certificates: []tls.Certificate{cert}, Trust: trust}, Whitelist: wl, StateDir: t.TempDir(),
		PollInterval: time.Second, NIL: "DEV000000"})
	if err != nil {
		t.Fatal(err)
	}
	defer dpi.Close()
	unknown := cda.Sample(cda.KindN1)
	key, err := mssante.NIRKey("1790351215189")
	if err != nil {
		t.Fatal(err)
	}
	unknown.Patient.INS.Value = "1790351215189" + key
	var ids []string
	for _, in := range []*cda.Input{known, unknown} {
		m, err := bal.NewDocumentMessage(mssante.MustAddress("DPI", from), []mssante.Address{mssante.MustAddress("", to)},
			in, &bal.DocumentOptions{WantMDN: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dpi.Send(ctx, m, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MessageID)
	}
	finals := map[string]bal.Receipt{}
	wctx, wstop := context.WithCancel(ctx)
	var mu sync.Mutex
	err = dpi.Watch(wctx, func(context.Context, *bal.Incoming) error { return nil }, &bal.WatchOptions{
		OnReceipt: func(_ context.Context, r bal.Receipt) {
			mu.Lock()
			defer mu.Unlock()
			if r.Final {
				finals[r.MessageID] = r
			}
			if len(finals) == 2 {
				wstop()
			}
		}})
	estop()
	if eerr := <-done; eerr != nil && eerr != context.Canceled {
		t.Errorf("example: %v", eerr)
	}
	if len(finals) != 2 {
		t.Fatalf("receipts %+v (watch: %v)\n%s", finals, err, out.String())
	}
	if r := finals[ids[0]]; r.Status != bal.StatusProcessed {
		t.Errorf("known patient: %+v", r)
	}
	if r := finals[ids[1]]; r.Status != bal.StatusError || r.MDNCode != mssante.CodeUnknownPatient {
		t.Errorf("unknown patient: %+v", r)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "inbox", "P001", "*"))
	if len(files) != 2 {
		t.Errorf("filed %v, want the CDA and the PDF\n%s", files, out.String())
	}
}
