// Package journal is an append-only file of checksummed records made durable in groups: the
// store under the webhook queue and the idempotency records of the HTTP API.
//
// Each record is framed as a 4-byte big-endian length, the CRC-32C of the payload (4 bytes,
// big-endian) and the payload. The file starts with a magic string naming its owner.
//
// Appends reach the file (the page cache) at once, so a killed process loses nothing it wrote;
// fsyncs are shared: Sync waits until an fsync that began after the append has ended, and the
// callers waiting meanwhile are all covered by the next one (group commit).
package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// MaxRecord bounds one payload: a larger length read back is damage, not a record.
const MaxRecord = 1 << 20

const frameHead = 8

// ErrDamaged reports a journal that cannot be read back: damaged beyond a torn last record,
// or not a journal of the expected kind.
var ErrDamaged = errors.New("journal: damaged")

// ErrTooLarge reports a payload longer than MaxRecord.
var ErrTooLarge = errors.New("journal: record too large")

// errClosed is the sticky error of a closed Journal.
var errClosed = errors.New("journal: closed")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame returns p with its length and checksum, ready for Append or Rewrite.
func Frame(p []byte) ([]byte, error) {
	if len(p) > MaxRecord {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(p), MaxRecord)
	}
	b := make([]byte, frameHead, frameHead+len(p))
	binary.BigEndian.PutUint32(b, uint32(len(p)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(p, castagnoli))
	return append(b, p...), nil
}

// Read calls fn with the payload of each record of r, which starts after the magic, and
// returns the length of the records read whole. The payload is only valid during the call. A
// record cut short by the end of r is a write the process did not finish (it was killed): the
// error is nil and good excludes it. A damaged record before the end, or one fn refuses (an
// error), gives ErrDamaged; good then ends before it.
func Read(r io.Reader, fn func(p []byte) error) (good int64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var head [frameHead]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return good, nil
			}
			return good, fmt.Errorf("journal: %w", err)
		}
		n := binary.BigEndian.Uint32(head[:])
		if n == 0 || n > MaxRecord {
			return good, fmt.Errorf("%w: record of %d bytes at offset %d", ErrDamaged, n, good)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return good, nil
			}
			return good, fmt.Errorf("journal: %w", err)
		}
		if crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(head[4:]) {
			return good, fmt.Errorf("%w: checksum of the record at offset %d", ErrDamaged, good)
		}
		if err := fn(buf); err != nil {
			return good, fmt.Errorf("%w: record at offset %d: %v", ErrDamaged, good, err)
		}
		good += frameHead + int64(n)
	}
}

// Journal appends records to one file and makes them durable in groups. It is safe for
// concurrent use.
type Journal struct {
	path, magic string

	mu   sync.Mutex
	cond *sync.Cond
	f    *os.File
	size int64 // bytes in the file
	// written counts the bytes ever appended (not reset by Rewrite); synced is the part of it
	// known durable. A record is durable once synced reaches the mark Append gave it.
	written, synced int64
	syncing         bool
	syncs           int   // fsyncs run
	err             error // sticky: after a failed write or fsync nothing is acknowledged
}

// Open reads the journal at path (created 0600 with magic when absent), calling fn for each
// record's payload, and opens it for appending. A record cut short at the end is dropped. A
// damaged file is copied aside (path.damaged-UNIX, from now) and cut before the damage: Open
// then returns the Journal and an error wrapping ErrDamaged, after the records before the
// damage were read, so that the caller logs it and goes on. A file that does not start with
// magic gives a nil Journal and ErrDamaged.
func Open(path, magic string, now time.Time, fn func(p []byte) error) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{path: path, magic: magic, f: f}
	j.cond = sync.NewCond(&j.mu)
	fail := func(err error) (*Journal, error) {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("journal: %w", err))
	}
	var damage error
	size := int64(len(magic))
	if st.Size() == 0 {
		if _, err := f.Write([]byte(magic)); err != nil {
			return fail(fmt.Errorf("journal: %w", err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("journal: %w", err))
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fail(err)
		}
	} else {
		head := make([]byte, len(magic))
		if _, err := io.ReadFull(io.NewSectionReader(f, 0, st.Size()), head); err != nil || string(head) != magic {
			return fail(fmt.Errorf("%w: %s is not a journal of this kind", ErrDamaged, path))
		}
		good, err := Read(io.NewSectionReader(f, size, st.Size()-size), fn)
		if err != nil && !errors.Is(err, ErrDamaged) {
			return fail(err)
		}
		size += good
		if err != nil {
			damage = err
			if cerr := copyAside(path, fmt.Sprintf("%s.damaged-%d", path, now.Unix())); cerr != nil {
				return fail(fmt.Errorf("journal: setting the damaged journal aside: %w", cerr))
			}
		}
		if size < st.Size() {
			// A torn or damaged tail: appends must start at the last whole record.
			if err := f.Truncate(size); err != nil {
				return fail(fmt.Errorf("journal: %w", err))
			}
			if err := f.Sync(); err != nil {
				return fail(fmt.Errorf("journal: %w", err))
			}
		}
	}
	j.size = size
	return j, damage
}

// Append writes a frame (from Frame) and returns the mark to give Sync or Durable.
func (j *Journal) Append(frame []byte) (int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return 0, j.err
	}
	if _, err := j.f.Write(frame); err != nil {
		j.err = fmt.Errorf("journal: %w", err)
		return 0, j.err
	}
	j.size += int64(len(frame))
	j.written += int64(len(frame))
	return j.written, nil
}

// Sync returns once the bytes up to mark are durable. One caller at a time runs fsync; those
// that arrive meanwhile wait for it and then share the next.
func (j *Journal) Sync(mark int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.synced < mark && j.err == nil {
		if j.syncing {
			j.cond.Wait()
			continue
		}
		j.syncing = true
		target, f := j.written, j.f
		j.mu.Unlock()
		err := f.Sync()
		j.mu.Lock()
		j.syncing = false
		j.syncs++
		if err != nil {
			j.err = fmt.Errorf("journal: %w", err)
		} else {
			j.synced = max(j.synced, target)
		}
		j.cond.Broadcast()
	}
	if j.synced >= mark {
		return nil
	}
	return j.err
}

// Durable reports whether the bytes up to mark are on disk.
func (j *Journal) Durable(mark int64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.synced >= mark
}

// Rewrite replaces the file by one holding frames only (the live records), durably: temporary
// file, fsync, rename, fsync of the folder. Everything appended before is then durable or
// dropped on purpose.
func (j *Journal) Rewrite(frames [][]byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing {
		j.cond.Wait()
	}
	if j.err != nil {
		return j.err
	}
	n := len(j.magic)
	for _, b := range frames {
		n += len(b)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, j.magic...)
	for _, b := range frames {
		buf = append(buf, b...)
	}
	tmp := j.path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(j.path))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("journal: %w", err)
	}
	j.f.Close()
	j.f, j.size, j.synced = f, int64(len(buf)), j.written
	return nil
}

// Size returns the length of the file.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// Syncs returns the number of fsyncs Sync ran, which shows group commit at work.
func (j *Journal) Syncs() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncs
}

// Close makes what was appended durable and closes the file; Append fails after it.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing {
		j.cond.Wait()
	}
	if j.f == nil {
		return nil
	}
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.f = nil
	if j.err == nil {
		j.err = errClosed
	}
	return err
}

func copyAside(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(to))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}
