package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// The administration of the queue in PostgreSQL. Every node sees and changes the same rows,
// so that an administrator needs no running node: a hold, a release, a retry or a delete is
// one transaction, which the nodes' next lease round sees; a message leased by a node for
// an attempt in progress is refused to retry and delete (ErrInFlight), as in the file queue.

// Apply runs op on message id; ctx bounds the time the database may take.
func (q *Postgres) Apply(ctx context.Context, op Op, id string) error {
	if !validID(id) {
		return ErrNotFound
	}
	switch op {
	case OpHold:
		return q.setHeld(ctx, id, true)
	case OpRelease:
		return q.unhold(ctx, id)
	case OpRetry:
		return q.retry(ctx, id)
	case OpDelete:
		return q.delete(ctx, id)
	}
	return fmt.Errorf("queue: unknown operation %q", op)
}

// Inspect lists the queued messages of every node, oldest first: envelope, recipient states,
// hold, and the node attempting each now. It is read in one snapshot of the database.
func (q *Postgres) Inspect(ctx context.Context) ([]*Message, error) {
	return q.inspect(ctx, nil)
}

// InspectMessage returns message id as Inspect does; ErrNotFound when no such message is
// queued.
func (q *Postgres) InspectMessage(ctx context.Context, id string) (*Message, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	ms, err := q.inspect(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, ErrNotFound
	}
	return ms[0], nil
}

// inspect reads the messages of ids (every message when ids is nil).
func (q *Postgres) inspect(ctx context.Context, ids []string) ([]*Message, error) {
	var out []*Message
	err := pgx.BeginTxFunc(ctx, q.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, held, CASE WHEN lease_until > $1 THEN lease_owner ELSE '' END
			FROM queue_messages WHERE $2::text[] IS NULL OR id = ANY($2)`, q.opts.Now(), ids)
		if err != nil {
			return err
		}
		type head struct {
			held bool
			node string
		}
		heads := map[string]head{}
		var all []string
		var id string
		var h head
		if _, err := pgx.ForEachRow(rows, []any{&id, &h.held, &h.node}, func() error {
			heads[id] = h
			all = append(all, id)
			return nil
		}); err != nil {
			return err
		}
		es, err := load(ctx, tx, all)
		if err != nil {
			return err
		}
		for _, e := range es {
			h := heads[e.ID]
			out = append(out, &Message{Envelope: *e, Held: h.held, Node: h.node})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return out, nil
}

// ReadHeader returns the header fields of message id, in order, as the file queue's
// ReadHeader does: at most 256 KiB of the message is read, never past its header.
func (q *Postgres) ReadHeader(ctx context.Context, id string) ([]HeaderField, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	var b []byte
	err := q.pool.QueryRow(ctx, `SELECT substring(body FROM 1 FOR $2) FROM queue_bodies WHERE msg_id = $1`,
		id, maxHeaderBytes).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return parseHeader(bytes.NewReader(b)), nil
}
