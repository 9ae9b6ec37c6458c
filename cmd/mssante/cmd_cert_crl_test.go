package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport"
)

// withCRLURL points the fixture's configuration at a CRL server signing the PKI's current CRL.
func withCRLURL(t *testing.T, f *serveFixture, broken *atomic.Bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if broken != nil && broken.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		der, _ := f.pki.CRL()
		w.Write(der)
	}))
	t.Cleanup(srv.Close)
	cfg, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/ACI-EL-ORG.crl"
	cfg = []byte(strings.Replace(string(cfg), "crl_files = [", `crl_urls = ["`+url+`"]`+"\ncrl_files = [", 1))
	if err := os.WriteFile(f.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return url
}

// TestCertCRLRefreshRunningServe: with "mssante serve" running, cert crl refresh has it fetch
// the CRLs now (a reload), and a peer revoked since is refused without a restart.
func TestCertCRLRefreshRunningServe(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	withCRLURL(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var errb testenv.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &errb})
	}()
	defer func() { cancel(); <-done }()
	waitUntil(t, "relay accepts the peer", 20*time.Second, func() bool {
		c, err := f.relayClient()
		if err == nil {
			err = sendOne(c, 1)
			c.Close()
		}
		return err == nil
	})
	if err := f.pki.Revoke(f.peer.Cert); err != nil {
		t.Fatal(err)
	}
	code, out, errs := certRun(t, "cert", "crl", "refresh", "--config", f.config)
	if code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	c, err := f.relayClient()
	if err == nil {
		err = sendOne(c, 2)
		c.Close()
	}
	if err == nil {
		t.Fatal("revoked peer's message accepted after cert crl refresh")
	}
	t.Logf("revoked peer: %v", err)
}

// TestCertCRLRefreshOffline fetches the CRL of a configuration with no serve running: it is
// printed and cached; a refused fetch exits 1, names the URL and keeps the cached CRL.
func TestCertCRLRefreshOffline(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	var broken atomic.Bool
	url := withCRLURL(t, f, &broken)
	if err := f.pki.Revoke(f.peer.Cert); err != nil {
		t.Fatal(err)
	}
	code, out, errs := certRun(t, "cert", "crl", "refresh", "--config", f.config)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, transport.SubjectDN(f.pki.Intermediate)) || !strings.Contains(out, "1 revoked") {
		t.Fatalf("output:\n%s", out)
	}
	broken.Store(true)
	code, out2, errs := certRun(t, "cert", "crl", "refresh", "--config", f.config)
	if code != 1 || !strings.Contains(errs, url) || !strings.Contains(errs, "error status") {
		t.Fatalf("broken server: exit %d, stderr %s", code, errs)
	}
	if !strings.Contains(out2, "1 revoked") {
		t.Fatalf("cached CRL not held after a refused fetch:\n%s", out2)
	}
	if code, _, _ := certRun(t, "cert", "crl", "flush"); code != 2 {
		t.Fatalf("unknown subcommand: exit %d, want 2", code)
	}
}
