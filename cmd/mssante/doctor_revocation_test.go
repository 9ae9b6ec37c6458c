package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport"
)

// TestDoctorRevocationLines: doctor --config reports each CRL address and the freshness of each
// CRL held; with the CRL servers unreachable and no CRL held, warnings and a failure that say
// what to do.
func TestDoctorRevocationLines(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	op := sb.Info.Operator(sandbox.Hopital)
	code, out := doctorCLI(t, "--state", dir, "--domain", sandbox.Hopital, "--config", op.Config)
	if code != 0 || !strings.Contains(out, "ok    CRL download "+sb.Info.CRLURL) ||
		!strings.Contains(out, "ok    CRL of "+transport.SubjectDN(sb.PKI.Intermediate)) || !strings.Contains(out, "fresh, next update") {
		t.Fatalf("exit %d:\n%s", code, out)
	}

	data, err := os.ReadFile(op.Config)
	if err != nil {
		t.Fatal(err)
	}
	broken := regexp.MustCompile(`(?m)^crl_files = .*$`).ReplaceAllString(string(data), "crl_files = []\ncrl_cache_dir = "+
		`"`+filepath.Join(t.TempDir(), "crl")+`"`)
	broken = regexp.MustCompile(`(?m)^crl_urls = .*$`).ReplaceAllString(broken, `crl_urls = ["http://127.0.0.1:1/none.crl"]`)
	cfg := filepath.Join(t.TempDir(), "serve.toml")
	if err := os.WriteFile(cfg, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	sb.Close() // the CRL server with the rest
	code, out = doctorCLI(t, "--state", dir, "--domain", sandbox.Hopital, "--config", cfg)
	if code != 1 || !strings.Contains(out, "warn  CRL download http://127.0.0.1:1/none.crl") ||
		!strings.Contains(out, "warn  CRL download "+sb.Info.CRLURL) ||
		!strings.Contains(out, "fail  CRLs: none held and tls.revocation is required") ||
		!strings.Contains(out, "fix: set tls.crl_urls or tls.crl_files") {
		t.Fatalf("no CRL: exit %d:\n%s", code, out)
	}
}
