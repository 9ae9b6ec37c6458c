package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/whitelist"
)

func doctorCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, append([]string{"doctor"}, args...), &env{stdout: &out, stderr: &errb})
	return code, out.String() + errb.String()
}

// lines returns the lines of out that start with status.
func doctorLines(out string, status doctorStatus) []string {
	var l []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, string(status)+" ") {
			l = append(l, line)
		}
	}
	return l
}

// Against the trust space of "mssante dev", every check of every domain is ok; a domain off
// the liste blanche, or unknown to DNS, gets the right failures.
func TestDoctorSandbox(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	info := sb.Info

	for _, d := range []string{sandbox.Hopital, sandbox.Cabinet, sandbox.TestDomain} {
		code, out := doctorCLI(t, "--state", dir, "--domain", d, "--cert", info.Operator(d).CertFile)
		if code != 0 || len(doctorLines(out, doctorWarn)) > 0 || len(doctorLines(out, doctorFail)) > 0 {
			t.Fatalf("%s: exit %d:\n%s", d, code, out)
		}
		for _, want := range []string{"ok    MX " + d, "ok    SMTP STARTTLS mx.", "TLS 1.2 TLS_ECDHE_RSA_WITH_AES", "ok    TLS 1.1 refused",
			"ok    " + d + " on the liste blanche", "DN listed for " + d, "ok    our certificate DN listed", "ok    imaps", "ok    submissions",
			"ok    file modes of " + dir + ": "} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: output lacks %q:\n%s", d, want, out)
			}
		}
	}

	// The liste blanche without the cabinet's domain, signed by the sandbox's signer.
	signer, err := tls.LoadX509KeyPair(filepath.Join(dir, "whitelist", "alb-signer.crt.pem"), filepath.Join(dir, "whitelist", "alb-signer.key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := info.Whitelist()
	if err != nil {
		t.Fatal(err)
	}
	var kept []whitelist.Entry
	list.Domains(func(d string, es []whitelist.Entry) bool {
		if d != sandbox.Cabinet {
			kept = append(kept, es...)
		}
		return true
	})
	doc, err := whitelist.Sign(whitelist.NewList(time.Now(), kept), signer.PrivateKey.(crypto.Signer),
		[]*x509.Certificate{signer.Leaf, sb.PKI.Intermediate})
	if err != nil {
		t.Fatal(err)
	}
	off := filepath.Join(t.TempDir(), "off.xml")
	os.WriteFile(off, doc, 0o644)
	code, out := doctorCLI(t, "--state", dir, "--domain", sandbox.Cabinet, "--whitelist", off)
	fails := doctorLines(out, doctorFail)
	if code != 1 || len(fails) != 1 || !strings.Contains(fails[0], "fail  "+sandbox.Cabinet+" on the liste blanche: whitelist: domain not listed") ||
		!strings.Contains(out, "fix: ask the ANS") {
		t.Fatalf("domain off the list: exit %d:\n%s", code, out)
	}

	// A domain nobody serves: no MX, no address, not listed.
	code, out = doctorCLI(t, "--state", dir, "--domain", "absent.dev.mssante.fr")
	if code != 1 || !strings.Contains(out, "warn  MX absent.dev.mssante.fr") || !strings.Contains(out, "fail  A/AAAA absent.dev.mssante.fr") ||
		!strings.Contains(out, "fail  absent.dev.mssante.fr on the liste blanche") {
		t.Fatalf("absent domain: exit %d:\n%s", code, out)
	}
	// Files open to others: a warning for the sandbox folder, and for the data of a serve
	// configuration (its key, spool, store and audit folders).
	op := info.Operator(sandbox.Hopital)
	code, out = doctorCLI(t, "--state", dir, "--domain", sandbox.Hopital, "--config", op.Config)
	// The sandbox keeps passwords on beside Pro Santé Connect: doctor warns about it.
	if code != 0 || len(doctorLines(out, doctorWarn)) != 1 || !strings.Contains(out, "warn  passwords: auth.allow_passwords is on") ||
		strings.Count(out, "ok    file modes of ") != 5 {
		t.Fatalf("private files: exit %d:\n%s", code, out)
	}
	index := filepath.Join(filepath.Dir(op.Config), "mailbox", "index.db")
	for _, p := range []string{index, op.KeyFile} {
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out = doctorCLI(t, "--state", dir, "--domain", sandbox.Hopital, "--config", op.Config)
	warns := strings.Join(doctorLines(out, doctorWarn), "\n")
	if code != 0 || len(doctorLines(out, doctorWarn)) != 4 || !strings.Contains(warns, "warn  file modes of "+dir+": 2 of ") ||
		!strings.Contains(warns, index+" (0644)") || !strings.Contains(warns, "warn  file modes of "+op.KeyFile+": 1 of 1 ") ||
		!strings.Contains(out, "fix: chmod -R go= ") {
		t.Fatalf("files open to others: exit %d:\n%s", code, out)
	}
	if code, _ := doctorCLI(t, "--state", dir); code != 2 {
		t.Fatalf("no --domain: exit %d", code)
	}
}

// doctorSMTP is an SMTP server that only says hello: enough for STARTTLS.
type doctorSMTP struct{}

func (doctorSMTP) NewSession(*smtp.Conn) (smtp.Session, error) { return doctorSession{}, nil }

type doctorSession struct{}

func (doctorSession) Mail(string, *smtp.MailOptions) error { return errors.New("no") }
func (doctorSession) Rcpt(string, *smtp.RcptOptions) error { return errors.New("no") }
func (doctorSession) Data(io.Reader) error                 { return errors.New("no") }
func (doctorSession) Reset()                               {}
func (doctorSession) Logout() error                        { return nil }

// serveSMTP runs doctorSMTP with leaf on a loopback port and returns its address.
func serveSMTP(t *testing.T, leaf *testpki.Leaf, minVersion uint16) string {
	t.Helper()
	s := smtp.NewServer(doctorSMTP{})
	s.Domain = "localhost"
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}, MinVersion: minVersion}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// staticResolver maps every domain to the MX "mx.DOMAIN" on 127.0.0.1.
type staticResolver struct{}

func (staticResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return []*net.MX{{Host: "mx." + name + ".", Pref: 10}}, nil
}

func (staticResolver) LookupHost(context.Context, string) ([]string, error) {
	return []string{"127.0.0.1"}, nil
}

// A broken set-up: an expired server certificate fails, one expiring within 90 days warns, one
// that does not name the MX host fails, TLS 1.1 accepted fails, and a DN the list does not
// name fails.
func TestDoctorBrokenCertificates(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	pki := sb.PKI
	mustLeaf := func(l *testpki.Leaf, err error) *testpki.Leaf {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// Each broken server stands in for the cabinet's MX, whose domain is listed.
	d := sandbox.Cabinet
	host := "mx." + d
	cases := []struct {
		name       string
		leaf       *testpki.Leaf
		minVersion uint16
		want       []string
	}{
		{"expired", mustLeaf(pki.Server(host, &testpki.LeafOptions{Expired: true})), tls.VersionTLS12,
			[]string{"fail  SMTP STARTTLS " + host, "certificate expired", "fail  certificate of " + host + ": expired on", "fix: renew"}},
		{"near expiry", mustLeaf(pki.Server(host, &testpki.LeafOptions{NotAfter: time.Now().Add(30 * 24 * time.Hour)})), tls.VersionTLS12,
			[]string{"ok    SMTP STARTTLS " + host, "warn  certificate of " + host + ": expires on", "in 29 days"}},
		{"wrong host", mustLeaf(pki.Server("mx.autre.mssante.fr", nil)), tls.VersionTLS12,
			[]string{"fail  SMTP STARTTLS " + host, "not valid for the host name", "must name " + host}},
		{"revoked", mustLeaf(pki.Server(host, &testpki.LeafOptions{Revoked: true})), tls.VersionTLS12,
			[]string{"fail  SMTP STARTTLS " + host, "certificate revoked", "install a new one"}},
		{"TLS 1.1 and an unlisted DN", mustLeaf(pki.Server(host, nil)), tls.VersionTLS10,
			[]string{"fail  TLS 1.1 refused by " + host, "fail  certificate of " + host + " DN listed for " + d, "is not listed"}},
	}
	// The CRL of the trust space now lists the revoked leaf.
	crl, err := pki.CRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sb.Info.CRLFile, crl, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := serveSMTP(t, c.leaf, c.minVersion)
			cfg := &doctorConfig{Domain: d, Now: time.Now, WarnWithin: 90 * 24 * time.Hour, Timeout: 10 * time.Second}
			if err := doctorSandbox(cfg, sb.Info); err != nil { // its trust and liste blanche
				t.Fatal(err)
			}
			cfg.Resolver = staticResolver{}
			cfg.Addr = func(h, ip, svc string) string {
				if svc == "smtp" {
					return addr
				}
				return "127.0.0.1:1" // nothing listens: the optional ports only warn
			}
			var out bytes.Buffer
			failed := doctorPrint(&out, doctorRun(ctx, cfg))
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if c.name == "near expiry" && failed != 1 { // only the DN, which is not the listed one
				t.Errorf("near expiry: %d failures:\n%s", failed, out.String())
			}
			if !strings.Contains(out.String(), "warn  imaps") {
				t.Errorf("a closed optional port must warn:\n%s", out.String())
			}
		})
	}
}

