// Package local delivers the connector's queued messages into the mailbox store: it is the
// [connector.LocalDelivery] of the reference connector, on top of a mailbox store ([Store]).
//
// A delivery is atomic and idempotent: the store writes and fsyncs the message file before it
// commits the index row that makes it visible, and it records the delivery ID (queue ID and
// recipient) with the message, so the retry of a delivery interrupted by a crash after the
// commit finds it there and stores no second copy.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// Store is what a Delivery needs of a mailbox store: whether a BAL exists, and appending to
// its INBOX. Every [mailbox.Store] implements it.
type Store interface {
	GetBAL(ctx context.Context, address string) (*mailbox.BAL, error)
	Append(ctx context.Context, bal, mailbox string, r io.Reader, opts *mailbox.AppendOptions) (*mailbox.AppendResult, error)
}

// Delivery implements connector.LocalDelivery with a mailbox store.
type Delivery struct {
	store Store
}

var (
	_ connector.LocalDelivery = (*Delivery)(nil)
	_ Store                   = mailbox.Store(nil)
)

// New returns a Delivery into the INBOX of the store's BALs.
func New(store Store) *Delivery { return &Delivery{store: store} }

// Lookup reports whether addr is a BAL of the store that takes mail (not suspended).
func (d *Delivery) Lookup(ctx context.Context, addr string) error {
	b, err := d.store.GetBAL(ctx, addr)
	if errors.Is(err, mailbox.ErrNoBAL) {
		return fmt.Errorf("%w: %w", connector.ErrNoMailbox, err)
	}
	if err == nil && b.Suspended {
		return fmt.Errorf("%w: %s is suspended", connector.ErrMailboxDisabled, addr)
	}
	return err
}

// Deliver stores msg in the INBOX of addr, once per deliveryID. A BAL suspended since the
// message was accepted is refused for good.
func (d *Delivery) Deliver(ctx context.Context, addr, deliveryID string, msg io.Reader) error {
	if err := d.Lookup(ctx, addr); errors.Is(err, connector.ErrMailboxDisabled) {
		return err
	}
	_, err := d.store.Append(ctx, addr, mailbox.Inbox, msg, &mailbox.AppendOptions{DeliveryID: deliveryID})
	if errors.Is(err, mailbox.ErrNoBAL) || errors.Is(err, mailbox.ErrNoMailbox) {
		return fmt.Errorf("%w: %w", connector.ErrNoMailbox, err)
	}
	return err
}
