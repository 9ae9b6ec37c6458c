package docs

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
)

// shippedUnit is the systemd unit the operator guide installs.
const shippedUnit = "../contrib/systemd/mssante.service"

// maxExposure is the highest "systemd-analyze security" exposure the shipped unit may have
// (systemd 252 of Debian 12 rates it 1.4 OK; the unit of the guide before it was 8.6 EXPOSED).
const maxExposure = 2.0

// unitForAnalysis writes the shipped unit into a temporary folder with its binary path
// pointing at an executable there, since verify checks that ExecStart= names one.
func unitForAnalysis(t *testing.T) string {
	t.Helper()
	unit, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mssante")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(unit), "/usr/local/bin/mssante ") != 3 {
		t.Fatal("the unit does not run /usr/local/bin/mssante in ExecStartPre, ExecStart and ExecReload")
	}
	p := filepath.Join(dir, "mssante.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/mssante ", bin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The shipped unit is what the operator guide promises: notify protocol, reload that reports
// its outcome, port 25 as the only privilege, a read-only system, private files.
func TestSystemdUnitSettings(t *testing.T) {
	b, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Type=notify\n", "ExecReload=/usr/local/bin/mssante reload --config /etc/mssante/serve.toml\n",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
		"ProtectSystem=strict\n", "ReadWritePaths=/var/spool/mssante /var/lib/mssante /var/log/mssante\n",
		"UMask=0077\n", "SystemCallFilter=@system-service\n", "NoNewPrivileges=yes\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	guide, _ := os.ReadFile("operator-guide.md")
	if !strings.Contains(string(guide), "contrib/systemd/mssante.service") {
		t.Error("the operator guide does not point at contrib/systemd/mssante.service")
	}
}

// systemd-analyze verify finds nothing to say about the shipped unit, and systemd-analyze
// security rates its exposure at most maxExposure.
func TestSystemdUnitAnalyze(t *testing.T) {
	sa := testenv.Require(t, "systemd-analyze")
	unit := unitForAnalysis(t)
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security: %s %s", m[1], m[2])
	if score > maxExposure {
		t.Errorf("exposure %s %s, want at most %.1f:\n%s", m[1], m[2], maxExposure, out)
	}
}
