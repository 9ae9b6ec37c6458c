package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

func certRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestCertInspectRealRoot(t *testing.T) {
	path := "../../transport/igc-sante-racine-elementaire.pem" // the copy of the ANS root in the repository
	code, out, errs := certRun(t, "cert", "inspect", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"subject:  CN=AC RACINE IGC-SANTE ELEMENTAIRE,OU=IGC-SANTE,OU=0002 187512751,O=ASIP-SANTE,C=FR\n",
		"to 2033-06-25",
		"profile:  root CA",
		"2D9E22CA19F777C6B745257C723ECB8DF3C35FA6F1F6EC36B83600C97346967F",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCertFormats(t *testing.T) {
	openssl := testenv.Require(t, "openssl")
	pki, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pki.Server("mx.hopital.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath, err := srv.WriteFiles(dir, "mx")
	if err != nil {
		t.Fatal(err)
	}
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	der := filepath.Join(dir, "mx.der")
	sh("x509", "-in", certPath, "-outform", "DER", "-out", der)
	p7b := filepath.Join(dir, "chain.p7b")
	sh("crl2pkcs7", "-nocrl", "-certfile", certPath, "-outform", "DER", "-out", p7b)
	p12 := filepath.Join(dir, "mx.p12")
	sh("pkcs12", "-export", "-in", certPath, "-inkey", keyPath, "-out", p12, "-passout", "pass:s3cret")

	wantSubject := "subject:  CN=mx.hopital.test,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"
	for _, tc := range []struct {
		name  string
		args  []string
		certs int
	}{
		{"PEM chain", []string{certPath}, 2},
		{"DER", []string{der}, 1},
		{"p7b", []string{p7b}, 2},
		{"PKCS#12", []string{"--password", "s3cret", p12}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := certRun(t, append([]string{"cert", "inspect"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if !strings.Contains(out, wantSubject) || !strings.Contains(out, "SERV/SSL_SERV") {
				t.Fatalf("output:\n%s", out)
			}
			if n := strings.Count(out, "subject:"); n != tc.certs {
				t.Fatalf("%d certificates shown, want %d:\n%s", n, tc.certs, out)
			}
		})
	}
	if code, _, errs := certRun(t, "cert", "inspect", "--password", "wrong", p12); code != 1 || errs == "" {
		t.Fatalf("wrong PKCS#12 password: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := certRun(t, "cert", "inspect", keyPath); code != 1 || !strings.Contains(errs, keyPath) {
		t.Fatalf("key file: exit %d, stderr %q", code, errs)
	}
}

func TestCertCheck(t *testing.T) {
	pki, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	dir := t.TempDir()
	write := func(name string, o *testpki.LeafOptions) string {
		l, err := pki.Server(name+".hopital.test", o)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".pem")
		// The leaf alone: the test CA lives until 2099.
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Cert.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fresh := write("fresh", &testpki.LeafOptions{NotAfter: now.AddDate(0, 0, 400)})
	soon := write("soon", &testpki.LeafOptions{NotAfter: now.AddDate(0, 0, 30)})
	expired := write("expired", &testpki.LeafOptions{Expired: true})

	for _, tc := range []struct {
		args   []string
		code   int
		status string
	}{
		{[]string{fresh}, 0, "OK"},
		{[]string{soon}, 1, "RENEW"},
		{[]string{"--warn", "10d", soon}, 0, "OK"},
		{[]string{"--warn", "700h", soon}, 0, "OK"},
		{[]string{"--warn", "800h", soon}, 1, "RENEW"},
		{[]string{expired}, 1, "EXPIRED"},
		{[]string{"--warn", "0d", expired}, 1, "EXPIRED"},
		{[]string{fresh, expired}, 1, "EXPIRED"},
	} {
		code, out, errs := certRun(t, append([]string{"cert", "check"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out, tc.status+" ") {
			t.Errorf("check %v: exit %d (want %d), output %q %q", tc.args, code, tc.code, out, errs)
		}
	}
	if code, _, _ := certRun(t, "cert", "check", "--warn", "soon", fresh); code != 2 {
		t.Errorf("bad --warn: exit %d, want 2", code)
	}
	if code, _, _ := certRun(t, "cert", "check"); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
	if code, _, _ := certRun(t, "cert", "frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: exit %d, want 2", code)
	}
	if code, _, errs := certRun(t, "cert", "check", filepath.Join(dir, "missing.pem")); code != 1 || errs == "" {
		t.Errorf("missing file: exit %d, %q", code, errs)
	}
}