// doctor --connect probes endpoints given as HOST:PORT, without DNS: every listener of a
// running connector gives ok lines (both STARTTLS and implicit TLS, SMTP and IMAP), a closed
// port a fail line, and a wrong name or a certificate other than --cert a failure.
func TestDoctorConnect(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	op := sb.Info.Operator(sandbox.Hopital)
	eps := map[string]string{"smtp": op.Relay, "submission": op.Submission, "submissions": op.SubmissionTLS, "imap": op.IMAP, "imaps": op.IMAPS}
	args := []string{"--sandbox", dir, "--host", op.Hostname, "--cert", op.CertFile, "--domain", sandbox.Hopital}
	for svc, addr := range eps {
		args = append(args, "--connect", svc+"://"+addr)
	}
	code, out := doctorCLI(t, args...)
	if code != 0 || len(doctorLines(out, doctorWarn)) > 0 || len(doctorLines(out, doctorFail)) > 0 || strings.Contains(out, "MX ") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for svc, addr := range eps {
		who := op.Hostname + " (" + addr + ")"
		for _, want := range []string{"ok    " + svc + " " + who + ": TLS 1.", "certificate verified for " + op.Hostname,
			"ok    certificate of " + who + ": valid until", "ok    TLS 1.1 refused by " + who, "ok    certificate of " + who + " is --cert",
			"ok    certificate of " + who + " DN listed for " + sandbox.Hopital} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	}

	// Nothing listens: one fail line, with the fix.
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	code, out = doctorCLI(t, "--sandbox", dir, "--connect", "smtp://"+closed)
	fails := doctorLines(out, doctorFail)
	if code != 1 || len(fails) != 1 || !strings.HasPrefix(fails[0], "fail  smtp 127.0.0.1 ("+closed+"): ") ||
		!strings.Contains(out, "fix: check that the connector is running") {
		t.Fatalf("closed port: exit %d:\n%s", code, out)
	}

	// The certificate does not name --host, and is not the cabinet's --cert.
	other := sb.Info.Operator(sandbox.Cabinet)
	code, out = doctorCLI(t, "--sandbox", dir, "--host", other.Hostname, "--cert", other.CertFile, "--connect", "imaps://"+op.IMAPS)
	if code != 1 || !strings.Contains(out, "fail  imaps "+other.Hostname) || !strings.Contains(out, "must name "+other.Hostname) ||
		!strings.Contains(out, "is --cert: it presents "+op.CertDN) {
		t.Fatalf("wrong host and certificate: exit %d:\n%s", code, out)
	}

	// A port that says nothing of its service is a usage error.
	if code, out := doctorCLI(t, "--connect", "127.0.0.1:2525"); code != 2 || !strings.Contains(out, "say which service, e.g. smtp://127.0.0.1:2525") {
		t.Fatalf("unknown port: exit %d:\n%s", code, out)
	}
}
