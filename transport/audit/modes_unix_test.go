//go:build unix

package audit_test

import (
	"path/filepath"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/audit"
)

// Audit records name mailboxes and peers: the log and its rotated files are 0600 and its
// folder 0700 even under umask 0.
func TestAuditFileModes(t *testing.T) {
	testenv.Umask0(t)
	dir := filepath.Join(t.TempDir(), "audit")
	a, err := audit.Open(&audit.Options{Dir: dir, MaxBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // past MaxBytes: at least one rotation
		a.Log(&audit.Record{Event: audit.EventQueued, MsgID: "m1", From: "a@x.mssante.fr", Rcpts: []string{"b@y.mssante.fr"}})
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if n := testenv.PrivateModes(t, dir, nil); n < 2 {
		t.Errorf("%d files checked, want the log and a rotated file", n)
	}
}
