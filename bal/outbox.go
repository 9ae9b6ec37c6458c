package bal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/mssante"
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
	// StatusDisplayed: a person's mail client showed the message (MDN displayed, a read
	// receipt, as Thunderbird sends): read, but not integrated by software. Final.
	StatusDisplayed Status = "displayed"
	// StatusError: the recipient's side refused it (MDN processed/Error 90x), or answered with
	// a negative MDN (deleted, denied, failed; Detail names it). Final.
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
	case StatusFailed, StatusProcessed, StatusDisplayed, StatusError:
		return 4
	}
	return -1
}

// Final reports whether s is a final status for a recipient of a message that asked (or
// not) for an MDN.
func (s Status) Final(mdnRequested bool) bool {
	switch s {
	case StatusFailed, StatusProcessed, StatusDisplayed, StatusError:
		return true
	case StatusDelivered:
		return !mdnRequested
	}
	return false
}

// RecipientState is the outbox record of one recipient.
type RecipientState struct {
	Address string `json:"address"`
	Status  Status `json:"status"`
	// Code is the SMTP reply code of the latest status change: the submission server's
	// reply, then the one a DSN reports in its Diagnostic-Code; 0 when the DSN gives none
	// (a delivery DSN usually does not) and after an MDN.
	Code int `json:"code,omitempty"`
	// MDNCode is the MSSanté integration error code (900–906) of an MDN or error mail that
	// refused the message; 0 otherwise.
	MDNCode mssante.MDNCode `json:"mdn_code,omitempty"`
	Detail  string          `json:"detail,omitempty"`
	Updated time.Time       `json:"updated"`
}

// UnmarshalJSON reads a recipient's record, including one written before MDNCode existed,
// when Code held the integration error code of a StatusError.
func (s *RecipientState) UnmarshalJSON(b []byte) error {
	type plain RecipientState
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	if s.MDNCode == 0 && s.Status == StatusError && s.Code >= 900 && s.Code <= 999 {
		s.MDNCode, s.Code = mssante.MDNCode(s.Code), 0
	}
	return nil
}

