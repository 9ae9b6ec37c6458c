//go:build unix

package mailbox_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// The store holds password hashes (index) and messages (index headers, blobs): every file it
// creates is 0600 and every folder 0700 even under umask 0, the SQLite -wal and -shm files
// included, and an index left readable by others is narrowed when the store opens.
func TestStoreFileModes(t *testing.T) {
	testenv.Umask0(t)
	for _, legacy := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "store")
		if legacy {
			// An index and its -wal as an earlier version left them: 0644.
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"index.db", "index.db-wal"} {
				if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		checkStoreModes(t, dir)
	}
}

func checkStoreModes(t *testing.T, dir string) {
	ctx := context.Background()
	s, err := mailbox.OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AddBAL(ctx, &mailbox.BAL{Address: "a@h.mssante.fr", Type: mailbox.ORG}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "a@h.mssante.fr", "s3cret"); err != nil {
		t.Fatal(err)
	}
	msg := "From: <b@h.mssante.fr>\r\nSubject: x\r\nMessage-ID: <1@h>\r\n\r\nbody\r\n"
	if _, err := s.Append(ctx, "a@h.mssante.fr", mailbox.Inbox, strings.NewReader(msg), nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"index.db", "index.db-wal", "index.db-shm"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if n := testenv.PrivateModes(t, dir, nil); n < 4 {
		t.Errorf("%d files checked, want the index, its -wal and -shm and a message file", n)
	}
}
