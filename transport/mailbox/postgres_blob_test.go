package mailbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// blobFiles lists the bodies under a blob folder, temporary files apart.
func blobFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			info, err := e.Info()
			if err != nil {
				return err
			}
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", p, info.Mode().Perm())
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPostgresBlobsDir: with Options.Blobs a folder, a body is a 0600 file and not a row's
// bytea, a copy shares it, it outlives the expunge of one copy, and Purge removes it once
// no message names it and it is older than the grace; a failed delivery (over quota) leaves
// an orphan that the same sweep removes, and a young orphan is kept.
func TestPostgresBlobsDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	s := openPostgresTest(t, newDatabase(t), &Options{Blobs: "dir:" + dir})
	if err := s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: PER, QuotaBytes: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "a@h.fr", "Archive"); err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: x\r\n\r\nbody\r\n")
	res, err := s.Append(ctx, "a@h.fr", Inbox, bytes.NewReader(msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	var inRow int
	if err := s.pool.QueryRow(ctx, `SELECT length(body) FROM mailbox_message WHERE mailbox = $1 AND uid = $2`, res.Mailbox, res.UID).Scan(&inRow); err != nil || inRow != 0 {
		t.Fatalf("body in the row: %d bytes, %v", inRow, err)
	}
	if f := blobFiles(t, dir); len(f) != 1 {
		t.Fatalf("blob files %v, want 1", f)
	}
	cp, err := s.Copy(ctx, res.Mailbox, []uint32{res.UID}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	if f := blobFiles(t, dir); len(f) != 1 {
		t.Fatalf("after copy, blob files %v, want 1 shared", f)
	}
	expunge(t, s, res.Mailbox, res.UID)
	later := time.Now().Add(2 * blobGrace)
	if _, err := s.Purge(ctx, later); err != nil {
		t.Fatal(err)
	}
	arch, err := s.Mailbox(ctx, "a@h.fr", "Archive")
	if err != nil {
		t.Fatal(err)
	}
	r, n, err := s.Open(ctx, arch.ID, cp.DestUIDs[0])
	if err != nil {
		t.Fatalf("copy after the original's expunge and a sweep: %v", err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if n != int64(len(msg)) || !bytes.Equal(got, msg) {
		t.Fatalf("copy reads %q (%d)", got, n)
	}

	// A delivery refused over quota wrote its body first: an orphan, young then old.
	if _, err := s.Append(ctx, "a@h.fr", Inbox, bytes.NewReader(bytes.Repeat([]byte("x"), 2000)), nil); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if f := blobFiles(t, dir); len(f) != 2 {
		t.Fatalf("blob files %v, want the copy's and the orphan", f)
	}
	if _, err := s.Purge(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if f := blobFiles(t, dir); len(f) != 2 {
		t.Fatalf("young orphan swept: %v", f)
	}
	expunge(t, s, arch.ID, cp.DestUIDs[0])
	if n, err := s.sweepBlobs(ctx, later); err != nil || n != 2 {
		t.Fatalf("sweep removed %d, %v; want the orphan and the expunged copy's body", n, err)
	}
	if f := blobFiles(t, dir); len(f) != 0 {
		t.Fatalf("blob files left %v", f)
	}
}

// TestPostgresBlobsRefusals: Blobs names "postgres", "dir:" and an absolute folder, nothing
// else; a message whose body is in a folder cannot be read by a store opened without it.
func TestPostgresBlobsRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := newDatabase(t)
	for _, b := range []string{"dir:relative/path", "dir:", "s3://bucket", "file:/x"} {
		if _, err := OpenPostgres(ctx, dsn, &Options{Blobs: b}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Blobs %q: %v, want ErrInvalid", b, err)
		}
	}
	if _, err := dirBlobs(t.TempDir()).open(ctx, "../etc/passwd"); !errors.Is(err, ErrInvalid) {
		t.Errorf("name out of the folder: %v", err)
	}
	s := openPostgresTest(t, dsn, &Options{Blobs: "dir:" + t.TempDir()})
	if err := s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: PER}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader("Subject: x\r\n\r\nb\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := openPostgresTest(t, dsn, &Options{Blobs: "postgres"})
	if _, _, err := plain.Open(ctx, res.Mailbox, res.UID); err == nil || errors.Is(err, ErrNoMessage) {
		t.Errorf("Open without the blob folder: %v", err)
	}
	err = plain.Read(ctx, res.Mailbox, []uint32{res.UID}, func(uint32, io.ReaderAt, int64) error { return nil })
	if err == nil {
		t.Error("Read without the blob folder succeeded")
	}
}

func expunge(t *testing.T, s Store, mbox MailboxID, uid uint32) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.StoreFlags(ctx, mbox, []uint32{uid}, FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if gone, err := s.Expunge(ctx, mbox, []uint32{uid}); err != nil || len(gone) != 1 {
		t.Fatalf("expunge: %v, %v", gone, err)
	}
}

// TestPostgresBlobsTwoNodes: two nodes on one database and one blob folder: a message
// delivered by one is read whole by the other, through Open and Read.
func TestPostgresBlobsTwoNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, dir := newDatabase(t), "dir:"+t.TempDir()
	a := openPostgresTest(t, dsn, &Options{Blobs: dir})
	b := openPostgresTest(t, dsn, &Options{Blobs: dir})
	if err := a.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: PER}); err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("0123456789abcdef\r\n"), 2000)
	msg = append([]byte("Subject: x\r\n\r\n"), msg...)
	res, err := a.Append(ctx, "a@h.fr", Inbox, bytes.NewReader(msg), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, n, err := b.Open(ctx, res.Mailbox, res.UID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if n != int64(len(msg)) || !bytes.Equal(got, msg) {
		t.Fatalf("Open on the other node: %d bytes", len(got))
	}
	var read int
	err = b.Read(ctx, res.Mailbox, []uint32{res.UID}, func(uid uint32, r io.ReaderAt, size int64) error {
		buf := make([]byte, size)
		if _, err := r.ReadAt(buf, 0); err != nil {
			return err
		}
		if !bytes.Equal(buf, msg) {
			t.Error("Read on the other node: body differs")
		}
		read++
		return nil
	})
	if err != nil || read != 1 {
		t.Fatalf("Read on the other node: %d, %v", read, err)
	}
}
