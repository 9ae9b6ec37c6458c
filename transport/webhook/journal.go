package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mssante-go/sdk/internal/journal"
)

// The events of a Dispatcher live in one journal (internal/journal) shared by its endpoints:
// one JSON record per add, retry or done, replayed at start.
const (
	journalName  = "journal"
	journalMagic = "MSWHJ01\n"
)

// ErrJournal reports a journal that cannot be read back: damaged beyond a torn last record,
// or not a journal.
var ErrJournal = errors.New("webhook: damaged journal")

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
	b, err := journal.Frame(p)
	if err != nil {
		return nil, fmt.Errorf("webhook: event: %w", err)
	}
	return b, nil
}

// decode is the reader of one payload: a valid record or an error (damage).
func decode(fn func(*record)) func([]byte) error {
	return func(p []byte) error {
		var rec record
		if err := json.Unmarshal(p, &rec); err != nil || !rec.valid() {
			return errors.New("not a webhook record")
		}
		fn(&rec)
		return nil
	}
}

// journalErr wraps the damage journal reports in ErrJournal.
func journalErr(err error) error {
	if errors.Is(err, journal.ErrDamaged) {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	return err
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

// openJournal reads the journal of dir, calling fn for each record, and opens it for
// appending. A record cut short at the end is dropped; a damaged file is copied aside
// (journal.damaged-UNIX) and cut before the damage, and the error says so after the records
// before it were read, so that the caller logs it and goes on.
func openJournal(dir string, now time.Time, fn func(*record)) (*journal.Journal, error) {
	j, err := journal.Open(filepath.Join(dir, journalName), journalMagic, now, decode(fn))
	return j, journalErr(err)
}

// rewriteJournal replaces the journal's content by recs.
func rewriteJournal(j *journal.Journal, recs []*record) error {
	frames := make([][]byte, 0, len(recs))
	for _, r := range recs {
		b, err := frame(r)
		if err != nil {
			return err
		}
		frames = append(frames, b)
	}
	return j.Rewrite(frames)
}
