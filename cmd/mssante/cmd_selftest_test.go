package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// selftest reports failures: a trust space that is down fails the network checks (exit 1), a BAL that
// is not one of the trust space is a usage error (exit 2), and no trust space at all an error.
func TestSelftestFailures(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	sb.Close() // down: nothing answers any more

	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb}
	if code := run(ctx, []string{"selftest", "--dev", dir, "--timeout", "2s"}, e); code != 1 {
		t.Fatalf("trust space down: exit %d\n%s", code, out.String())
	}
	if strings.Count(out.String(), "FAIL") != 3 || !strings.Contains(out.String(), "the liste blanche does not list it: the BAL client sent nothing") {
		t.Fatalf("want the three network checks (submission, relay, Pro Santé Connect) failed and the whitelist check ok:\n%s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"selftest", "--dev", dir, "--from", "nobody@" + sandbox.Hopital}, e); code != 2 {
		t.Fatalf("unknown BAL: exit %d", code)
	}
	if code := run(ctx, []string{"selftest", "--dev", t.TempDir()}, e); code != 1 || !strings.Contains(errb.String(), "mssante dev") {
		t.Fatalf("no trust space: exit %d, %s", code, errb.String())
	}
}

// The same checks with the connection options of a real operator (no --dev): every endpoint,
// certificate, trust and liste blanche given explicitly; here they are the sandbox's.
func TestSelftestExplicitOperator(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	info := sb.Info
	from := "logiciel@" + sandbox.Cabinet // the responder is on the same operator: local delivery both ways
	b, op := info.BAL(from), info.OperatorOf(from)
	var out, errb bytes.Buffer
	code := run(ctx, []string{"selftest", "--from", from, "--submission", op.Submission, "--imap", op.IMAPS, "--imap-tls",
		"--cert", b.CertFile, "--key", b.KeyFile, "--trust", info.CAFile, "--crl", info.CRLFile,
		"--whitelist", info.WhitelistFile, "--responder", info.Responder, "--state", t.TempDir()}, &env{stdout: &out, stderr: &errb})
	if code != 0 || !strings.Contains(out.String(), "selftest passed") || strings.Contains(out.String(), "submission server refused") {
		t.Fatalf("exit %d:\n%s\n%s", code, out.String(), errb.String())
	}
	// Bare, it looks in the default sandbox folder, and says what to do when none is there.
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	errb.Reset()
	if code := run(ctx, []string{"selftest"}, &env{stdout: &out, stderr: &errb}); code != 1 || !strings.Contains(errb.String(), "start one with \"mssante dev") {
		t.Fatalf("no trust space in the default folder: exit %d, %s", code, errb.String())
	}
}

// Before the ANS lists its domain, an operator tests its own connector with the responder of
// that connector ([responder] address on its own domain): "mssante serve" with a liste blanche
// that does not list the domain, and selftest with the operator's connection options, pass.
// Without the own-domain responder, the client refuses to send to an unlisted domain.
func TestSelftestOwnConnectorBeforeListing(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	// The list is signed by a signer with the ANS signer's subject (the client's default), and
	// names the peer only: our domain is not listed yet.
	oldSigner := transport.SubjectDN(f.signer.Cert)
	alb, err := f.pki.Leaf(testpki.ProfileOrgSign, f.pki.Subject("alb.mssante.fr", &testpki.LeafOptions{
		SIRET: "347976684200724", Org: "CAPGEMINI TECHNOLOGY SERVICES", State: "Hauts-de-Seine (92)"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.signer = alb
	f.writeWhitelist(t, time.Now(), []whitelist.Entry{{Domain: peerDomain, OperatorDNs: []string{transport.SubjectDN(f.peer.Cert)}}})
	imaps := testenv.FreePort(t)
	from, responder := "dr@"+ourDomain, "reponse.automatique@"+ourDomain
	cfg, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	c := strings.Replace(string(cfg), oldSigner, transport.SubjectDN(alb.Cert), 1)
	c = strings.Replace(c, "[local]\nmaildir = \""+f.maildir+"\"\n", "", 1)
	c = strings.Replace(c, "login = \"dr\"", "login = \""+from+"\"", 1)
	c = strings.Replace(c, "[submission]\n", "[auth]\nallow_passwords = true\n[submission]\nallow_plain = true\n", 1)
	c += fmt.Sprintf("[mailbox]\ndir = %q\n[imap]\nlisten_tls = \"127.0.0.1:%d\"\n[responder]\naddress = %q\n",
		filepath.Join(f.dir, "mailbox"), imaps, responder)
	if err := os.WriteFile(f.config, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var serveErr testenv.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &serveErr})
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	waitUntil(t, "IMAPS listening", 20*time.Second, func() bool {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", imaps))
		if err == nil {
			conn.Close()
		}
		return err == nil
	})

	selftest := func(extra ...string) (int, string) {
		var out, errb bytes.Buffer
		args := append([]string{"selftest", "--from", from, "--submission", fmt.Sprintf("127.0.0.1:%d", f.submission),
			"--imap", fmt.Sprintf("127.0.0.1:%d", imaps), "--imap-tls", "--auth", "plain", "--password", "secret",
			"--trust", filepath.Join(f.dir, "ca.pem"), "--crl", filepath.Join(f.dir, "ca.crl"),
			"--whitelist", filepath.Join(f.dir, "whitelist.xml"), "--state", t.TempDir(), "--timeout", "30s"}, extra...)
		code := run(ctx, args, &env{stdout: &out, stderr: &errb})
		return code, out.String() + errb.String()
	}
	code, out := selftest("--responder", responder)
	if code != 0 || !strings.Contains(out, "selftest passed") || !strings.Contains(out, "local delivery to its responder and back") ||
		!strings.Contains(out, "the liste blanche does not list it: the BAL client sent nothing") {
		t.Fatalf("own responder: exit %d:\n%s\nserve: %s", code, out, serveErr.String())
	}
	// A responder of another, unlisted domain is refused before anything is sent.
	code, out = selftest("--responder", "reponse.automatique@"+peerDomain+".invalid", "--timeout", "1s")
	if code != 1 || !strings.Contains(out, "FAIL") || !strings.Contains(out, "not in the whitelist") {
		t.Fatalf("unlisted responder: exit %d:\n%s", code, out)
	}
}
