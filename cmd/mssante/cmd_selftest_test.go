package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// selftest reports failures: a trust space that is down fails both checks (exit 1), a BAL that
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
	if strings.Count(out.String(), "FAIL") != 2 || !strings.Contains(out.String(), "the liste blanche does not list it: the BAL client sent nothing") {
		t.Fatalf("want the two network checks failed and the whitelist check ok:\n%s", out.String())
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
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
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
