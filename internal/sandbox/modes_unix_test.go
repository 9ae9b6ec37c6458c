//go:build unix

package sandbox_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
)

// "mssante dev" writes private keys, passwords, mailbox stores, spools and audit logs: all
// 0600 in 0700 folders even under umask 0; only public documents (certificates, the liste
// blanche and its HTTP validators) may be readable by others.
func TestStateFileModes(t *testing.T) {
	testenv.Umask0(t)
	dir := filepath.Join(t.TempDir(), "dev")
	s, err := sandbox.Start(context.Background(), &sandbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	keys := 0
	testenv.PrivateModes(t, dir, func(p string) bool {
		if strings.HasSuffix(p, ".key.pem") {
			keys++
		}
		b := filepath.Base(p)
		return strings.HasSuffix(b, ".crt.pem") || b == "ca-chain.pem" || strings.HasPrefix(b, "whitelist-cache.xml")
	})
	if keys == 0 {
		t.Error("no private key checked")
	}
}
