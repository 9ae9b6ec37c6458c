package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/annuaire/annuairetest"
	"github.com/mssante-go/sdk/internal/peers"
)

func orgLine(addr string) string {
	e := annuaire.Entry{Address: addr, Type: annuaire.ORG, Structure: annuaire.Structure{IDType: "FINESS", ID: "1123456789", Name: "STRUCTURE"}}
	f := e.Fields()
	return strings.Join(f[:], "|") + "\n"
}

// writeOurExtraction writes today's extraction: 2,000 BALs of other domains, three of ours and one
// malformed line (a column too few).
func writeOurExtraction(t *testing.T, dir string) string {
	t.Helper()
	var b bytes.Buffer
	if err := annuairetest.WriteExtraction(&b, 2000, 7); err != nil {
		t.Fatal(err)
	}
	b.WriteString(orgLine("publie@domain.mssante.fr") + orgLine("ancien@domain.mssante.fr") + orgLine("voisin@domain.mssante.fr"))
	b.WriteString("ORG|casse@domain.mssante.fr|||\n")
	paris, _ := time.LoadLocation("Europe/Paris")
	p := filepath.Join(dir, "Extraction_Correspondance_MSSante_"+time.Now().In(paris).Format("20060102")+"0000.txt")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The bal and annuaire commands, and doctor, on the SQLite store of a folder (--store) and
// on the PostgreSQL store of a serve configuration (--config, its [audit] dir by default).
func TestAnnuaireReconcileAndPublishCommands(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { annuaireCommands(t, false) })
	t.Run("postgres", func(t *testing.T) { annuaireCommands(t, true) })
}

