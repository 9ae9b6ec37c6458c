package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestBALMemberCommand(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	steps := []struct {
		args      []string
		code      int
		out, errs string
	}{
		{[]string{"bal", "add", "--store", store, "--type", "ORG", "secretariat@hopital.test.mssante.fr"}, 0, "added ORG", ""},
		{[]string{"bal", "add", "--store", store, "--type", "PER", "--owner", "810000000001", "dr@hopital.test.mssante.fr"}, 0, "added PER", ""},
		{[]string{"bal", "member", "add", "--store", store, "Secretariat@hopital.test.mssante.fr", "810000000001"}, 0, "810000000001 is a member of secretariat@hopital.test.mssante.fr", ""},
		{[]string{"bal", "member", "add", "--store", store, "secretariat@hopital.test.mssante.fr", "010000000002"}, 0, "is a member", ""},
		{[]string{"bal", "member", "list", "--store", store, "secretariat@hopital.test.mssante.fr"}, 0, "010000000002\t", ""},
		{[]string{"bal", "member", "list", "--json", "--store", store, "secretariat@hopital.test.mssante.fr"}, 0, `"nationalId":"810000000001"`, ""},
		{[]string{"bal", "member", "add", "--store", store, "dr@hopital.test.mssante.fr", "810000000002"}, 1, "", "members are for ORG BALs"},
		{[]string{"bal", "member", "add", "--store", store, "nobody@hopital.test.mssante.fr", "810000000002"}, 1, "", "no such BAL"},
		{[]string{"bal", "member", "add", "--store", store, "secretariat@hopital.test.mssante.fr", "81-00"}, 1, "", "national id"},
		{[]string{"bal", "member", "remove", "--store", store, "secretariat@hopital.test.mssante.fr", "810000000009"}, 1, "", "not a member"},
		{[]string{"bal", "member", "remove", "--store", store, "secretariat@hopital.test.mssante.fr", "810000000001"}, 0, "no longer a member", ""},
		{[]string{"bal", "member", "list", "--store", store, "secretariat@hopital.test.mssante.fr"}, 0, "010000000002", ""},
		{[]string{"bal", "member", "frobnicate", "--store", store}, 2, "", "Usage"},
		{[]string{"bal", "member", "add", "--store", store, "secretariat@hopital.test.mssante.fr"}, 2, "", "Usage"},
	}
	for _, s := range steps {
		code, out, errs := runBALCmd(t, "", s.args...)
		if code != s.code || !strings.Contains(out, s.out) || !strings.Contains(errs, s.errs) {
			t.Fatalf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", s.args, code, out, errs, s.code, s.out, s.errs)
		}
	}
	if _, out, _ := runBALCmd(t, "", "bal", "member", "list", "--store", store, "secretariat@hopital.test.mssante.fr"); strings.Contains(out, "810000000001") {
		t.Fatalf("removed member still listed: %q", out)
	}
}