// Record is what the outbox keeps about one sent message.
type Record struct {
	// Version grows with every save; the newest copy wins.
	Version      int              `json:"version"`
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
// hash of the Message-ID), ENVID.eml (the bytes submitted, for large messages) and
// ENVID.json (the Record). A change that must survive a crash (the statuses that follow a
// server's reply, receipts) is appended to journal.log and fsynced before Send returns: one
// append and one fsync, which is what makes a retry after a crash safe. One Client per state
// folder.
//
// Folding: the journal of the last run is folded into the ENVID.json files in the background
// once the outbox is opened (rotated to journal.old.log first); Close only waits for that
// fold and fsyncs the journal. The files are all written first (temporary file, rename),
// then made durable (syncFolded: an fsync of each, then one of the folder), and only then is
// the journal emptied: a crash at any point leaves either the journal or durable files
// holding every record, and replay takes the highest Version. When the journal passes
// maxJournal, sync rotates it (journal.log becomes journal.old.log, fsynced, with a folder
// fsync for the rename) and folds the rotated segment in the background: a Send never does
// the fold itself.
//
// Group commit: a change is appended under mu, then made durable by sync outside mu, so
// that while one fsync runs other changes are appended (and the next message is sent); one
// fsync then covers all the lines written before it started. Invariant: a caller is told a
// change is durable (sync returns nil) only once an fsync that started after its line was
// written has completed. A crash before that loses at most changes nobody was told about:
// a message accepted by the server whose record was lost is pending again, and sending it
// again gives it to the server a second time with the same Message-ID and ENVID — the
// window is that of one fsync after the server's reply, as it was with one fsync per Send.
type outbox struct {
	dir     string
	mu      sync.Mutex // serialises record read-modify-write and the journal appends
	journal *os.File
	size    int64
	latest  map[string]*Record // journaled records newer than their ENVID.json
	old     map[string]*Record // records of journal.old.log, being folded (under mu)
	written int64              // journal lines appended since the outbox was opened

	syncMu  sync.Mutex    // one fsync at a time; taken before mu, never after
	synced  int64         // lines known durable
	folding chan struct{} // closed when the background fold ends (under syncMu)

	maxJournal int64 // journal size that starts a background fold
	// hook, when set (tests), is told of every durability step ("fsync") and of the
	// fold's steps ("fold:written", "fold:sync", "fold:synced"); an error it returns fails
	// that step, as a crash there would stop it. It may be called from the background
	// fold, and from several of its goroutines at once.
	hook func(step string) error
}

const (
	journalName    = "journal.log"
	oldJournalName = "journal.old.log" // a rotated journal, being folded
	// defaultMaxJournal is the journal size above which it is rotated and folded.
	defaultMaxJournal = 16 << 20
)

func openOutbox(stateDir string) (*outbox, error) {
	return openOutboxHook(stateDir, nil)
}

func openOutboxHook(stateDir string, hook func(string) error) (*outbox, error) {
	dir := filepath.Join(stateDir, "outbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bal: outbox: %w", err)
	}
	b := &outbox{dir: dir, latest: map[string]*Record{}, maxJournal: defaultMaxJournal, hook: hook}
	// The rotated segment first: the lines of journal.log are newer.
	for _, name := range []string{oldJournalName, journalName} {
		if err := b.replay(name); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, oldJournalName)); err == nil || len(b.latest) == 0 {
		// A fold cut short by a crash (both segments folded now), or nothing to fold (which
		// costs one folder fsync).
		if err := b.fold(); err != nil {
			return nil, err
		}
		return b, nil
	}
	// The journal of the last run is folded in the background, as one grown too large.
	old, err := b.rotate()
	if err == nil {
		err = b.fsyncDir()
	}
	if err != nil {
		if b.journal != nil {
			b.journal.Close()
		}
		return nil, fmt.Errorf("bal: outbox journal: %w", err)
	}
	b.folding = make(chan struct{})
	go b.foldOld(old, b.folding)
	return b, nil
}

