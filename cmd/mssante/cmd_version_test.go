package main

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The documented build (docs/operator-guide.md) gives one static binary that tells which
// revision it was built from, in text and in JSON, by "version" and by "--version".
func TestVersionOfDocumentedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mssante")
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the documented build is dynamically linked (it has a program interpreter)")
		}
	}
	f.Close()

	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatalf("version --json: %v", err)
	}
	var v versionInfo
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("version --json printed %q: %v", out, err)
	}
	if v.CGO || v.Go == "" || v.Version == "" || v.Version == "unknown" {
		t.Errorf("version --json = %+v", v)
	}
	// In a clone (.git a directory), the toolchain stamps the revision; a linked work tree
	// (.git a file) gets no VCS stamp from go build here, so only a clone is compared.
	if fi, err := os.Stat("../../.git"); err != nil || !fi.IsDir() {
		t.Logf("not a clone: revision %q not compared with HEAD", v.Revision)
	} else if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if want := strings.TrimSpace(string(head)); v.Revision != want {
			t.Errorf("revision = %q, want the checkout's HEAD %q", v.Revision, want)
		}
	}
	text, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if got := strings.TrimSpace(string(text)); got != v.String() || !strings.HasPrefix(got, "mssante ") || !strings.HasSuffix(got, " static") {
		t.Errorf("--version = %q, want %q", got, v.String())
	}
	if code, _, _ := runCmd(t, "version", "extra"); code != 2 {
		t.Errorf("version with an argument: exit %d, want 2", code)
	}
}
