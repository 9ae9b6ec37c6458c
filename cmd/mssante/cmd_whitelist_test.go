package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

func wlRun(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func realWhitelist(t *testing.T) string {
	t.Helper()
	return testenv.SharedData(t, "listeblanchemssante-2025-02-28.xml")
}

func TestWhitelistVerifyReal(t *testing.T) {
	f := realWhitelist(t)
	for _, at := range []string{"--at=2025-03-01", "--at=2025-03-01T00:00:00Z", "--list-date"} {
		code, out, errs := wlRun(t, "", "whitelist", "verify", at, f)
		if code != 0 || out != "ok: 6494 entries, 4944 domains, generated 2025-02-28T15:42:07Z\n" {
			t.Fatalf("%s: exit %d, %q, %q", at, code, out, errs)
		}
	}
	code, _, errs := wlRun(t, "", "whitelist", "verify", "--at", "2026-11-28", f)
	if code != 1 || !strings.Contains(errs, "not valid at verification time") {
		t.Fatalf("at 2026-11-28: exit %d, %q", code, errs)
	}
	code, _, errs = wlRun(t, "", "whitelist", "verify", "--at", "2025-03-01", "--signer", "CN=alb.mssante.fr", f)
	if code != 1 || !strings.Contains(errs, "signer is not the expected one") {
		t.Fatalf("other signer: exit %d, %q", code, errs)
	}
	code, _, errs = wlRun(t, "", "whitelist", "verify", "--at", "yesterday", f)
	if code != 1 || !strings.Contains(errs, "bad time") {
		t.Fatalf("bad --at: exit %d, %q", code, errs)
	}
	code, out, errs := wlRun(t, "", "whitelist", "lookup", "MSSANTE.apicrypt.org", "--file", f, "--at", "2025-03-01")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.HasPrefix(out, "CN=mailin2.interop-mssante.apicrypt.org,OU=343975235300037,O=APICEM SARL,ST=Nord (59),C=FR\n") {
		t.Fatalf("lookup: exit %d, %q, %q", code, out, errs)
	}
	code, out, errs = wlRun(t, "", "whitelist", "lookup", "apicrypt.org", "--file", f, "--at", "2025-03-01")
	if code != 1 || out != "" || !strings.Contains(errs, "domain not listed") {
		t.Fatalf("lookup of an unlisted domain: exit %d, %q, %q", code, out, errs)
	}
}

// TestWhitelistSignFetchLookup signs a list with a test PKI signer, serves it over HTTPS with a
// test-PKI server certificate, fetches it and looks a domain up, all through the CLI.
func TestWhitelistSignFetchLookup(t *testing.T) {
	pki, err := testpki.New(&testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := pki.Leaf(testpki.ProfileOrgSign, pki.Subject("alb.mssante.fr", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath, err := signer.WriteFiles(dir, "signer")
	if err != nil {
		t.Fatal(err)
	}
	rootPath := filepath.Join(dir, "root.pem")
	os.WriteFile(rootPath, pki.RootPEM(), 0o644)
	listPath := filepath.Join(dir, "liste.xml")

	tsv := "# test list\nch-test.mssante.fr\tCN=smtp-1.ch-test.fr,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR\tCH de test\n" +
		"ch-test.mssante.fr\tCN=smtp-2.ch-test.fr,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR\n"
	if code, _, errs := wlRun(t, tsv, "whitelist", "sign", "--key", keyPath, "--cert", certPath, "--out", listPath); code != 0 {
		t.Fatalf("sign: exit %d: %s", code, errs)
	}
	if code, _, errs := wlRun(t, "bad line\n", "whitelist", "sign", "--key", keyPath, "--cert", certPath); code != 1 || !strings.Contains(errs, "line 1") {
		t.Fatalf("sign of a bad line: exit %d: %s", code, errs)
	}
	signerDN := signer.Cert.Subject.String()
	code, out, errs := wlRun(t, "", "whitelist", "verify", "--roots", rootPath, "--signer", signerDN, listPath)
	if code != 0 || !strings.HasPrefix(out, "ok: 2 entries, 1 domains, generated ") {
		t.Fatalf("verify: exit %d, %q, %q", code, out, errs)
	}
	// The default trust (the pinned ANS signer) refuses a test-PKI list.
	if code, _, errs := wlRun(t, "", "whitelist", "verify", "--signer", signerDN, listPath); code != 1 || !strings.Contains(errs, "not the pinned certificate") {
		t.Fatalf("verify with default trust: exit %d, %q", code, errs)
	}

	body, _ := os.ReadFile(listPath)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	leaf, err := pki.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	srv.StartTLS()
	defer srv.Close()
	url := "https://localhost:" + srv.URL[strings.LastIndex(srv.URL, ":")+1:] + "/listeblanchemssante.xml"

	out2 := filepath.Join(dir, "fetched.xml")
	code, out, errs = wlRun(t, "", "whitelist", "fetch", "--url", url, "--ca", rootPath, "--roots", rootPath, "--signer", signerDN, "--out", out2)
	if code != 0 || !strings.Contains(out, "ok: 2 entries") {
		t.Fatalf("fetch: exit %d, %q, %q", code, out, errs)
	}
	if got, _ := os.ReadFile(out2); !bytes.Equal(got, body) {
		t.Fatal("fetched file differs from the served list")
	}
	code, out, errs = wlRun(t, "", "whitelist", "lookup", "CH-TEST.mssante.fr.", "--url", url, "--ca", rootPath, "--roots", rootPath, "--signer", signerDN)
	if code != 0 || !strings.Contains(out, "CN=smtp-1.ch-test.fr") || !strings.Contains(out, "CN=smtp-2.ch-test.fr") {
		t.Fatalf("lookup --url: exit %d, %q, %q", code, out, errs)
	}
	// Without --ca the server is checked against the real IGC-Santé root and refused.
	code, _, errs = wlRun(t, "", "whitelist", "fetch", "--url", url, "--roots", rootPath, "--signer", signerDN, "--out", filepath.Join(dir, "x.xml"))
	if code != 1 || !strings.Contains(errs, "certificate") {
		t.Fatalf("fetch from a server outside IGC-Santé: exit %d, %q", code, errs)
	}
	if code, _, _ := wlRun(t, "", "whitelist", "lookup", "x.fr"); code != 2 {
		t.Fatalf("lookup without a source: exit %d", code)
	}
}
