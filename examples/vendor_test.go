package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
)

// maxSetup is the most lines a vendor writes between the start of main and the first Send.
const maxSetup = 40

// testdata/vendor is a vendor's program in a module of its own that requires the SDK (a
// replace to this checkout): built as a vendor builds it, offline from the module cache, it
// sends a lettre de liaison to the practice's software on a sandbox and prints the final
// receipt, "processed", in under maxSetup lines of set-up.
func TestVendorModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module and starts a trust space")
	}
	goBin := testenv.Require(t, "go")
	src, err := os.ReadFile("testdata/vendor/main.go")
	if err != nil {
		t.Fatal(err)
	}
	n := setupLines(t, src)
	if n >= maxSetup {
		t.Errorf("set-up before the first Send: %d lines, want under %d", n, maxSetup)
	}
	t.Logf("set-up before the first Send: %d lines", n)

	// The module, with its replace pointing at this checkout and the SDK's go.sum, so that
	// every dependency comes from the module cache.
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mod := t.TempDir()
	gomod, err := os.ReadFile("testdata/vendor/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	gomod = bytes.Replace(gomod, []byte("=> ../../.."), []byte("=> "+root), 1)
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"go.mod": gomod, "go.sum": sum, "main.go": src} {
		if err := os.WriteFile(filepath.Join(mod, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goBin, "build", "-o", "dpi", ".")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOSUMDB=off", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build of the vendor module: %v\n%s", err, out)
	}

	dir := t.TempDir()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	// The practice's software integrates what it receives.
	to := "logiciel@" + sandbox.Cabinet
	o, err := bal.OptionsFromSandbox(dir, to)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.PollInterval, o.NIL = t.TempDir(), 2*time.Second, "DEV000000"
	recv, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- recv.Watch(rctx, func(context.Context, *bal.Incoming) error { return nil }, nil) }()
	defer func() { rstop(); <-done }()

	run := exec.CommandContext(ctx, filepath.Join(mod, "dpi"), dir)
	run.Dir = mod
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the vendor's program: %v\n%s", err, out)
	}
	if want := to + ": processed"; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	t.Logf("the vendor's program printed:\n%s", out)
}

// setupLines counts the lines, blank ones aside, from the start of main to its first Send.
func setupLines(t *testing.T, src []byte) int {
	t.Helper()
	n, in := 0, false
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "func main() {":
			in = true
		case !in || line == "":
		case strings.Contains(line, ".Send("):
			return n + 1
		default:
			n++
		}
	}
	t.Fatal("no Send in main")
	return 0
}
