package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

func runBALCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestBALCommand(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	pki, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Org("dpi@hopital.test.mssante.fr", nil)
	if err != nil {
		t.Fatal(err)
	}
	certPath, _, err := leaf.WriteFiles(dir, "dpi")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		stdin string
		args  []string
		code  int
		out   string // substring of stdout
		err   string // substring of stderr
	}{
		{"", []string{"bal", "add", "--store", store, "--type", "APP", "--cert", certPath, "--owner", "010000001", "--quota", "1G", "--retention", "365", "dpi@hopital.test.mssante.fr"}, 0, "added APP BAL dpi@hopital.test.mssante.fr", ""},
		{"s3cret\n", []string{"bal", "add", "cardio@hopital.test.mssante.fr", "--store", store, "--type", "org", "--description", "Cardiologie", "--password-stdin"}, 0, "added ORG BAL", ""},
		{"", []string{"bal", "add", "--store", store, "--type", "APP", "x@hopital.test.mssante.fr"}, 1, "", "certificate DN"},
		{"", []string{"bal", "add", "--store", store, "--type", "CAB", "x@hopital.test.mssante.fr"}, 2, "", "BAL type"},
		{"", []string{"bal", "add", "--store", store, "--type", "PER", "--quota", "lots", "x@hopital.test.mssante.fr"}, 2, "", "--quota"},
		{"", []string{"bal", "add", "--store", store, "--type", "ORG", "CARDIO@hopital.test.mssante.fr"}, 1, "", "already exists"},
		{"", []string{"bal", "list", "--store", store}, 0, "APP   dpi@hopital.test.mssante.fr", ""},
		{"", []string{"bal", "show", "--store", store, "dpi@hopital.test.mssante.fr"}, 0, "cert DN:     " + transport.SubjectDN(leaf.Cert), ""},
		{"", []string{"bal", "show", "--store", store, "nobody@hopital.test.mssante.fr"}, 1, "", "no such BAL"},
		{"", []string{"bal", "export", "--store", store}, 0, "ORG|cardio@hopital.test.mssante.fr||Cardiologie||0|0\nAPP|dpi@hopital.test.mssante.fr|010000001||" + transport.SubjectDN(leaf.Cert) + "|1073741824|365\n", ""},
		{"", []string{"bal", "purge", "--store", store}, 0, "purged 0 messages", ""},
		{"", []string{"bal", "remove", "--store", store, "cardio@hopital.test.mssante.fr"}, 0, "removed cardio@hopital.test.mssante.fr", ""},
		{"", []string{"bal", "frobnicate"}, 2, "", "Usage"},
	}
	for _, s := range steps {
		code, out, errs := runBALCmd(t, s.stdin, s.args...)
		if code != s.code || !strings.Contains(out, s.out) || !strings.Contains(errs, s.err) {
			t.Fatalf("%v: code %d, stdout %q, stderr %q", s.args, code, out, errs)
		}
	}
	if !strings.HasPrefix(mustOut(t, "bal", "export", "--store", store), "Type de BAL|Adresse BAL|") {
		t.Fatal("export header")
	}
	var list []balJSON
	if err := json.Unmarshal([]byte(mustOut(t, "bal", "list", "--json", "--store", store)), &list); err != nil || len(list) != 1 || list[0].QuotaBytes != 1<<30 {
		t.Fatalf("list --json = %+v, %v", list, err)
	}
	// the store the CLI wrote is the one the IMAP server reads: the password works
	os.Setenv("MSSANTE_MAILBOX", store)
	defer os.Unsetenv("MSSANTE_MAILBOX")
	if code, out, _ := runBALCmd(t, "", "bal", "list"); code != 0 || !strings.Contains(out, "dpi@") {
		t.Fatalf("list with MSSANTE_MAILBOX: %d %q", code, out)
	}
}

func mustOut(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := runBALCmd(t, "", args...)
	if code != 0 {
		t.Fatalf("%v: %d %s", args, code, errs)
	}
	return out
}
