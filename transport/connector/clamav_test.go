package connector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/antivirus"
)

// TestRelayScanner runs a real clamd behind the relay listener: 554 5.7.1 for the infected
// message, audited; 451 4.7.1 when clamd is not there.
func TestRelayScanner(t *testing.T) {
	cd := peers.StartClamd(t)
	clam, evil := &antivirus.ClamAV{Network: "unix", Addr: cd.Socket}, cd.Malware
	p := testPKI(t)
	a := newNode(t, "a.mssante.test", &nodeOpts{noRun: true})
	b := newNode(t, "b.mssante.test", &nodeOpts{noRun: true, scanner: clam})
	trust(a, b)
	c, _ := dialSMTP(t, b.relayAddr, clientTLS(a.server, p))
	if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, peers.MIMEWith(evil), nil, nil); got != "554 5.7.1" {
		t.Fatalf("infected via relay: %s", got)
	}
	if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, peers.MIMEWith([]byte("clean\n")), nil, nil); got != "ok" {
		t.Fatalf("clean via relay: %s", got)
	}
	down := newNode(t, "b.mssante.test", &nodeOpts{noRun: true, scanner: &antivirus.ClamAV{Network: "unix", Addr: filepath.Join(t.TempDir(), "none.sock")}})
	trust(a, down)
	c, _ = dialSMTP(t, down.relayAddr, clientTLS(a.server, p))
	if got := send(c, "x@a.mssante.test", []string{"dr@b.mssante.test"}, peers.MIMEWith([]byte("clean\n")), nil, nil); got != "451 4.7.1" {
		t.Fatalf("scanner down: %s", got)
	}
	b.audit.Close()
	log, _ := os.ReadFile(filepath.Join(b.auditDir, "audit.jsonl"))
	if !strings.Contains(string(log), `"code":"554 5.7.1","reason":"virus: MSSante.Test.Malware`) {
		t.Fatalf("audit:\n%s", log)
	}
}
