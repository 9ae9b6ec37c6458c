package main

import (
	"archive/zip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestXDMPackInspect(t *testing.T) {
	dir := t.TempDir()
	var args []string
	for _, kind := range []string{"ldl-ses", "n1"} {
		_, doc, _ := runCLI(t, "", "cda", "example", "--kind", kind)
		if kind == "n1" { // a second document needs its own id
			doc = strings.Replace(doc, "DOC-2026-0001", "DOC-2026-0002", 1)
		}
		p := filepath.Join(dir, kind+".xml")
		os.WriteFile(p, []byte(doc), 0o644)
		args = append(args, "--cda", p)
	}
	out := filepath.Join(dir, "IHE_XDM.ZIP")
	code, stdout, stderr := runCLI(t, "", append(append([]string{"xdm", "pack"}, args...), "-o", out, "--now", "2026-03-12T11:00:00Z")...)
	if code != 0 || !strings.Contains(stdout, "2 document(s)") {
		t.Fatalf("pack: %d %s %s", code, stdout, stderr)
	}
	first, _ := os.ReadFile(out)
	runCLI(t, "", append(append([]string{"xdm", "pack"}, args...), "-o", out, "--now", "2026-03-12T11:00:00Z")...)
	if second, _ := os.ReadFile(out); string(first) != string(second) {
		t.Fatal("pack with --now is not reproducible")
	}
	ex := filepath.Join(dir, "ex")
	code, stdout, stderr = runCLI(t, "", "xdm", "inspect", "--extract", ex, out)
	if code != 0 || !strings.HasSuffix(stdout, "ok\n") || strings.Contains(stdout, "warning") ||
		!strings.Contains(stdout, "patient INS 279035121518989 (OID 1.2.250.1.213.1.4.10)") ||
		!strings.Contains(stdout, "formatCode urn:ihe:iti:xds-sd:pdf:2008") {
		t.Fatalf("inspect: %d\n%s\n%s", code, stdout, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(ex, "SUBSET01_DOC0002.XML")); err != nil || !strings.Contains(string(b), "nonXMLBody") {
		t.Fatalf("extract: %v", err)
	}

	// A traversal entry makes inspect exit 1.
	evil := filepath.Join(dir, "evil.zip")
	f, _ := os.Create(evil)
	zw := zip.NewWriter(f)
	zr, _ := zip.OpenReader(out)
	for _, e := range zr.File {
		zw.Copy(e)
	}
	zr.Close()
	w, _ := zw.Create("../../etc/passwd")
	w.Write([]byte("x"))
	zw.Close()
	f.Close()
	code, _, stderr = runCLI(t, "", "xdm", "inspect", evil)
	if code != 1 || !strings.Contains(stderr, "unsafe") {
		t.Fatalf("evil: %d %s", code, stderr)
	}
	// Two patients are refused by pack.
	if code, _, _ := runCLI(t, "", "xdm", "pack", "--cda", filepath.Join(dir, "n1.xml"), "--cda", "/nonexistent", "-o", out); code != 1 {
		t.Fatalf("missing file: %d", code)
	}
	if code, _, _ := runCLI(t, "", "xdm", "pack", "-o", out); code != 2 {
		t.Fatalf("no --cda: %d", code)
	}
}

// TestXDMInspectANS runs inspect on every ANS reference package (MSSANTE_XDM_EXAMPLES, a
// checkout of ansforge/interop-exemples-xdm): each opens, shows its INS, and reports the known
// metadata defects as warnings.
func TestXDMInspectANS(t *testing.T) {
	dir := os.Getenv("MSSANTE_XDM_EXAMPLES")
	if dir == "" {
		t.Skip("MSSANTE_XDM_EXAMPLES not set")
	}
	zips, _ := filepath.Glob(filepath.Join(dir, "*", "IHE_XDM.ZIP"))
	for _, z := range zips {
		code, out, stderr := runCLI(t, "", "xdm", "inspect", z)
		if code != 0 || !strings.Contains(out, "patient INS ") || !strings.Contains(out, "warning: ") {
			t.Errorf("%s: %d %s", z, code, stderr)
		}
	}
	t.Logf("%d ANS packages inspected", len(zips))
}
