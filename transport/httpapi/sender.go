package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"io"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante"
)

// Sender submits what the Handler sends and reports where each message stands. Options.BALs
// gives one over bal clients (a vendor's server, "mssante dev"); NewConnectorSender one over
// the node's own submission server ("mssante serve"), which knows the BALs' certificates but
// not their keys.
type Sender interface {
	// Send submits msg from the BAL from on behalf of c, answered once every accepted
	// recipient is queued by the operator. Errors wrap bal's: ErrMessage, ErrNotWhitelisted,
	// ErrAllRejected (with the result), ErrConfig; others are temporary.
	Send(ctx context.Context, c *Caller, from string, msg *mssante.Message, opts *bal.SendOptions) (*bal.SendResult, error)
	// SendRaw is Send for a message already written (RFC 5322).
	SendRaw(ctx context.Context, c *Caller, from string, r io.Reader, opts *bal.SendOptions) (*bal.SendResult, error)
	// Status returns the record of a message from sent, or an error wrapping
	// fs.ErrNotExist.
	Status(ctx context.Context, from, messageID string) (*bal.Record, error)
	// Serves reports whether the BAL addr is sent from here (lower case).
	Serves(addr string) bool
}

// clients is the Sender over bal clients, by lower-case address.
type clients map[string]*bal.Client

func (cs clients) Serves(addr string) bool { return cs[addr] != nil }

func (cs clients) Send(ctx context.Context, _ *Caller, from string, msg *mssante.Message, opts *bal.SendOptions) (*bal.SendResult, error) {
	return cs[from].Send(ctx, msg, opts)
}

func (cs clients) SendRaw(ctx context.Context, _ *Caller, from string, r io.Reader, opts *bal.SendOptions) (*bal.SendResult, error) {
	return cs[from].SendRaw(ctx, r, opts)
}

func (cs clients) Status(_ context.Context, from, id string) (*bal.Record, error) {
	return cs[from].Status(id)
}

// newMessageID returns a Message-ID on domain.
func newMessageID(domain string) string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "@" + domain
}
