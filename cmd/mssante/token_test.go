package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
)

// TestSendReceiveBearerToken: send with --auth xoauth2 --token-command (curl against the
// sandbox's OpenID provider), receive with --auth oauthbearer --token-file; two token options
// at once are a usage error.
func TestSendReceiveBearerToken(t *testing.T) {
	testenv.Require(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	info := startSandbox(t, ctx, dir).Info
	work := t.TempDir()
	pdf := filepath.Join(work, "lettre.pdf")
	os.WriteFile(pdf, samplepdf.Page("Lettre (test)"), 0o600)
	from, to := "jean.dupont@"+sandbox.Hopital, "marie.durand@"+sandbox.Cabinet

	tok, err := info.PSCToken(ctx, "marie.durand")
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(work, "token")
	os.WriteFile(tokFile, []byte(tok+"\n"), 0o600)
	var rout, rerr testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"receive", "--dev", dir, "--from", to, "--state", filepath.Join(work, "b"),
			"--auth", "oauthbearer", "--token-file", tokFile, "--count", "1", "--for", "90s", "--poll", "1s"},
			&env{stdout: &rout, stderr: &rerr})
	}()
	cmd, _, _ := strings.Cut(devPSCCommand(info, 0, 0), " && ")
	cmd = strings.TrimSuffix(strings.TrimPrefix(cmd, "TOKEN=$("), ")")
	var out, errb bytes.Buffer
	code := run(ctx, []string{"send", "--dev", dir, "--from", from, "--to", to, "--state", filepath.Join(work, "a"),
		"--auth", "xoauth2", "--token-command", cmd, "--nil", "DEV000000",
		"--pdf", pdf, "--ins", "279035121518989", "--ins-oid", mssante.OIDINSNIRTest, "--birth-name", "PAT-TROIS",
		"--given", "DOMINIQUE", "--birth-date", "1979-03-28", "--sex", "F", "--birth-place", "51215", "--author-id", "801234567897",
		"--author-family", "DAVID", "--author-given", "Charles", "--org-id", "1750803447", "--org-name", "Hôpital Exemple"},
		&env{stdout: &out, stderr: &errb})
	if code != 0 || !strings.Contains(out.String(), "accepted") {
		t.Fatalf("send with --token-command: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if c := <-done; c != 0 || !strings.Contains(rout.String(), "from     "+from) {
		t.Fatalf("receive with --token-file: exit %d\n%s\n%s", c, rout.String(), rerr.String())
	}
	errb.Reset()
	if code := run(ctx, []string{"receive", "--dev", dir, "--from", to, "--state", filepath.Join(work, "b"), "--auth", "xoauth2",
		"--token", "x", "--token-file", tokFile}, &env{stdout: &out, stderr: &errb}); code != 2 || !strings.Contains(errb.String(), "one of --token") {
		t.Fatalf("two token options: exit %d, %s", code, errb.String())
	}
}
