package webhook

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The journal is one append-only file shared by the endpoints of a Dispatcher. Each record is
// framed as a 4-byte big-endian length, the CRC-32C of the payload (4 bytes, big-endian) and
// the payload, a JSON record. The file starts with journalMagic.
//
// Writes reach the file (the page cache) at once, so a killed process loses nothing it wrote;
// fsyncs are shared: a Publish waits until an fsync that began after its write has ended, and
// the Publishes waiting meanwhile are all covered by the next one (group commit).
const (
	journalName  = "journal"
	journalMagic = "MSWHJ01\n"
	// maxRecord bounds one record: a larger length is damage, not an event.
	maxRecord = 1 << 20
	frameHead = 8
)

// ErrJournal reports a journal that cannot be read back: damaged beyond a torn last record,
// or not a journal.
var ErrJournal = errors.New("webhook: damaged journal")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record operations.
const (
	opAdd   = "add"   // a new event for an endpoint (with its delivery state)
	opRetry = "retry" // an attempt failed: new attempt count and next time
	opDone  = "done"  // delivered or abandoned: the event leaves the queue
)

// record is one journal entry.
type record struct {
	Op  string `json:"op"`
	Seq uint64 `json:"seq"`
	// EP names the endpoint (endpoint.key) of an add.
	EP string `json:"ep,omitempty"`
	// Pending is the event of an add.
	Pending  *pending  `json:"p,omitempty"`
	Attempts int       `json:"attempts,omitempty"`
	Next     time.Time `json:"next,omitzero"`
}

// frame encodes r with its length and checksum.
func frame(r *record) ([]byte, error) {
	p, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(p) > maxRecord {
		return nil, fmt.Errorf("webhook: event of %d bytes, more than %d", len(p), maxRecord)
	}
	b := make([]byte, frameHead, frameHead+len(p))
	binary.BigEndian.PutUint32(b, uint32(len(p)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(p, castagnoli))
	return append(b, p...), nil
}

// readJournal calls fn for each record of r, which starts after the magic, and returns the
// length of the records read whole. A record cut short by the end of r is a write the
// process did not finish (it was killed): the error is nil and good excludes it. A damaged
// record before the end gives ErrJournal; good then ends before it.
func readJournal(r io.Reader, fn func(*record)) (good int64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var head [frameHead]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return good, nil
			}
			return good, fmt.Errorf("webhook: journal: %w", err)
		}
		n := binary.BigEndian.Uint32(head[:])
		if n == 0 || n > maxRecord {
			return good, fmt.Errorf("%w: record of %d bytes at offset %d", ErrJournal, n, good)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return good, nil
			}
			return good, fmt.Errorf("webhook: journal: %w", err)
		}
		if crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(head[4:]) {
			return good, fmt.Errorf("%w: checksum of the record at offset %d", ErrJournal, good)
		}
		var rec record
		if err := json.Unmarshal(buf, &rec); err != nil || !rec.valid() {
			return good, fmt.Errorf("%w: record at offset %d", ErrJournal, good)
		}
		fn(&rec)
		good += frameHead + int64(n)
	}
}

func (r *record) valid() bool {
	switch r.Op {
	case opAdd:
		return r.EP != "" && r.Pending != nil
	case opRetry, opDone:
		return true
	}
	return false
}

// journal appends records to the file and makes them durable in groups.
type journal struct {
	dir string

	mu   sync.Mutex
	cond *sync.Cond
	f    *os.File
	size int64 // bytes in the file
	// written counts the bytes ever appended (not reset by compaction); synced is the part of
	// it known durable. A record is durable once synced reaches the written count it got.
	written, synced int64
	syncing         bool
	syncs           int   // fsyncs run, for the tests of group commit
	err             error // sticky: after a failed write or fsync nothing is acknowledged
}

// append writes the frame and returns the count written has reached with it.
func (j *journal) append(b []byte) (int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return 0, j.err
	}
	if _, err := j.f.Write(b); err != nil {
		j.err = fmt.Errorf("webhook: journal: %w", err)
		return 0, j.err
	}
	j.size += int64(len(b))
	j.written += int64(len(b))
	return j.written, nil
}

// sync returns once the bytes up to mark are durable. One caller at a time runs fsync; those
// that arrive meanwhile wait for it and then share the next.
func (j *journal) sync(mark int64) error {
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
			j.err = fmt.Errorf("webhook: journal: %w", err)
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

// durable reports whether the bytes up to mark are on disk.
func (j *journal) durable(mark int64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.synced >= mark
}

// rewrite replaces the file by one holding recs only (the live events), durably: temporary
// file, fsync, rename, fsync of the folder. Everything appended before is then durable or
// dropped on purpose.
func (j *journal) rewrite(recs []*record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing {
		j.cond.Wait()
	}
	if j.err != nil {
		return j.err
	}
	var buf []byte
	buf = append(buf, journalMagic...)
	for _, r := range recs {
		b, err := frame(r)
		if err != nil {
			return err
		}
		buf = append(buf, b...)
	}
	path := filepath.Join(j.dir, journalName)
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("webhook: journal: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("webhook: journal: %w", err)
	}
	j.f.Close()
	j.f, j.size, j.synced = f, int64(len(buf)), j.written
	return nil
}

func (j *journal) close() error {
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
		j.err = errors.New("webhook: dispatcher closed")
	}
	return err
}

// openJournal reads the journal of dir, calling fn for each record, and opens it for
// appending. A record cut short at the end is dropped; a damaged file is copied aside
// (journal.damaged-UNIX) and cut before the damage, and the error says so after the records
// before it were read, so that the caller logs it and goes on.
func openJournal(dir string, now time.Time, fn func(*record)) (*journal, error) {
	path := filepath.Join(dir, journalName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("webhook: journal: %w", err)
	}
	j := &journal{dir: dir, f: f}
	j.cond = sync.NewCond(&j.mu)
	fail := func(err error) (*journal, error) {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("webhook: journal: %w", err))
	}
	var damage error
	size := int64(len(journalMagic))
	if st.Size() == 0 {
		if _, err := f.Write([]byte(journalMagic)); err != nil {
			return fail(fmt.Errorf("webhook: journal: %w", err))
		}
		if err := f.Sync(); err != nil {
			return fail(fmt.Errorf("webhook: journal: %w", err))
		}
		if err := syncDir(dir); err != nil {
			return fail(err)
		}
	} else {
		magic := make([]byte, len(journalMagic))
		if _, err := io.ReadFull(io.NewSectionReader(f, 0, st.Size()), magic); err != nil || string(magic) != journalMagic {
			return fail(fmt.Errorf("%w: %s is not a webhook journal", ErrJournal, path))
		}
		good, err := readJournal(io.NewSectionReader(f, size, st.Size()-size), fn)
		if err != nil && !errors.Is(err, ErrJournal) {
			return fail(err)
		}
		size += good
		if err != nil {
			damage = err
			if cerr := copyAside(path, fmt.Sprintf("%s.damaged-%d", path, now.Unix())); cerr != nil {
				return fail(fmt.Errorf("webhook: journal: setting the damaged journal aside: %w", cerr))
			}
		}
		if size < st.Size() {
			// A torn or damaged tail: appends must start at the last whole record.
			if err := f.Truncate(size); err != nil {
				return fail(fmt.Errorf("webhook: journal: %w", err))
			}
			if err := f.Sync(); err != nil {
				return fail(fmt.Errorf("webhook: journal: %w", err))
			}
		}
	}
	j.size = size
	return j, damage
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

func (j *journal) fileSize() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}
