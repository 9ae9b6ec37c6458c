package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/mssante-go/sdk/internal/samplepdf"
)

func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func TestCDAExampleBuildValidate(t *testing.T) {
	dir := t.TempDir()
	for _, kind := range []string{"ldl-ses", "n1"} {
		code, doc, stderr := runCLI(t, "", "cda", "example", "--kind", kind)
		if code != 0 {
			t.Fatalf("example %s: %d %s", kind, code, stderr)
		}
		golden, err := os.ReadFile(filepath.Join("..", "..", "mssante", "cda", "testdata", kind+".golden.xml"))
		if err != nil {
			t.Fatal(err)
		}
		if doc != string(golden) {
			t.Fatalf("example %s differs from the golden file checked with the ANS tools", kind)
		}
		path := filepath.Join(dir, kind+".xml")
		os.WriteFile(path, []byte(doc), 0o644)
		code, out, stderr := runCLI(t, "", "cda", "validate", path)
		if code != 0 || !strings.HasPrefix(out, "ok: ") {
			t.Fatalf("validate %s: %d %q %q", kind, code, out, stderr)
		}
		// The JSON form printed by --json builds the same document.
		code, js, _ := runCLI(t, "", "cda", "example", "--kind", kind, "--json")
		if code != 0 {
			t.Fatal(code)
		}
		code, built, stderr := runCLI(t, js, "cda", "build", "--from", "-")
		if code != 0 || built != doc {
			t.Fatalf("build from example JSON (%s): %d %s", kind, code, stderr)
		}
		// One naming style in the whole input: lowerCamel keys, the patient's INS included.
		var v any
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			t.Fatal(err)
		}
		checkLowerCamel(t, kind, v)
		patient, _ := v.(map[string]any)["patient"].(map[string]any)
		if ins, _ := patient["ins"].(map[string]any); ins["value"] == nil || ins["oid"] == nil {
			t.Errorf("%s: patient.ins = %v, want value and oid", kind, patient["ins"])
		}
	}
}

// checkLowerCamel fails on a JSON object key that starts with a capital letter.
func checkLowerCamel(t *testing.T, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if k != "" && unicode.IsUpper(rune(k[0])) {
				t.Errorf("%s.%s: key not lowerCamel", path, k)
			}
			checkLowerCamel(t, path+"."+k, e)
		}
	case []any:
		for _, e := range v {
			checkLowerCamel(t, path+"[]", e)
		}
	}
}

func TestCDABuildPDFFileAndRefusals(t *testing.T) {
	dir := t.TempDir()
	pdf := samplepdf.Page("test")
	os.WriteFile(filepath.Join(dir, "doc.pdf"), pdf, 0o644)
	js := `{"kind":"n1","pdfFile":"doc.pdf"}`
	os.WriteFile(filepath.Join(dir, "in.json"), []byte(js), 0o644)
	code, _, stderr := runCLI(t, "", "cda", "build", "--from", filepath.Join(dir, "in.json"))
	if code != 1 || !strings.Contains(stderr, "title: required") || !strings.Contains(stderr, "patient.INS: invalid") ||
		strings.Contains(stderr, "pdf: required") {
		t.Fatalf("incomplete input: %d %s", code, stderr)
	}
	code, _, stderr = runCLI(t, `{"kind":"n1","bogus":1}`, "cda", "build", "--from", "-")
	if code != 1 || !strings.Contains(stderr, "unknown field") {
		t.Fatalf("unknown field: %d %s", code, stderr)
	}
	// A broken document: validate exits 1 and names the rule.
	doc, _ := os.ReadFile(filepath.Join("..", "..", "mssante", "cda", "testdata", "n1.golden.xml"))
	bad := strings.Replace(string(doc), `<realmCode code="FR"></realmCode>`, "", 1)
	os.WriteFile(filepath.Join(dir, "bad.xml"), []byte(bad), 0o644)
	code, out, _ := runCLI(t, "", "cda", "validate", filepath.Join(dir, "bad.xml"))
	if code != 1 || !strings.Contains(out, "HDR-REALM") {
		t.Fatalf("bad document: %d %s", code, out)
	}
	code, _, _ = runCLI(t, "", "cda", "validate", filepath.Join(dir, "in.json"))
	if code != 1 {
		t.Fatalf("not XML: %d", code)
	}
	if code, _, _ := runCLI(t, "", "cda", "example", "--kind", "x"); code != 2 {
		t.Fatalf("bad kind: %d", code)
	}
	if code, _, _ := runCLI(t, "", "cda"); code != 2 {
		t.Fatalf("no subcommand: %d", code)
	}
}
