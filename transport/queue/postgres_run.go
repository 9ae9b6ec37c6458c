package queue

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

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
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.runs.Add(1)
	q.mu.Unlock()
	defer q.runs.Done()
	lctx, lstop := context.WithCancel(ctx)
	var listening sync.WaitGroup
	listening.Go(func() { q.listen(lctx) })
	defer listening.Wait()
	defer lstop()
	sem := make(chan struct{}, o.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(q.opts.Poll)
	defer tick.Stop()
	// ready holds messages leased ahead of a free worker: one lease query serves up to two
	// rounds of workers, so that the workers do not wait for it.
	var ready []lease
	defer func() { q.release(ready) }()
	var failing, polled, more bool
	var swept time.Time
	for {
		if q.isClosed() {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		q.giveBackLeases(ctx)
		if now := q.opts.Now(); now.Sub(swept) >= time.Hour {
			q.sweepKeys(ctx, now)
			swept = now
		}
		for len(ready) > 0 && len(sem) < o.Workers {
			l := ready[0]
			ready = ready[1:]
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				var once sync.Once
				free := func() { once.Do(func() { <-sem; q.Kick() }) }
				defer func() { free(); wg.Done() }()
				q.process(ctx, l, d, &o, free)
			}()
		}
		want := 2*o.Workers - len(sem) - len(ready)
		// A query for several messages, unless the poll came or the last one was full.
		if want > 0 && len(ready) <= o.Workers/2 && (want >= max(o.Workers/2, 1) || polled || more) {
			ls, err := q.lease(ctx, want)
			q.leases.took(ls, err)
			switch {
			case err != nil && !failing && ctx.Err() == nil && !q.isClosed():
				q.logger.Warn("queue: cannot lease due messages", "err", err)
				failing = true
			case err == nil && failing:
				q.logger.Info("queue: database reached again")
				failing = false
			}
			ready = append(ready, ls...)
			more = len(ls) == want
			if len(ls) > 0 {
				continue
			}
		}
		polled = false
		select {
		case <-ctx.Done():
		case <-q.stop:
		case <-q.kick:
		case <-tick.C:
			polled = true
		}
	}
}

