package queue

import (
	"context"
	"sync"
	"time"
)

// leaseBook is what a node knows of the leases it holds: the messages it leased and has not
// given back yet (leased ahead, or being attempted), and whether a lease may have been left
// in the database behind its back (a release that failed, a lease query whose answer was
// lost). A lease left so would otherwise keep its message from every node, this one
// included, until it expired: a minute by default for an attempt cut by a database restart.
type leaseBook struct {
	mu    sync.Mutex
	held  map[string]int64 // message → lease number
	dirty int              // leases that may be left in the database, counted as they come
}

// took records the outcome of a lease query: the leases taken, or an error after which the
// server may still have committed some.
func (b *leaseBook) took(ls []lease, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.dirty++
	}
	if b.held == nil {
		b.held = map[string]int64{}
	}
	for _, l := range ls {
		b.held[l.e.ID] = l.seq
	}
}

// ended records that the leases of ids were given back (err nil) or not (err set: left in the
// database), or that their messages are gone.
func (b *leaseBook) ended(ids []string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, id := range ids {
		delete(b.held, id)
	}
	if err != nil {
		b.dirty++
	}
}

// needed returns the messages this node is working on when a lease may be left behind, and
// the count to give cleared once they are released; ok is false when none may be.
func (b *leaseBook) needed() (working []string, dirty int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dirty == 0 {
		return nil, 0, false
	}
	working = []string{} // not NULL, which ANY would compare as unknown
	for id := range b.held {
		working = append(working, id)
	}
	return working, b.dirty, true
}

// cleared records that the leases counted up to dirty were released; one left meanwhile
// keeps the book dirty.
func (b *leaseBook) cleared(dirty int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dirty == dirty {
		b.dirty = 0
	}
}

// giveBackLeases releases, once the database answers again, every lease of this node on a
// message it is not working on: those its attempts could not release while the database was
// away. The node name is unique to this queue, so no other node's lease is touched. Called
// by Run before it leases.
func (q *Postgres) giveBackLeases(ctx context.Context) {
	working, dirty, ok := q.leases.needed()
	if !ok {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tag, err := q.pool.Exec(cctx, `UPDATE queue_messages SET lease_owner = NULL, lease_until = NULL
		WHERE lease_owner = $1 AND NOT (id = ANY($2))`, q.opts.Node, working)
	if err != nil {
		return // still away: tried again on the next round
	}
	q.leases.cleared(dirty)
	if n := tag.RowsAffected(); n > 0 {
		q.logger.Info("queue: leases left by a lost connection given back", "n", n)
	}
}