// replay reads a journal left by an earlier run into latest.
func (b *outbox) replay(name string) error {
	data, err := os.ReadFile(filepath.Join(b.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bal: outbox journal: %w", err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var r Record
		if len(line) == 0 || json.Unmarshal(line, &r) != nil || !validEnvelopeID(r.EnvelopeID) {
			continue // a torn last line: that change was not acknowledged
		}
		if cur := b.latest[r.EnvelopeID]; cur == nil || r.Version >= cur.Version {
			b.latest[r.EnvelopeID] = &r
		}
	}
	return nil
}

func (b *outbox) step(name string) error {
	if b.hook != nil {
		return b.hook(name)
	}
	return nil
}

func (b *outbox) fsync(f *os.File) error {
	if err := b.step("fsync"); err != nil {
		return err
	}
	return f.Sync()
}

func (b *outbox) fsyncDir() error {
	d, err := os.Open(b.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return b.fsync(d)
}

// foldRecords writes recs to their ENVID.json files (unless a file is newer), then makes
// them all durable at once.
func (b *outbox) foldRecords(recs map[string]*Record) error {
	// The folder, fsynced once the files are, for their renames.
	d, err := os.Open(b.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	var written []string
	for _, r := range recs {
		if snap, err := b.loadFile(r.EnvelopeID); err == nil && snap.Version > r.Version {
			continue
		}
		data, err := json.MarshalIndent(r, "", " ")
		if err != nil {
			return err
		}
		p := b.path(r.EnvelopeID, ".json")
		if err := writeFileAtomic(p, data, false); err != nil {
			return err
		}
		written = append(written, p)
	}
	if len(written) == 0 {
		return nil
	}
	if err := b.step("fold:written"); err != nil {
		return err
	}
	return b.syncFolded(d, written)
}

// foldSyncs bounds the fsyncs of a fold that run at once. Journaling file systems (ext4,
// XFS) commit the fsyncs that wait together in one journal transaction, so a fold of many
// records costs a few commits, not one per record, while flushing only the outbox's files:
// never the rest of the file system, which the embedding application shares.
const foldSyncs = 8

// syncFolded makes the folded record files durable: an fsync of each (after all were
// written, so that their writeback overlaps), then one of the folder for their renames. Each
// file is reopened for its fsync; Linux reports a writeback error that no one has seen yet
// to the next fsync of the file, even through a descriptor opened after the error.
func (b *outbox) syncFolded(dir *os.File, paths []string) error {
	if err := b.step("fold:sync"); err != nil {
		return err
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	next := make(chan string)
	for range min(foldSyncs, len(paths)) {
		wg.Go(func() {
			for p := range next {
				err := b.fsyncPath(p)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
				}
			}
		})
	}
	for _, p := range paths {
		next <- p
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return b.fsync(dir)
}

func (b *outbox) fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = b.fsync(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fold writes every journaled record (of both segments) to its file durably, then starts
// an empty journal (caller holds syncMu and mu, and no background fold runs).
func (b *outbox) fold() error {
	recs := b.latest
	if len(b.old) > 0 {
		recs = maps.Clone(b.old)
		maps.Copy(recs, b.latest)
	}
	if err := b.foldRecords(recs); err != nil {
		return fmt.Errorf("bal: outbox: %w", err)
	}
	if err := b.step("fold:synced"); err != nil {
		return fmt.Errorf("bal: outbox: %w", err)
	}
	if b.journal != nil {
		b.journal.Close()
		b.journal = nil
	}
	// No fsync of the truncation: were it lost, the journal would be replayed again over
	// files that already hold its records (the highest Version wins).
	f, err := os.OpenFile(filepath.Join(b.dir, journalName), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("bal: outbox journal: %w", err)
	}
	if err := os.Remove(filepath.Join(b.dir, oldJournalName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		f.Close()
		return fmt.Errorf("bal: outbox journal: %w", err)
	}
	b.journal, b.size, b.latest, b.old = f, 0, map[string]*Record{}, nil
	b.synced = b.written // every line is in a record file now
	// The journal's directory entry must be durable before a line in it is acknowledged.
	if err := b.fsyncDir(); err != nil {
		return fmt.Errorf("bal: outbox journal: %w", err)
	}
	return nil
}

// foldOld folds the rotated journal segment in the background, then removes it.
func (b *outbox) foldOld(old map[string]*Record, done chan struct{}) {
	defer close(done)
	err := b.foldRecords(old)
	if err == nil {
		err = b.step("fold:synced")
	}
	if err != nil {
		// journal.old.log stays: close (or the next open) folds it.
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Were the removal lost in a crash, the segment would be replayed over files that
	// already hold its records.
	if os.Remove(filepath.Join(b.dir, oldJournalName)) == nil {
		b.old = nil
	}
}

// close waits for a background fold, then fsyncs the journal and closes it: its cost does
// not grow with the number of records journaled.
func (b *outbox) close() error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	if b.folding != nil {
		<-b.folding
		b.folding = nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.journal == nil {
		return nil
	}
	// No fold: the journal is durable, and the next open folds it in the background.
	err := b.fsync(b.journal)
	if cerr := b.journal.Close(); err == nil {
		err = cerr
	}
	b.journal = nil
	if err != nil {
		return fmt.Errorf("bal: outbox journal: %w", err)
	}
	return nil
}

// envelopeID derives the ENVID (RFC 3461 §4.4) from the Message-ID: printable, short, and
// the outbox key that DSNs are matched back on.
func envelopeID(messageID string) string {
	h := sha256.Sum256([]byte(messageID))
	return hex.EncodeToString(h[:16])
}

// validEnvelopeID reports whether s is an envelope ID this outbox made (32 hex digits): a
// name that cannot leave the folder.
func validEnvelopeID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (b *outbox) path(envid, ext string) string { return filepath.Join(b.dir, envid+ext) }

func (b *outbox) loadFile(envid string) (*Record, error) {
	if !validEnvelopeID(envid) {
		return nil, fs.ErrNotExist
	}
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

// load returns a copy of the newest record of envid (caller holds mu).
func (b *outbox) load(envid string) (*Record, error) {
	if r := b.latest[envid]; r != nil {
		return r.clone(), nil
	}
	if r := b.old[envid]; r != nil {
		return r.clone(), nil
	}
	return b.loadFile(envid)
}

// save replaces ENVID.json with r without fsync (caller holds mu): a record before the
// server's reply, which a crash may lose.
func (b *outbox) save(r *Record) error {
	r.Version++
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(b.path(r.EnvelopeID, ".json"), data, false)
}

// appendRecord appends r to the journal (caller holds mu) and returns the sequence number
// to give sync: r is durable once sync(seq) returns nil.
func (b *outbox) appendRecord(r *Record) (int64, error) {
	if b.journal == nil {
		return 0, errors.New("bal: outbox closed")
	}
	r.Version++
	line, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	line = append(line, '\n')
	if _, err := b.journal.Write(line); err != nil {
		return 0, err
	}
	b.latest[r.EnvelopeID] = r.clone()
	b.size += int64(len(line))
	b.written++
	return b.written, nil
}

// sync makes the journal durable up to line seq (caller does not hold mu): one fsync for
// every line written before it starts (group commit). A journal grown past maxJournal is
// rotated first and its segment folded in the background.
func (b *outbox) sync(seq int64) error {
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	if b.synced >= seq {
		return nil
	}
	b.mu.Lock()
	f, upto := b.journal, b.written
	var old map[string]*Record
	if f != nil && b.size > b.maxJournal && b.old == nil {
		var err error
		if old, err = b.rotate(); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	b.mu.Unlock()
	if f == nil {
		return errors.New("bal: outbox closed")
	}
	// Every line up to upto is in f, rotated or not.
	if err := b.fsync(f); err != nil {
		return err
	}
	if old != nil {
		f.Close()
		// The rename and the new journal.log are durable before any line of the new segment
		// is acknowledged (its lines are fsynced by a later sync, under syncMu, after this).
		if err := b.fsyncDir(); err != nil {
			return err
		}
		b.folding = make(chan struct{})
		go b.foldOld(old, b.folding)
	}
	b.synced = upto
	return nil
}

// rotate renames journal.log to journal.old.log and starts a new journal.log; the records
// journaled so far move to old (caller holds syncMu and mu). The caller fsyncs the old file.
func (b *outbox) rotate() (map[string]*Record, error) {
	cur, prev := filepath.Join(b.dir, journalName), filepath.Join(b.dir, oldJournalName)
	if err := os.Rename(cur, prev); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(cur, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		os.Rename(prev, cur)
		return nil, err
	}
	old := b.latest
	b.journal, b.size, b.old, b.latest = f, 0, old, map[string]*Record{}
	return old, nil
}

// commit appends r to the journal and makes it durable.
func (b *outbox) commit(r *Record) error {
	b.mu.Lock()
	seq, err := b.appendRecord(r)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.sync(seq)
}

// update applies f to the record of envid under the lock and, when f returns true, saves
// it durably.
func (b *outbox) update(envid string, f func(*Record) bool) (*Record, error) {
	b.mu.Lock()
	r, err := b.load(envid)
	if err != nil {
		b.mu.Unlock()
		return nil, err
	}
	if !f(r) {
		b.mu.Unlock()
		return r, nil
	}
	seq, err := b.appendRecord(r)
	b.mu.Unlock()
	if err != nil {
		return r, err
	}
	return r, b.sync(seq)
}

func (r *Record) clone() *Record {
	c := *r
	c.Recipients = append([]RecipientState(nil), r.Recipients...)
	return &c
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

// Status returns the outbox record of a message sent by this client (by its Message-ID,
// without angle brackets): where each recipient stands. fs.ErrNotExist when unknown.
func (c *Client) Status(messageID string) (*Record, error) {
	if c.box == nil {
		return nil, fmt.Errorf("%w: StateDir is required", ErrConfig)
	}
	c.box.mu.Lock()
	defer c.box.mu.Unlock()
	return c.box.load(envelopeID(messageID))
}