// release gives back leases taken and not attempted.
func (q *Postgres) release(ls []lease) {
	if len(ls) == 0 {
		return
	}
	ids := make([]string, len(ls))
	seqs := make([]int64, len(ls))
	for i, l := range ls {
		ids[i], seqs[i] = l.e.ID, l.seq
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := q.pool.Exec(ctx, `UPDATE queue_messages m SET lease_owner = NULL, lease_until = NULL
		FROM unnest($1::text[], $2::bigint[]) AS u(id, seq)
		WHERE m.id = u.id AND m.lease_seq = u.seq AND m.lease_owner = $3`, ids, seqs, q.opts.Node)
	q.leases.ended(ids, err)
	if err != nil && !q.isClosed() {
		q.logger.Warn("queue: leases not released, they will expire", "n", len(ls), "err", err)
	}
}

// lease takes up to n due messages that no live lease holds, oldest due first, skipping the
// rows other nodes are taking at the same time: one round trip to the server.
func (q *Postgres) lease(ctx context.Context, n int) ([]lease, error) {
	now := q.opts.Now()
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	// A lease is coordination, not data: the server need not flush it before answering (a
	// lease lost in a crash of the server is taken again, as an expired one is).
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(`WITH m AS (UPDATE queue_messages m
			SET lease_owner = $1, lease_until = $2, lease_seq = m.lease_seq + 1
			FROM (SELECT id FROM queue_messages
				WHERE due <= $3 AND NOT held AND (lease_until IS NULL OR lease_until <= $3)
				ORDER BY due LIMIT $4 FOR UPDATE SKIP LOCKED) c
			WHERE m.id = c.id
			RETURNING m.id, m.lease_seq, m.envelope)
		SELECT `+envelopeColumns+` FROM m JOIN queue_rcpts r ON r.msg_id = m.id ORDER BY m.id, r.idx`,
		q.opts.Node, now.Add(q.opts.Lease), now, n)
	b.Queue(`COMMIT`)
	// A failed statement leaves the connection in a failed transaction, which the pool
	// closes rather than reuses.
	br := q.pool.SendBatch(ctx, b)
	defer br.Close()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	es, seqs, err := scanEnvelopes(rows)
	if err != nil {
		return nil, err
	}
	if _, err := br.Exec(); err != nil {
		return nil, err // not committed: nothing leased
	}
	out := make([]lease, len(es))
	for i, e := range es {
		out[i] = lease{e, seqs[e.ID]}
	}
	return out, nil
}

// process runs one attempt on a leased message, renewing the lease meanwhile, then releases
// the lease (unless the message is gone or the lease was lost). When every recipient of the
// message is final, it calls free once the attempt is over, so that Run gives its worker's
// place to the next message while this one is removed: the removals of the messages ending
// during one commit share the next, and the more of them the fewer commits.
func (q *Postgres) process(ctx context.Context, l lease, d Deliverer, o *RunOptions, free func()) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { q.renew(actx, cancel, l, done) })
	a := &attempter{now: q.opts.Now, rand: q.opts.Rand, sched: q.sched, logger: q.logger, dests: q.dests,
		store: q, unpark: q.unpark}
	gone, final := false, false
	a.commit = func(e *Envelope) bool { return q.commitAttempt(l, e, &gone, &final) }
	a.attempt(actx, l.e, d, o)
	close(done)
	wg.Wait()
	if final {
		free()
		gone = q.remove(l)
	}
	if gone {
		q.leases.ended([]string{l.e.ID}, nil)
		return
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer rcancel()
	// Released at once rather than left to expire, so that another node may take it when
	// this one stops; a release that fails is given back when the database answers again.
	_, err := q.pool.Exec(rctx, `UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND lease_owner = $2 AND lease_seq = $3`, l.e.ID, q.opts.Node, l.seq)
	q.leases.ended([]string{l.e.ID}, err)
	if err != nil && !q.isClosed() {
		q.logger.Warn("queue: lease not released, given back when the database answers", "id", l.e.ID, "err", err)
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
// still this node's: one node alone stores a recipient's final state and its notice. Each
// change is one statement, its own transaction: the lease check and the change cannot part.
// When every recipient is final, it sets final and leaves the removal to process (remove).
func (q *Postgres) commitAttempt(l lease, e *Envelope, gone, final *bool) bool {
	if *gone || *final {
		return true // stored already (the attempter stores again after the notices)
	}
	if e.done() {
		*final = true
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := columnsOf(e)
	var n int64
	if err == nil {
		due, ok := e.dueAt()
		var d *time.Time
		if ok {
			d = &due
		}
		var tag pgconn.CommandTag
		tag, err = q.pool.Exec(ctx, `WITH m AS (
				UPDATE queue_messages SET lease_until = $4, due = $5
				WHERE id = $1 AND lease_owner = $2 AND lease_seq = $3 RETURNING id)
			UPDATE queue_rcpts r SET state = u.state, attempts = u.attempts, next_attempt = u.next,
				notice = u.notice, data = u.data::json
			FROM m, unnest($6::int[], $7::text[], $8::int[], $9::timestamptz[], $10::text[], $11::text[])
				AS u(idx, state, attempts, next, notice, data)
			WHERE r.msg_id = m.id AND r.idx = u.idx`,
			e.ID, q.opts.Node, l.seq, q.opts.Now().Add(q.opts.Lease), d,
			c.idx, c.state, c.attempts, c.next, c.notice, c.data)
		n = tag.RowsAffected()
	}
	switch {
	case err != nil:
		// The previous state stays: the attempt is repeated.
		q.logger.Error("queue: state not stored", "id", e.ID, "err", err)
		return false
	case n == 0:
		q.logger.Warn("queue: lease lost, outcome dropped", "id", e.ID)
		return false
	}
	return true
}

// remove deletes the message of lease l, every recipient of which is final, if the lease is
// still this node's; false when the message stays (the previous state, to attempt again).
func (q *Postgres) remove(l lease) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ok, err := q.finisher.finish(ctx, q, l.e.ID, l.seq)
	switch {
	case err != nil:
		q.logger.Error("queue: state not stored", "id", l.e.ID, "err", err)
		return false
	case !ok:
		q.logger.Warn("queue: lease lost, outcome dropped", "id", l.e.ID)
		return true // another node holds it now: not ours to release
	}
	q.logger.Info("queue: done", "id", l.e.ID)
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
	q.announce()
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

// finisher removes the messages whose attempts ended with every recipient final: the
// removals of the attempts ending meanwhile share one statement, so that a burst of
// deliveries pays for a few commits, each removal still checked against its lease.
type finisher struct {
	mu      sync.Mutex
	waiting []*finish
	running bool
}

type finish struct {
	id   string
	seq  int64
	ok   bool
	err  error
	done chan struct{}
}

// finish removes message id if lease seq is still this node's; false when it is not.
func (f *finisher) finish(ctx context.Context, q *Postgres, id string, seq int64) (bool, error) {
	req := &finish{id: id, seq: seq, done: make(chan struct{})}
	f.mu.Lock()
	f.waiting = append(f.waiting, req)
	if f.running {
		f.mu.Unlock()
		<-req.done
		return req.ok, req.err
	}
	f.running = true
	for len(f.waiting) > 0 {
		batch := f.waiting
		f.waiting = nil
		f.mu.Unlock()
		ids := make([]string, len(batch))
		seqs := make([]int64, len(batch))
		for i, r := range batch {
			ids[i], seqs[i] = r.id, r.seq
		}
		rows, err := q.pool.Query(ctx, `DELETE FROM queue_messages m USING unnest($1::text[], $2::bigint[]) AS u(id, seq)
			WHERE m.id = u.id AND m.lease_seq = u.seq AND m.lease_owner = $3 RETURNING m.id`, ids, seqs, q.opts.Node)
		var gone []string
		if err == nil {
			gone, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		removed := make(map[string]bool, len(gone))
		for _, id := range gone {
			removed[id] = true
		}
		for _, r := range batch {
			r.ok, r.err = removed[r.id], err
			close(r.done)
		}
		f.mu.Lock()
	}
	f.running = false
	f.mu.Unlock()
	return req.ok, req.err
}
