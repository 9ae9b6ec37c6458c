package bal

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Status is where one recipient of a sent message stands.
type Status string

const (
	// StatusPending: not yet accepted by the submission server (never tried, or a
	// temporary refusal, or the connection broke before the end of DATA).
	StatusPending Status = "pending"
	// StatusSubmitted: accepted by the submission server; waiting for receipts.
	StatusSubmitted Status = "submitted"
	// StatusDelayed: a DSN said delivery is delayed (not final).
	StatusDelayed Status = "delayed"
	// StatusDelivered: a DSN said the message reached the recipient's BAL. Final when no
	// MDN was asked for.
	StatusDelivered Status = "delivered"
	// StatusFailed: refused for good (at submission or by a failure DSN). Final.
	StatusFailed Status = "failed"
	// StatusProcessed: the recipient's software integrated the message (MDN processed). Final.
	StatusProcessed Status = "processed"
	// StatusError: the recipient's software refused it (MDN processed/Error 90x). Final.
	StatusError Status = "error"
)

// rank orders the statuses: a receipt never moves a recipient backwards, which is how
// duplicates and out-of-order receipts are ignored.
func (s Status) rank() int {
	switch s {
	case StatusPending:
		return 0
	case StatusSubmitted:
		return 1
	case StatusDelayed:
		return 2
	case StatusDelivered:
		return 3
	case StatusFailed, StatusProcessed, StatusError:
		return 4
	}
	return -1
}

// Final reports whether s is a final status for a recipient of a message that asked (or
// not) for an MDN.
func (s Status) Final(mdnRequested bool) bool {
	switch s {
	case StatusFailed, StatusProcessed, StatusError:
		return true
	case StatusDelivered:
		return !mdnRequested
	}
	return false
}

// RecipientState is the outbox record of one recipient.
type RecipientState struct {
	Address string    `json:"address"`
	Status  Status    `json:"status"`
	Code    int       `json:"code,omitempty"` // SMTP reply code, or 900–906 for an MDN error
	Detail  string    `json:"detail,omitempty"`
	Updated time.Time `json:"updated"`
}

// Record is what the outbox keeps about one sent message.
type Record struct {
	MessageID    string           `json:"message_id"`
	EnvelopeID   string           `json:"envelope_id"`
	MDNRequested bool             `json:"mdn_requested"`
	Created      time.Time        `json:"created"`
	Recipients   []RecipientState `json:"recipients"`
}

func (r *Record) recipient(addr string) *RecipientState {
	for i := range r.Recipients {
		if strings.EqualFold(r.Recipients[i].Address, addr) {
			return &r.Recipients[i]
		}
	}
	return nil
}

// outbox is the folder StateDir/outbox: for each sent message, named by its envelope ID (a
// hash of the Message-ID), ENVID.eml (the exact bytes submitted) and ENVID.json (the
// Record). Records are replaced atomically (temporary file, rename); the statuses that
// follow a server's reply are also fsynced with the folder before Send returns, which is
// what makes a retry after a crash safe. Nothing before that needs to survive a crash: the
// caller sends the message again.
type outbox struct {
	dir string
	mu  sync.Mutex // serialises record read-modify-write
}

func openOutbox(stateDir string) (*outbox, error) {
	dir := filepath.Join(stateDir, "outbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bal: outbox: %w", err)
	}
	return &outbox{dir: dir}, nil
}

// envelopeID derives the ENVID (RFC 3461 §4.4) from the Message-ID: printable, short, and
// the outbox key that DSNs are matched back on.
func envelopeID(messageID string) string {
	h := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(h[:16])
}

func (b *outbox) path(envid, ext string) string { return filepath.Join(b.dir, envid+ext) }

func (b *outbox) load(envid string) (*Record, error) {
	data, err := os.ReadFile(b.path(envid, ".json"))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("bal: outbox record %s: %w", envid, err)
	}
	return &r, nil
}

// save replaces the record; durable also fsyncs it and the folder.
func (b *outbox) save(r *Record, durable bool) error {
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(b.path(r.EnvelopeID, ".json"), data, durable)
}

// update applies f to the record of envid under the lock and saves it, durably, when f
// returns true.
func (b *outbox) update(envid string, f func(*Record) bool) (*Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.load(envid)
	if err != nil {
		return nil, err
	}
	if !f(r) {
		return r, nil
	}
	return r, b.save(r, true)
}

// Records lists the outbox, oldest first.
func (b *outbox) records() ([]*Record, error) {
	ents, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		r, err := b.load(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// writeFileSync writes data to path atomically and durably.
func writeFileSync(path string, data []byte) error { return writeFileAtomic(path, data, true) }

// writeFileAtomic writes data to path atomically (temporary file, rename) and, when durable,
// fsyncs the file before the rename and the folder after.
func writeFileAtomic(path string, data []byte, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
