package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport"
)

func devRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"dev"}, args...), &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestDevCreatesAndReloads(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	code, out, errs := devRun(t, "--state", state)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	for _, want := range []string{
		"(test PKI created)",
		"CN=TEST AC RACINE IGC-SANTE ELEMENTAIRE,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR",
		"CN=hopital.dev.mssante.fr,OU=",
		"CN=dpi@hopital.dev.mssante.fr,OU=",
		"Self-check: mutual TLS 1.2",
		"the server verified the BAL as CN=dpi@hopital.dev.mssante.fr",
		"Not there yet",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"server.key.pem", "bal.key.pem", "pki/root.key.pem", "pki/intermediate.key.pem"} {
		st, err := os.Stat(filepath.Join(state, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, st.Mode().Perm())
		}
	}

	// The files verify on their own: trust ca-chain.pem and crl.der, check both leaves.
	trust := transport.NewTrustStore(&transport.TrustOptions{NoIGCSanteRoot: true})
	if err := trust.AddFile(filepath.Join(state, "ca-chain.pem")); err != nil {
		t.Fatal(err)
	}
	if err := trust.AddCRLFile(filepath.Join(state, "crl.der")); err != nil {
		t.Fatal(err)
	}
	leaf := func(base string) *x509.Certificate {
		tc, err := tls.LoadX509KeyPair(filepath.Join(state, base+".crt.pem"), filepath.Join(state, base+".key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return tc.Leaf
	}
	server, bal := leaf("server"), leaf("bal")
	if _, err := trust.Verify([]*x509.Certificate{server}, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	if err := server.VerifyHostname("hopital.dev.mssante.fr"); err != nil {
		t.Error(err)
	}
	if _, err := trust.Verify([]*x509.Certificate{bal}, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Errorf("BAL certificate: %v", err)
	}
	rootBefore, err := os.ReadFile(filepath.Join(state, "pki", "root.crt.pem"))
	if err != nil {
		t.Fatal(err)
	}

	// Second run: same PKI and leaves; a damaged leaf is re-issued.
	if err := os.WriteFile(filepath.Join(state, "bal.crt.pem"), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = devRun(t, "--state", state)
	if code != 0 {
		t.Fatalf("second run: exit %d: %s\n%s", code, errs, out)
	}
	if !strings.Contains(out, "(test PKI loaded)") || !strings.Contains(out, "server.key.pem (kept") || !strings.Contains(out, "bal.key.pem (issued") {
		t.Fatalf("second run output:\n%s", out)
	}
	rootAfter, _ := os.ReadFile(filepath.Join(state, "pki", "root.crt.pem"))
	if !bytes.Equal(rootBefore, rootAfter) {
		t.Fatal("second run made a new root")
	}
	if !leaf("server").Equal(server) {
		t.Fatal("second run re-issued a valid server certificate")
	}
}

func TestDevStateDefault(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_STATE_HOME", xdg)
	if code, out, errs := devRun(t); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	if _, err := os.Stat(filepath.Join(xdg, "mssante", "dev", "server.crt.pem")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := devRun(t, "extra-arg"); code != 2 {
		t.Fatalf("extra argument: exit %d, want 2", code)
	}
}
