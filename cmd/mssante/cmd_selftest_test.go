package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
)

// selftest reports failures: a trust space that is down fails both checks (exit 1), a BAL that
// is not one of the trust space is a usage error (exit 2), and no trust space at all an error.
func TestSelftestFailures(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	sb.Close() // down: nothing answers any more

	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb}
	if code := run(ctx, []string{"selftest", "--state", dir, "--timeout", "2s"}, e); code != 1 {
		t.Fatalf("trust space down: exit %d\n%s", code, out.String())
	}
	if strings.Count(out.String(), "FAIL") != 2 || !strings.Contains(out.String(), "the liste blanche does not list example.com") {
		t.Fatalf("want the two network checks failed and the whitelist check ok:\n%s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"selftest", "--state", dir, "--bal", "nobody@" + sandbox.Hopital}, e); code != 2 {
		t.Fatalf("unknown BAL: exit %d", code)
	}
	if code := run(ctx, []string{"selftest", "--state", t.TempDir()}, e); code != 1 || !strings.Contains(errb.String(), "mssante dev") {
		t.Fatalf("no trust space: exit %d, %s", code, errb.String())
	}
}
