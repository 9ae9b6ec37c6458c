package mailbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// blobStore keeps message bodies outside the database, each under a name its message rows
// hold. put is durable when it returns, and the row naming the body commits after it; a
// body never changes, copies of a message share it, and it is removed only by the sweep,
// once no row names it. An S3-compatible bucket fits the same four calls (PUT, GET with a
// range, DELETE, LIST with the objects' dates).
type blobStore interface {
	put(ctx context.Context, name string, body []byte) error
	open(ctx context.Context, name string) (blob, error)
	remove(ctx context.Context, name string) error
	list(ctx context.Context, fn func(name string, mod time.Time) error) error
}

// blob is one body read from a blob store.
type blob interface {
	io.ReaderAt
	io.ReadSeekCloser
}

// blobGrace is how old an unnamed body must be before the sweep removes it: younger, its
// delivery may not have committed yet.
const blobGrace = time.Hour

// blobPrefix is the form of Options.Blobs naming a folder.
const blobPrefix = "dir:"

// openBlobs returns the blob store Options.Blobs names, nil for bodies in the database.
func openBlobs(spec string) (blobStore, error) {
	switch {
	case spec == "" || spec == "postgres":
		return nil, nil
	case strings.HasPrefix(spec, blobPrefix) && filepath.IsAbs(spec[len(blobPrefix):]):
		root := filepath.Clean(spec[len(blobPrefix):])
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("mailbox: blobs: %w", err)
		}
		return dirBlobs(root), nil
	default:
		return nil, fmt.Errorf("%w: Blobs %q: want \"postgres\" or \"dir:\" and an absolute path", ErrInvalid, spec)
	}
}

// dirBlobs keeps each body in a file of a folder shared by the nodes (NFS or the like):
// name "ab/cdef…" is the file ab/cdef… under the folder. A file is written under a
// temporary name, fsynced, renamed and its folder fsynced before put returns.
type dirBlobs string

const blobTmp = ".tmp-"

func (d dirBlobs) path(name string) (string, error) {
	if name == "" || !filepath.IsLocal(name) || strings.Contains(filepath.Base(name), blobTmp) {
		return "", fmt.Errorf("%w: blob name %q", ErrInvalid, name)
	}
	return filepath.Join(string(d), filepath.FromSlash(name)), nil
}

func (d dirBlobs) put(_ context.Context, name string, body []byte) error {
	dst, err := d.path(name)
	if err != nil {
		return err
	}
	sub := filepath.Dir(dst)
	if _, err := os.Stat(sub); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(sub, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mailbox: blobs: %w", err)
		}
		if err := syncDir(string(d)); err != nil {
			return err
		}
	}
	f, err := os.CreateTemp(sub, blobTmp)
	if err != nil {
		return fmt.Errorf("mailbox: blobs: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mailbox: blobs: %w", err)
	}
	return syncDir(sub)
}

func (d dirBlobs) open(_ context.Context, name string) (blob, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("mailbox: blobs: %w", err)
	}
	return f, nil
}

func (d dirBlobs) remove(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mailbox: blobs: %w", err)
	}
	return nil
}

// list walks the files, temporary ones included (under their own names, which remove
// refuses: the sweep removes those itself).
func (d dirBlobs) list(ctx context.Context, fn func(name string, mod time.Time) error) error {
	return filepath.WalkDir(string(d), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("mailbox: blobs: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		if strings.HasPrefix(e.Name(), blobTmp) {
			if time.Since(info.ModTime()) > blobGrace {
				os.Remove(p)
			}
			return nil
		}
		rel, err := filepath.Rel(string(d), p)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel), info.ModTime())
	})
}

// sweepBlobs removes the bodies older than blobGrace that no message row names: those of
// messages expunged, purged or whose BAL was removed, and those of deliveries that did not
// commit (a crash between the body's put and the commit). It returns how many it removed.
func (s *Postgres) sweepBlobs(ctx context.Context, now time.Time) (int, error) {
	if s.blobs == nil {
		return 0, nil
	}
	var old []string
	err := s.blobs.list(ctx, func(name string, mod time.Time) error {
		if now.Sub(mod) > blobGrace {
			old = append(old, name)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	removed := 0
	for len(old) > 0 {
		batch := old[:min(len(old), 1000)]
		old = old[len(batch):]
		named := map[string]bool{}
		rows, err := s.pool.Query(ctx, `SELECT DISTINCT blob FROM mailbox_message WHERE blob = ANY($1)`, batch)
		if err != nil {
			return removed, fmt.Errorf("mailbox: %w", err)
		}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return removed, fmt.Errorf("mailbox: %w", err)
			}
			named[n] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return removed, fmt.Errorf("mailbox: %w", err)
		}
		for _, n := range batch {
			if !named[n] {
				if err := s.blobs.remove(ctx, n); err != nil {
					return removed, err
				}
				removed++
			}
		}
	}
	return removed, nil
}
