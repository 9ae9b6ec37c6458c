package queue

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// errLeaseLost ends the storing of an attempt whose lease another node took over.
var errLeaseLost = errors.New("queue: lease lost to another node")

// lease is a message leased to this node for one attempt.
type lease struct {
	e   *Envelope
	seq int64
}

// Run delivers due messages with d until ctx is done or the queue is closed, beside the other
// nodes sharing the database; it returns after the attempts in progress have ended, their
// leases released. It returns ctx.Err() or ErrClosed. RunOptions.ControlPoll is not used:
// Hold, Release, Retry and Delete act on the database from any node.
func (q *Postgres) Run(ctx context.Context, d Deliverer, opts *RunOptions) error {
	var o RunOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	sem := make(chan struct{}, o.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(q.opts.Poll)
	defer tick.Stop()
	var failing bool
	var swept time.Time
	for {
		if q.isClosed() {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if now := q.opts.Now(); now.Sub(swept) >= time.Hour {
			q.sweepKeys(ctx, now)
			swept = now
		}
		free := o.Workers - len(sem)
		var got int
		if free > 0 {
			ls, err := q.lease(ctx, free)
			switch {
			case err != nil && !failing && ctx.Err() == nil && !q.isClosed():
				q.logger.Warn("queue: cannot lease due messages", "err", err)
				failing = true
			case err == nil && failing:
				q.logger.Info("queue: database reached again")
				failing = false
			}
			for _, l := range ls {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done(); q.Kick() }()
					q.process(ctx, l, d, &o)
				}()
			}
			got = len(ls)
		}
		if free > 0 && got == free {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
		case <-q.kick:
		case <-tick.C:
		}
	}
}

// lease takes up to n due messages that no live lease holds, oldest due first, skipping the
// rows other nodes are taking at the same time.
func (q *Postgres) lease(ctx context.Context, n int) ([]lease, error) {
	now := q.opts.Now()
	rows, err := q.pool.Query(ctx, `UPDATE queue_messages m
		SET lease_owner = $1, lease_until = $2, lease_seq = m.lease_seq + 1
		FROM (SELECT id FROM queue_messages
			WHERE due <= $3 AND NOT held AND (lease_until IS NULL OR lease_until <= $3)
			ORDER BY due LIMIT $4 FOR UPDATE SKIP LOCKED) c
		WHERE m.id = c.id
		RETURNING m.id, m.lease_seq`, q.opts.Node, now.Add(q.opts.Lease), now, n)
	if err != nil {
		return nil, err
	}
	seqs := map[string]int64{}
	var ids []string
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return nil, err
		}
		seqs[id] = seq
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	es, err := load(ctx, q.pool, ids)
	if err != nil {
		// Leased but not read: the leases expire and the messages are taken again.
		return nil, err
	}
	out := make([]lease, len(es))
	for i, e := range es {
		out[i] = lease{e, seqs[e.ID]}
	}
	return out, nil
}

// process runs one attempt on a leased message, renewing the lease meanwhile, then releases
// the lease (unless the message is gone or the lease was lost).
func (q *Postgres) process(ctx context.Context, l lease, d Deliverer, o *RunOptions) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { q.renew(actx, cancel, l, done) })
	a := &attempter{now: q.opts.Now, rand: q.opts.Rand, sched: q.sched, logger: q.logger, dests: q.dests,
		store: q, unpark: q.unpark, commit: func(e *Envelope) bool { return q.commitAttempt(l, e) }}
	a.attempt(actx, l.e, d, o)
	close(done)
	wg.Wait()
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	// Released at once rather than left to expire, so that another node may take it when
	// this one stops.
	if _, err := q.pool.Exec(rctx, `UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2 AND lease_seq = $3`, l.e.ID, q.opts.Node, l.seq); err != nil && !q.isClosed() {
		q.logger.Warn("queue: lease not released, it will expire", "id", l.e.ID, "err", err)
	}
}

// renew extends the lease every third of its length until done; when another node holds the
// message now, it cancels the attempt, whose outcome could not be stored anyway.
func (q *Postgres) renew(ctx context.Context, cancel context.CancelFunc, l lease, done <-chan struct{}) {
	t := time.NewTicker(q.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tag, err := q.pool.Exec(ctx, `UPDATE queue_messages SET lease_until = $4
			WHERE id = $1 AND lease_owner = $2 AND lease_seq = $3`, l.e.ID, q.opts.Node, l.seq, q.opts.Now().Add(q.opts.Lease))
		if err == nil && tag.RowsAffected() == 0 {
			q.logger.Warn("queue: lease lost, attempt abandoned", "id", l.e.ID)
			cancel()
			return
		}
	}
}

// commitAttempt stores e, the state after an attempt under lease l, provided the lease is
// still this node's: one node alone stores a recipient's final state and its notice.
func (q *Postgres) commitAttempt(l lease, e *Envelope) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := e.done()
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE queue_messages SET lease_until = $4
			WHERE id = $1 AND lease_owner = $2 AND lease_seq = $3`, e.ID, q.opts.Node, l.seq, q.opts.Now().Add(q.opts.Lease))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errLeaseLost
		}
		if done {
			_, err = tx.Exec(ctx, `DELETE FROM queue_messages WHERE id = $1`, e.ID)
			return err
		}
		return q.store(ctx, tx, e)
	})
	switch {
	case errors.Is(err, errLeaseLost):
		q.logger.Warn("queue: lease lost, outcome dropped", "id", e.ID)
		return false
	case err != nil:
		// The previous state stays: the attempt is repeated.
		q.logger.Error("queue: state not stored", "id", e.ID, "err", err)
		return false
	}
	if done {
		q.logger.Info("queue: done", "id", e.ID)
	}
	return true
}

// unpark makes the pending recipients for dom of the messages ids due at now: dom was reached
// again after this node deferred them. Messages leased meanwhile keep the state their attempt
// stores.
func (q *Postgres) unpark(ids []string, dom string, now time.Time) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM queue_messages WHERE id = ANY($1)
			AND (lease_until IS NULL OR lease_until <= $2) FOR UPDATE SKIP LOCKED`, ids, now)
		if err != nil {
			return err
		}
		free, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE queue_rcpts SET next_attempt = $3 WHERE msg_id = ANY($1)
			AND domain = $2 AND state = 'pending' AND next_attempt > $3`, free, dom, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE queue_messages SET due = $2 WHERE id = ANY($1) AND due > $2`, free, now)
		return err
	})
	if err != nil {
		q.logger.Warn("queue: deferred messages not made due", "rcpt_domain", dom, "err", err)
	}
	q.Kick()
}

// sweepKeys forgets the redelivery keys past the window.
func (q *Postgres) sweepKeys(ctx context.Context, now time.Time) {
	if q.opts.RedeliveryWindow < 0 {
		return
	}
	if _, err := q.pool.Exec(ctx, `DELETE FROM queue_keys WHERE received < $1`, now.Add(-q.opts.RedeliveryWindow)); err != nil && ctx.Err() == nil {
		q.logger.Warn("queue: redelivery keys not swept", "err", err)
	}
}
