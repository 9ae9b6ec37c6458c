package connector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoMailbox is returned by LocalDelivery for an address that is not a local mailbox.
var ErrNoMailbox = errors.New("connector: no such local mailbox")

// ErrMailboxDisabled is returned by LocalDelivery for a mailbox that exists but takes no new
// mail (a suspended BAL): 550 5.2.1, "mailbox disabled, not accepting messages" (RFC 3463).
var ErrMailboxDisabled = errors.New("connector: local mailbox disabled")

// LocalDelivery is the mailbox store as the mail path sees it: the two calls the servers and
// delivery make, not the whole store. The node implements it with its mailbox store
// (transport/mailbox/local); [Maildir] is a simple one, for a node without a store and for tests.
//
// Implementations must be safe for concurrent use.
type LocalDelivery interface {
	// Lookup returns nil when addr is a local mailbox that accepts mail, an error wrapping
	// ErrNoMailbox when it does not exist (550 5.1.1), ErrMailboxDisabled when it takes no
	// new mail (550 5.2.1), any other error when it cannot tell now (451).
	Lookup(ctx context.Context, addr string) error
	// Deliver stores msg for addr atomically: when it returns nil the message is durably in
	// the mailbox, when it fails nothing is visible. deliveryID identifies this delivery
	// (queue ID and recipient): a second Deliver with the same ID must not store a second copy,
	// so that a retry after a crash never duplicates a message. An error wrapping ErrNoMailbox
	// is a permanent failure, any other is retried.
	Deliver(ctx context.Context, addr, deliveryID string, msg io.Reader) error
}

// Maildir is a LocalDelivery writing one Maildir per address under Dir (Dir/ADDRESS/new/ID):
// write to tmp/, fsync, link into new/ (which fails if the delivery ID is there already), fsync
// the directory.
type Maildir struct {
	Dir string
	// Mailboxes lists the addresses that exist (lower case); nil accepts every address.
	Mailboxes map[string]bool
}

// Lookup implements LocalDelivery.
func (m *Maildir) Lookup(_ context.Context, addr string) error {
	if m.Mailboxes != nil && !m.Mailboxes[strings.ToLower(addr)] {
		return ErrNoMailbox
	}
	return nil
}

func (m *Maildir) box(addr string) string {
	a := strings.ToLower(addr)
	if strings.ContainsAny(a, "/\\\x00") || a == "." || a == ".." {
		sum := sha256.Sum256([]byte(a))
		a = hex.EncodeToString(sum[:])
	}
	return filepath.Join(m.Dir, a)
}

// Deliver implements LocalDelivery.
func (m *Maildir) Deliver(ctx context.Context, addr, deliveryID string, msg io.Reader) error {
	if err := m.Lookup(ctx, addr); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(deliveryID))
	name := hex.EncodeToString(sum[:16])
	box := m.box(addr)
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(box, d), 0o700); err != nil {
			return fmt.Errorf("connector: maildir: %w", err)
		}
	}
	final := filepath.Join(box, "new", name)
	if _, err := os.Stat(final); err == nil {
		return nil // delivered before a crash: idempotent
	}
	tmp := filepath.Join(box, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("connector: maildir: %w", err)
	}
	_, err = io.Copy(f, msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, final)
		if errors.Is(err, os.ErrExist) {
			err = nil
		}
	}
	os.Remove(tmp)
	if err == nil {
		var d *os.File
		if d, err = os.Open(filepath.Join(box, "new")); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("connector: maildir: %w", err)
	}
	return nil
}

// Messages returns the paths of the messages delivered to addr.
func (m *Maildir) Messages(addr string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(m.box(addr), "new"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(m.box(addr), "new", e.Name()))
	}
	return out, nil
}
