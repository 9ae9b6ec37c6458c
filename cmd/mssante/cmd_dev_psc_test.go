package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
)

// TestDevPSCBearerAsPrinted: mssante dev prints a command that gets a token from the sandbox's
// OpenID provider and reads a PER BAL with curl --oauth2-bearer; it works as printed. The
// same practitioner opens the ORG BAL they are a member of, and not another person's BAL.
func TestDevPSCBearerAsPrinted(t *testing.T) {
	testenv.Require(t, "curl")
	sh := testenv.Require(t, "sh")
	state := filepath.Join(t.TempDir(), "state")
	d := startDev(t, "--state", state)
	out := d.out.String()
	_, rest, ok := strings.Cut(out, "Read a PER BAL with a Pro Santé Connect token (XOAUTH2):\n")
	if !ok || !strings.Contains(out, "practitioner jean.dupont (national id 810000000001)") {
		t.Fatalf("no Pro Santé Connect section:\n%s", out)
	}
	line := strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0])
	res, err := exec.Command(sh, "-c", line).CombinedOutput()
	if err != nil || !strings.Contains(string(res), "* SEARCH") {
		t.Fatalf("printed command %q: %v\n%s", line, err, res)
	}
	info, err := sandbox.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	if p := info.PSC.Practitioners[0]; len(p.BALs) < 2 || info.BAL(p.BALs[1]).Type != "ORG" {
		t.Fatalf("practitioner holds %v, want a PER then an ORG BAL", p.BALs)
	}
	if res, err := exec.Command(sh, "-c", devPSCCommand(info, 0, 1)).CombinedOutput(); err != nil {
		t.Fatalf("member opening the ORG BAL: %v\n%s", err, res)
	}
	// selftest covers the token login.
	var o bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if code := run(ctx, []string{"selftest", "--dev", state, "--json"}, &env{stdout: &o, stderr: &o}); code != 0 ||
		!strings.Contains(o.String(), `"name":"Pro Santé Connect login","status":"ok"`) {
		t.Fatalf("selftest: exit %d\n%s", code, o.String())
	}
	// Practitioner 0's token naming practitioner 1's PER BAL: refused as a bad token.
	other := info.PSC.Practitioners[1].BALs[0]
	cmd := strings.Replace(devPSCCommand(info, 0, 0), "-u "+info.PSC.Practitioners[0].BALs[0]+":", "-u "+other+":", 1)
	cmd = strings.Replace(cmd, "imaps://localhost:"+portOfAddr(info.OperatorOf(info.PSC.Practitioners[0].BALs[0]).IMAPS),
		"imaps://localhost:"+portOfAddr(info.OperatorOf(other).IMAPS), 1)
	if res, err := exec.Command(sh, "-c", cmd).CombinedOutput(); err == nil || !strings.Contains(err.Error(), "exit status 67") {
		t.Fatalf("another person's BAL: %v\n%s", err, res)
	}
}

func portOfAddr(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
