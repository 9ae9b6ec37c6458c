package mailbox

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func (s *SQLite) blobPath(name string) string {
	return filepath.Join(s.dir, "blobs", filepath.FromSlash(name))
}

func newBlobName() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:2] + "/" + h[2:]
}

// maxIndexedHeader bounds the header block kept in the index for SEARCH and ENVELOPE.
const maxIndexedHeader = 64 << 10

// headerCapture keeps the start of a message until its header ends (or the bound is reached).
type headerCapture struct{ buf []byte }

func (h *headerCapture) Write(p []byte) (int, error) {
	if room := maxIndexedHeader - len(h.buf); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		h.buf = append(h.buf, p[:room]...)
	}
	return len(p), nil
}

// header returns the header block, blank line included, or nil when it does not end within
// the bound (the message is then read from its file).
func (h *headerCapture) header() []byte {
	if i := bytes.Index(h.buf, []byte("\r\n\r\n")); i >= 0 {
		return h.buf[:i+4]
	}
	if i := bytes.Index(h.buf, []byte("\n\n")); i >= 0 {
		return h.buf[:i+2]
	}
	return nil
}

// writeBlob streams r to a new message file, fsynced and in place, and returns its name and size.
func (s *SQLite) writeBlob(r io.Reader, max int64, hc *headerCapture) (string, int64, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "msg-")
	if err != nil {
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (string, int64, error) {
		f.Close()
		os.Remove(tmp)
		return "", 0, err
	}
	n, err := io.Copy(io.MultiWriter(f, hc), io.LimitReader(r, max+1))
	if err != nil {
		return fail(fmt.Errorf("mailbox: write message: %w", err))
	}
	if n > max {
		return fail(ErrTooBig)
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("mailbox: fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	name := newBlobName()
	dst := s.blobPath(name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		os.Remove(tmp)
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", 0, fmt.Errorf("mailbox: %w", err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		os.Remove(dst)
		return "", 0, err
	}
	return name, n, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mailbox: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("mailbox: fsync dir: %w", err)
	}
	return nil
}

func (s *SQLite) removeBlobs(names []string) {
	for _, n := range names {
		os.Remove(s.blobPath(n))
	}
}