func annuaireCommands(t *testing.T, postgres bool) {
	dir := t.TempDir()
	sa := []string{"--store", filepath.Join(dir, "mailbox")}
	auditDir := filepath.Join(dir, "audit")
	if postgres {
		cfg := storeConfig(t, peers.StartPostgres(t, nil))
		sa, auditDir = []string{"--config", cfg}, filepath.Join(filepath.Dir(cfg), "audit")
	}
	args := func(a ...string) []string { return append(a, sa...) }
	steps := [][]string{
		args("bal", "add", "--type", "ORG", "--owner", "123456789", "--description", "BAL principale", "structure@domain.mssante.fr"),
		args("bal", "add", "--type", "PER", "--owner", "10003456789", "jm.dupont@domain.mssante.fr"),
		args("bal", "add", "--type", "ORG", "--owner", "123456789", "secret@domain.mssante.fr"),
		args("bal", "listing", "--liste-rouge", "yes", "secret@domain.mssante.fr"),
		args("bal", "add", "--type", "ORG", "--owner", "123456789", "ancien@domain.mssante.fr"),
		args("bal", "remove", "ancien@domain.mssante.fr"),
		args("bal", "add", "--type", "ORG", "--owner", "123456789", "publie@domain.mssante.fr"),
	}
	for _, s := range steps {
		if code, out, errs := runBALCmd(t, "", s...); code != 0 {
			t.Fatalf("%v: %d %s %s", s, code, out, errs)
		}
	}
	// Each change was audited in the default --audit-dir: beside the store, or serve's.
	b, err := os.ReadFile(filepath.Join(auditDir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for ev, n := range map[string]int{"bal_created": 5, "bal_deleted": 1, "bal_listing_changed": 1} {
		if got := strings.Count(string(b), `"event":"`+ev+`"`); got != n {
			t.Errorf("%d %s records, want %d:\n%s", got, ev, n, b)
		}
	}
	x := writeOurExtraction(t, dir)

	code, out, errs := runBALCmd(t, "", args("annuaire", "reconcile", "--source", "extraction:"+x)...)
	if code != 1 {
		t.Fatalf("reconcile: %d\n%s%s", code, out, errs)
	}
	words := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"missing structure@domain.mssante.fr ORG", "missing jm.dupont@domain.mssante.fr PER", "ok publie@domain.mssante.fr ORG",
		"stale ancien@domain.mssante.fr ORG", "stale voisin@domain.mssante.fr ORG not served by this connector",
		"unlisted secret@domain.mssante.fr ORG liste rouge", "ok 1, missing 2, stale 2, different 0, unlisted 1"} {
		if !strings.Contains(words, want) {
			t.Errorf("reconcile: no %q in\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "1 malformed line(s) of 2004 skipped (line 2005: 5 fields, want 31)") {
		t.Errorf("stderr: %s", errs)
	}
	// The report for others: no liste rouge BAL, no detail.
	_, out, _ = runBALCmd(t, "", args("annuaire", "reconcile", "--source", "extraction:"+x, "--json", "--for-others")...)
	var rec annuaire.Reconciliation
	if err := json.Unmarshal([]byte(out), &rec); err != nil || !rec.Shared || strings.Contains(out, "secret@") || strings.Contains(out, "123456789") {
		t.Fatalf("for others: %v\n%s", err, out)
	}
	// Yesterday's extraction: nothing is called stale.
	yesterday := time.Now().AddDate(0, 0, -1).Format(time.RFC3339)
	_, out, _ = runBALCmd(t, "", args("annuaire", "reconcile", "--source", "extraction:"+x, "--extraction-time", yesterday)...)
	if strings.Contains(out, "\nstale") || !strings.Contains(out, "no BAL called stale: the extraction is of") {
		t.Fatalf("yesterday's extraction:\n%s", out)
	}

	// Suspending a BAL makes it stale, and the next publication withdraws it.
	if code, out, errs := runBALCmd(t, "", args("bal", "suspend", "publie@domain.mssante.fr")...); code != 0 || !strings.Contains(out, "suspended") {
		t.Fatalf("suspend: %d %s %s", code, out, errs)
	}
	// A dry run first: nothing sent.
	api := annuairetest.NewWriteAPI("the-key")
	srv := httptest.NewTLSServer(api)
	defer srv.Close()
	ca := filepath.Join(dir, "api-ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	t.Setenv("ESANTE_API_KEY", "the-key")
	code, out, errs = runBALCmd(t, "", args("annuaire", "publish", "--source", "extraction:"+x, "--api-url", srv.URL)...)
	if code != 0 || !strings.Contains(out, "would insert") || !strings.Contains(out, "dry run: nothing sent") || api.Patches() != 0 {
		t.Fatalf("dry run: %d\n%s%s", code, out, errs)
	}
	code, out, errs = runBALCmd(t, "", args("annuaire", "publish", "--source", "extraction:"+x, "--api-url", srv.URL, "--ca", ca, "--apply")...)
	if code != 0 {
		t.Fatalf("apply: %d\n%s%s", code, out, errs)
	}
	if got := api.Telecoms("org-123456789"); !slices.Equal(got, []string{"secret@domain.mssante.fr (liste rouge)", "structure@domain.mssante.fr", "voisin@domain.mssante.fr"}) {
		t.Errorf("Organization after publish: %v\n%s", got, out)
	}
	if got := api.Telecoms("mss-practitioner-bal-per-dupont"); got[0] != "jm.dupont@domain.mssante.fr" {
		t.Errorf("Practitioner after publish: %v", got)
	}
	b, _ = os.ReadFile(filepath.Join(auditDir, "audit.jsonl"))
	if n := strings.Count(string(b), `"event":"annuaire_`); n != 5 {
		t.Errorf("%d publication audit records, want 5", n)
	}
	// A second run on the same extraction (the writes are not in it yet) has nothing to write.
	_, out, _ = runBALCmd(t, "", args("annuaire", "publish", "--source", "extraction:"+x, "--api-url", srv.URL)...)
	if strings.Contains(out, "would ") {
		t.Errorf("second run still writes:\n%s", out)
	}

	// doctor has a line on it, counts only.
	_, out, _ = runBALCmd(t, "", args("doctor", "--connect", "smtp://127.0.0.1:1", "--timeout", "2s", "--extraction", x)...)
	if !strings.Contains(out, "warn  annuaire reconciliation: ok 0, missing 2, stale 3, different 0, unlisted 0, unchecked 0") || strings.Contains(out, "secret@") {
		t.Errorf("doctor:\n%s", out)
	}
}

func TestAnnuaireReconcileRefusals(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "mailbox")
	for _, tt := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"annuaire", "reconcile", "--store", store}, 2, "--source is required"},
		{[]string{"annuaire", "reconcile", "--source", "ldap://x", "--store", store}, 2, "extraction:FILE or fhir"},
		{[]string{"annuaire", "reconcile", "--source", "extraction:" + filepath.Join(dir, "none.txt"), "--store", store}, 1, "no such file"},
		{[]string{"annuaire", "publish", "--source", "extraction:x", "--store", store, "--apply"}, 2, "--apply needs --api-url"},
		{[]string{"bal", "listing", "--store", store, "--liste-rouge", "maybe", "a@b.fr"}, 2, "yes or no"},
		{[]string{"bal", "suspend", "--store", store, "nobody@b.fr"}, 1, "no such BAL"},
	} {
		code, _, errs := runBALCmd(t, "", tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.err) {
			t.Errorf("%v: %d %q", tt.args, code, errs)
		}
	}
}
