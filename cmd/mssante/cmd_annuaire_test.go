package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/annuaire/annuairetest"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

// writeExtraction writes a generated extraction of n lines as the ANS publishes it (a ZIP).
func writeExtraction(t *testing.T, n int) (path, text string) {
	var b bytes.Buffer
	if err := annuairetest.WriteExtraction(&b, n, 7); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "Extraction_Correspondance_MSSante_202611280130.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	w, _ := zw.Create("Extraction_Correspondance_MSSante_202611280130.txt")
	w.Write(b.Bytes())
	zw.Close()
	f.Close()
	return path, b.String()
}

func TestAnnuaireExportLDIF(t *testing.T) {
	path, _ := writeExtraction(t, 60)
	code, out, stderr := runCmd(t, "annuaire", "export-ldif", "--base-entry", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	dns := strings.Count(out, "\ndn: ") + strings.Count(out, "\ndn:: ")
	if !strings.HasPrefix(out, "dn: dc=mssante,dc=fr\n") || dns != 60 || !strings.Contains(stderr, "60 entries") {
		t.Fatalf("%d entries after the base, stderr %q", dns, stderr)
	}
	if !strings.Contains(out, "objectClass: mssanteBAL\n") || !strings.Contains(out, "TypeBAL: PER\n") || !strings.Contains(out, "mssanteNomRecherche: ") {
		t.Error("entries are not in the default schema")
	}
	bad := filepath.Join(t.TempDir(), "bad.txt")
	os.WriteFile(bad, []byte("a|b|c\n"), 0o600)
	if code, _, stderr := runCmd(t, "annuaire", "export-ldif", bad); code != 1 || !strings.Contains(stderr, "unexpected extraction format") {
		t.Errorf("bad file: exit %d, %q", code, stderr)
	}
	if code, out, _ := runCmd(t, "annuaire", "schema"); code != 0 || !strings.Contains(out, "objectclass ( ") {
		t.Error("schema")
	}
	if code, out, _ := runCmd(t, "annuaire", "schema", "--ldif"); code != 0 || !strings.HasPrefix(out, "dn: cn=mssante,cn=schema,cn=config\n") {
		t.Error("schema --ldif")
	}
}

func TestAnnuaireSearchExtraction(t *testing.T) {
	path, text := writeExtraction(t, 500)
	x, err := annuaire.Load(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := x.Search(context.Background(), annuaire.Query{Type: annuaire.PER, Limit: 1})
	e := all.Entries[0]
	prefix := strings.ToLower(annuaire.NameKey(&e)[:3])
	code, out, stderr := runCmd(t, "annuaire", "search", "--source", "extraction:"+path, "--name", prefix, "--json", "--limit", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || len(lines) > 5 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, l := range lines {
		var got annuaire.Entry
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(annuaire.NameKey(&got), strings.ToUpper(prefix)) {
			t.Errorf("%s does not match %q", got.Address, prefix)
		}
	}
	code, out, _ = runCmd(t, "annuaire", "search", "--source", "extraction:"+path, "--address", e.Address)
	if code != 0 || !strings.HasPrefix(out, "TYPE") || !strings.Contains(out, e.Address) || !strings.Contains(out, e.Person.NationalID) {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
	if code, _, _ := runCmd(t, "annuaire", "search", "--source", "extraction:"+path, "--address", "nobody@nowhere.fr"); code != 1 {
		t.Errorf("nothing found: exit %d", code)
	}
	if code, _, _ := runCmd(t, "annuaire", "search", "--source", "extraction:"+path, "--type", "XYZ"); code != 2 {
		t.Errorf("bad type: exit %d", code)
	}
	if code, _, _ := runCmd(t, "annuaire", "search", "--source", "gopher://x"); code != 2 {
		t.Errorf("bad source: exit %d", code)
	}
	if code, _, _ := runCmd(t, "annuaire", "search"); code != 2 {
		t.Errorf("no source: exit %d", code)
	}
	// An LDAP source that does not answer: a clear error (the LDAP backend itself is tested
	// against slapd in package annuaire).
	if code, _, stderr := runCmd(t, "annuaire", "search", "--source", "ldap://127.0.0.1:1", "--name", "x"); code != 1 || !strings.Contains(stderr, "annuaire: LDAP") {
		t.Errorf("unreachable LDAP: exit %d %q", code, stderr)
	}
	if code, _, stderr := runCmd(t, "annuaire", "search", "--source", "ldap://ldap.example.org", "--bind-dn", "cn=a", "--password-env", "HOME"); code != 1 || !strings.Contains(stderr, "without TLS") {
		t.Errorf("password in clear: exit %d %q", code, stderr)
	}
}

// tlsServer starts an HTTPS test server and writes its certificate for --ca.
func tlsServer(t *testing.T, h http.Handler) (*httptest.Server, string) {
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600)
	return s, ca
}

func TestAnnuaireSearchFHIR(t *testing.T) {
	var gotKey, gotQuery string
	s, ca := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotKey, gotQuery = r.Header.Get("ESANTE-API-KEY"), r.URL.RawQuery
		w.Write([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Organization",
"name":"CH DE DAX","identifier":[{"system":"https://finess.esante.gouv.fr","value":"400780284"}],
"telecom":[{"system":"email","value":"dpi@ch-dax.mssante.fr","extension":[
{"url":"https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type","valueCoding":{"code":"MSSANTE"}},
{"url":"https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata",
 "extension":[{"url":"type","valueCodeableConcept":{"coding":[{"code":"APP"}]}}]}]}]}}]}`))
	}))
	t.Setenv("ESANTE_API_KEY", "k-123")
	code, out, stderr := runCmd(t, "annuaire", "search", "--source", "fhir:"+s.URL+"/fhir/v2", "--ca", ca, "--type", "app")
	if code != 0 || !strings.Contains(out, "APP   dpi@ch-dax.mssante.fr") || !strings.Contains(out, "FINESS 400780284") {
		t.Fatalf("exit %d: %s\n%s", code, stderr, out)
	}
	if gotKey != "k-123" || !strings.Contains(gotQuery, "mailbox-mss-type=APP") {
		t.Errorf("key %q, query %q", gotKey, gotQuery)
	}
	// Without --ca the test server is not trusted.
	if code, _, stderr := runCmd(t, "annuaire", "search", "--source", "fhir:"+s.URL+"/fhir/v2", "--type", "APP"); code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("untrusted: exit %d %q", code, stderr)
	}
}

// TestAnnuaireSearchFHIRSwitches: the switches for what the live API's documentation leaves open reach
// the requests, and --timeout bounds a request that gets no answer.
func TestAnnuaireSearchFHIRSwitches(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	hang := make(chan struct{})
	s, ca := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("name") == "hang" {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		mu.Lock()
		queries = append(queries, r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		w.Write([]byte(`{"resourceType":"Bundle","type":"searchset"}`))
	}))
	defer close(hang)
	search := func(args ...string) string {
		t.Helper()
		mu.Lock()
		queries = nil
		mu.Unlock()
		args = append([]string{"annuaire", "search", "--source", "fhir:" + s.URL + "/fhir/v2", "--ca", ca}, args...)
		if code, out, stderr := runCmd(t, args...); code != 1 || stderr != "" { // 1: no BAL found
			t.Fatalf("%q: exit %d: %s\n%s", args, code, stderr, out)
		}
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(queries, "\n")
	}
	if q := search("--name", "dupont"); !strings.Contains(q, "_include%3Aiterate=PractitionerRole%3Aorganization") {
		t.Errorf("name search without the switch: %s", q)
	}
	if q := search("--name", "dupont", "--fhir-no-include-iterate"); strings.Contains(q, "iterate") || !strings.Contains(q, "name=dupont") {
		t.Errorf("--fhir-no-include-iterate: %s", q)
	}
	if q := search("--profession", "10"); !strings.Contains(q, "PractitionerRole?") || !strings.Contains(q, "role=") {
		t.Errorf("profession search without the switch: %s", q)
	}
	if q := search("--profession", "10", "--fhir-scan-roles"); !strings.Contains(q, "PractitionerRole?") || strings.Contains(q, "role=") {
		t.Errorf("--fhir-scan-roles: %s", q)
	}
	code, _, stderr := runCmd(t, "annuaire", "search", "--source", "fhir:"+s.URL+"/fhir/v2", "--ca", ca, "--name", "hang", "--timeout", "200ms")
	if code != 1 || !strings.Contains(stderr, "Timeout") {
		t.Errorf("--timeout: exit %d %q", code, stderr)
	}
}

func TestAnnuaireFetch(t *testing.T) {
	zipPath, _ := writeExtraction(t, 200)
	body, _ := os.ReadFile(zipPath)
	s, ca := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Disposition", "attachment; filename=Extraction_Correspondance_MSSante_202611280130.zip")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	dir := t.TempDir()
	code, out, stderr := runCmd(t, "annuaire", "fetch", "--url", s.URL+"/x", "--ca", ca, "--dir", dir)
	want := filepath.Join(dir, "Extraction_Correspondance_MSSante_202611280130.zip")
	if code != 0 || strings.TrimSpace(out) != want || !strings.Contains(stderr, "100%") {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, stderr)
	}
	if got, _ := os.ReadFile(want); !bytes.Equal(got, body) {
		t.Fatal("downloaded file differs")
	}
	if code, _, stderr := runCmd(t, "annuaire", "fetch", "--url", s.URL+"/x", "--ca", ca, "--dir", dir); code != 0 || !strings.Contains(stderr, "already up to date") {
		t.Errorf("second fetch: exit %d %q", code, stderr)
	}
	// The default trust is the IGC-Santé root, which did not sign the test server.
	if code, _, stderr := runCmd(t, "annuaire", "fetch", "--url", s.URL+"/x", "--dir", t.TempDir()); code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("untrusted: exit %d %q", code, stderr)
	}
}
