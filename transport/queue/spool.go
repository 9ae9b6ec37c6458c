package queue

import (
	"context"
	"io"
)

// Spool is what an SMTP server and a delivery loop need of a queue, whichever keeps it: the
// files of one process ([Open]) or rows that several nodes share in PostgreSQL
// ([OpenPostgres]). Its methods behave as those of [Queue] document.
type Spool interface {
	// BeginMessage starts a message (see [Queue.Begin]).
	BeginMessage() (MessageWriter, error)
	// Enqueue stores a whole message durably (see [Queue.Enqueue]).
	Enqueue(ctx context.Context, env *Envelope, body io.Reader) (string, error)
	// OpenMessage opens a stored message for reading.
	OpenMessage(id string) (io.ReadCloser, error)
	// Get returns a copy of the envelope of a queued message.
	Get(id string) (*Envelope, error)
	// IDs returns the IDs of the queued messages, oldest first.
	IDs() []string
	// Stats returns the current depth of the queue.
	Stats() Stats
	// Run delivers due messages with d until ctx is done or the queue is closed.
	Run(ctx context.Context, d Deliverer, opts *RunOptions) error
	// Kick makes Run look for due messages now.
	Kick()
	// Hold, Release, Retry and Delete are the administrative operations (see [Op]).
	Hold(id string) error
	Release(id string) error
	Retry(id string) error
	Delete(id string) error
	// Close stops the queue; committed messages stay stored.
	Close() error
}

// MessageWriter is a message being received (see [Writer]): written, read back for a content
// scanner with Open, then made durable with Commit, after which the caller may answer 250,
// or dropped with Abort (a no-op after Commit).
type MessageWriter interface {
	io.Writer
	ID() string
	Size() int64
	Open() (io.ReadCloser, error)
	Commit(ctx context.Context, env *Envelope) (string, error)
	Abort()
	Redelivered() []Redelivered
}

var (
	_ Spool         = (*Queue)(nil)
	_ MessageWriter = (*Writer)(nil)
)

// BeginMessage is Begin as a Spool.
func (q *Queue) BeginMessage() (MessageWriter, error) {
	w, err := q.Begin()
	if err != nil {
		return nil, err
	}
	return w, nil
}
