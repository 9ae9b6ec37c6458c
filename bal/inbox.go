package bal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// inbox is the receive state under StateDir/inbox: the checkpoint (UIDVALIDITY and the
// highest UID below which everything was handled) and the journal of handled messages,
// one small file per Message-ID, which is what guarantees that a message is handed to the
// handler once, across restarts, a changed UIDVALIDITY and duplicate deliveries.
type inbox struct {
	dir string
	mu  sync.Mutex
}

type checkpoint struct {
	Mailbox     string `json:"mailbox"`
	UIDValidity uint32 `json:"uidvalidity"`
	LastUID     uint32 `json:"last_uid"`
	// Skipped are the UIDs above LastUID, under this UIDVALIDITY, of receipts left in the
	// mailbox for another state folder's watcher: remembered so that they are not fetched
	// and parsed again on every round while a message below them waits for the handler.
	Skipped []uint32 `json:"skipped,omitempty"`
}

// journalEntry records what was decided for a message and whether the answer went out.
type journalEntry struct {
	MessageID string    `json:"message_id"`
	Kind      string    `json:"kind"`           // "message" or "report"
	Code      int       `json:"code,omitempty"` // 0 accepted, 900–906 rejected
	Replied   bool      `json:"replied"`        // MDN or error mail sent (or none needed)
	At        time.Time `json:"at"`
}

func openInbox(stateDir string) (*inbox, error) {
	dir := filepath.Join(stateDir, "inbox")
	if err := os.MkdirAll(filepath.Join(dir, "journal"), 0o700); err != nil {
		return nil, fmt.Errorf("bal: inbox state: %w", err)
	}
	return &inbox{dir: dir}, nil
}

func (b *inbox) loadCheckpoint(mailbox string) (checkpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cp := checkpoint{Mailbox: mailbox}
	data, err := os.ReadFile(filepath.Join(b.dir, "checkpoint.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return cp, nil
	}
	if err != nil {
		return cp, fmt.Errorf("bal: checkpoint: %w", err)
	}
	var saved checkpoint
	if err := json.Unmarshal(data, &saved); err != nil {
		return cp, fmt.Errorf("bal: checkpoint: %w", err)
	}
	if saved.Mailbox != mailbox {
		return cp, nil
	}
	return saved, nil
}

func (b *inbox) saveCheckpoint(cp checkpoint) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, _ := json.Marshal(cp)
	return writeFileSync(filepath.Join(b.dir, "checkpoint.json"), data)
}

func (b *inbox) journalPath(msgID string) string {
	return filepath.Join(b.dir, "journal", envelopeID(msgID)+".json")
}

// entry returns the journal entry of msgID, or nil.
func (b *inbox) entry(msgID string) (*journalEntry, error) {
	data, err := os.ReadFile(b.journalPath(msgID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bal: journal: %w", err)
	}
	var e journalEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("bal: journal: %w", err)
	}
	return &e, nil
}

func (b *inbox) record(e *journalEntry) error {
	data, _ := json.Marshal(e)
	if err := writeFileSync(b.journalPath(e.MessageID), data); err != nil {
		return fmt.Errorf("bal: journal: %w", err)
	}
	return nil
}
