package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/internal/journal"
)

// idemRecord is what is kept of a request sent under an Idempotency-Key.
type idemRecord struct {
	Fingerprint string    `json:"fingerprint"`
	MessageID   string    `json:"message_id,omitempty"`
	Created     time.Time `json:"created"`
	// Status and Body are the answer, once given.
	Status int             `json:"status,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	Type   string          `json:"content_type,omitempty"`
}

// idemEntry is one journal record: the record of a key, replacing any before it. K is the
// hex SHA-256 of the BAL address and the key, so that neither is written as given.
type idemEntry struct {
	K string `json:"k"`
	idemRecord
}

const (
	idemJournal = "journal"
	idemMagic   = "MSIDJ01\n"
	// idemRetention is how long a key is remembered (the documented 7 days).
	idemRetention = 7 * 24 * time.Hour
	// idemCompactSize is the journal size below which it is never rewritten.
	idemCompactSize = 4 << 20
)

// idemStore keeps the records in memory and each change in one journal (internal/journal):
// an append per change, and an fsync, shared with the requests made meanwhile, only where a
// crash must not lose the record. Keys older than idemRetention are forgotten, and the journal
// is rewritten with the live records once it is twice their size.
type idemStore struct {
	now func() time.Time
	log *slog.Logger

	mu    sync.Mutex // guards recs, live, swept and the order of appends
	j     *journal.Journal
	recs  map[string]*idemSlot
	live  int64 // bytes of the live records' frames
	swept time.Time
}

type idemSlot struct {
	rec  idemRecord
	size int64
}

func idemID(addr, key string) string {
	sum := sha256.Sum256([]byte(addr + "\n" + key))
	return hex.EncodeToString(sum[:])
}

// openIdemStore replays the journal of dir, dropping the expired keys, and moves in the
// records of the earlier layout (one file per key). A damaged journal is logged and read up
// to the damage (journal.Open sets the file aside).
func openIdemStore(dir string, now func() time.Time, log *slog.Logger) (*idemStore, error) {
	s := &idemStore{now: now, log: log, recs: map[string]*idemSlot{}}
	j, err := journal.Open(filepath.Join(dir, idemJournal), idemMagic, now(), func(p []byte) error {
		e, err := decodeIdem(p)
		if err != nil {
			return err
		}
		if old := s.recs[e.K]; old != nil {
			s.live -= old.size
		}
		s.recs[e.K] = &idemSlot{rec: e.idemRecord, size: int64(len(p)) + 8}
		s.live += int64(len(p)) + 8
		return nil
	})
	if j == nil {
		return nil, fmt.Errorf("httpapi: idempotency records: %w", err)
	}
	if err != nil {
		log.Error("httpapi: damaged idempotency journal set aside, the records after the damage are lost", "err", err)
	}
	s.j = j
	s.mu.Lock()
	s.sweep()
	s.mu.Unlock()
	if err := s.importFiles(dir); err != nil {
		j.Close()
		return nil, err
	}
	return s, nil
}

// decodeIdem reads one journal record back.
func decodeIdem(p []byte) (*idemEntry, error) {
	var e idemEntry
	if err := json.Unmarshal(p, &e); err != nil || len(e.K) != sha256.Size*2 || e.Fingerprint == "" {
		return nil, errors.New("not an idempotency record")
	}
	return &e, nil
}

// importFiles moves the records of the earlier layout (HASH.json, the same hash as K) into
// the journal, durably, then removes the files.
func (s *idemStore) importFiles(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return err
	}
	var mark int64
	var done []string
	for _, f := range files {
		var r idemRecord
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		k := strings.TrimSuffix(filepath.Base(f), ".json")
		if err != nil || len(k) != sha256.Size*2 {
			s.log.Error("httpapi: unreadable idempotency record, set aside", "file", f, "err", err)
			os.Rename(f, f+".bad")
			continue
		}
		if s.now().Sub(r.Created) > idemRetention {
			done = append(done, f)
			continue
		}
		if mark, err = s.append(k, &r); err != nil {
			return err
		}
		done = append(done, f)
	}
	if err := s.j.Sync(mark); err != nil {
		return fmt.Errorf("httpapi: idempotency records: %w", err)
	}
	for _, f := range done {
		os.Remove(f)
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, f := range tmps {
		os.Remove(f)
	}
	return nil
}

// get returns a copy of the record of key, nil when there is none or it expired.
func (s *idemStore) get(addr, key string) (*idemRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.recs[idemID(addr, key)]
	if sl == nil || s.now().Sub(sl.rec.Created) > idemRetention {
		return nil, nil
	}
	r := sl.rec
	return &r, nil
}

// put records r for key; when durable is set it returns once the record is on disk. The
// record that names the Message-ID before submission must survive a crash; the answer after
// it need not: lost, the request sent again submits the same Message-ID, which bal's outbox
// recognises (already_sent), and so never sends twice. A raw message has its Message-ID in
// its bytes, or bal derives one from them, so its record is never made durable here.
func (s *idemStore) put(addr, key string, r *idemRecord, durable bool) error {
	s.mu.Lock()
	mark, err := s.append(idemID(addr, key), r)
	if err == nil {
		err = s.compact()
	}
	s.mu.Unlock()
	if err == nil && durable {
		err = s.j.Sync(mark)
	}
	if err != nil {
		return fmt.Errorf("httpapi: idempotency records: %w", err)
	}
	return nil
}

// append journals the record of k and makes it the current one; the caller holds s.mu or has
// the store to itself.
func (s *idemStore) append(k string, r *idemRecord) (int64, error) {
	p, err := json.Marshal(&idemEntry{K: k, idemRecord: *r})
	if err != nil {
		return 0, err
	}
	b, err := journal.Frame(p)
	if err != nil {
		return 0, err
	}
	mark, err := s.j.Append(b)
	if err != nil {
		return 0, err
	}
	if old := s.recs[k]; old != nil {
		s.live -= old.size
	}
	s.recs[k] = &idemSlot{rec: *r, size: int64(len(b))}
	s.live += int64(len(b))
	return mark, nil
}

// sweep forgets the expired keys, at most once a minute; the caller holds s.mu.
func (s *idemStore) sweep() {
	now := s.now()
	if d := now.Sub(s.swept); d >= 0 && d < time.Minute {
		return
	}
	s.swept = now
	for k, sl := range s.recs {
		if now.Sub(sl.rec.Created) > idemRetention {
			s.live -= sl.size
			delete(s.recs, k)
		}
	}
}

// compact rewrites the journal with the live records once it is past idemCompactSize and
// twice their size; the caller holds s.mu.
func (s *idemStore) compact() error {
	s.sweep()
	size := s.j.Size()
	if size < idemCompactSize || size < 2*s.live {
		return nil
	}
	frames := make([][]byte, 0, len(s.recs))
	for k, sl := range s.recs {
		p, err := json.Marshal(&idemEntry{K: k, idemRecord: sl.rec})
		if err != nil {
			return err
		}
		b, err := journal.Frame(p)
		if err != nil {
			return err
		}
		frames = append(frames, b)
	}
	return s.j.Rewrite(frames)
}

// writeDurable writes path atomically (temporary file, rename) and durably (fsyncs of the file
// and the folder).
func writeDurable(dir, path string, b []byte) error {
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("httpapi: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("httpapi: %w", err)
	}
	return nil
}
