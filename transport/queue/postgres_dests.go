package queue

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// destTracker keeps the state of the destinations found unreachable (see destinations):
// per process for the file queue, in the database for the nodes sharing a PostgreSQL queue.
type destTracker interface {
	// admit says whether message id may be attempted for dom now; probe reports an attempt
	// that the caller must close with report (or abandon).
	admit(dom, id string, now time.Time) (ok, probe bool, reason string)
	// report records the outcome of an attempt on dom and returns the messages to make due
	// when dom was reached after failures.
	report(dom string, probe, reached bool, status string, now time.Time) (release []string)
	// abandon ends a probe that was not made.
	abandon(dom string)
	// count returns how many destinations are suspended at now.
	count(now time.Time) int
}

// suspendedStatus starts the status of a recipient deferred without an attempt because its
// destination is suspended.
const suspendedStatus = "451 4.4.1 delivery temporarily suspended: "

var (
	_ destTracker = (*destinations)(nil)
	_ destTracker = (*sharedDestinations)(nil)
)

// sharedDestinations is the suspension of dead destinations shared by the nodes of a
// PostgreSQL queue, in the table queue_suspensions: the rule of destinations, kept in one
// place so that a peer that is down receives one probe at a time from the whole cluster
// rather than one from each node. A destination without a row, the usual case, costs no
// query: each node reads the names of the rows at most once per Poll, and learns at once of
// the failures it reports itself.
type sharedDestinations struct {
	q     *Postgres
	after int
	wait  func(n int) time.Duration

	mu    sync.Mutex
	known map[string]bool // destinations with a row, as last read
	read  time.Time       // when known was read
}

func newSharedDestinations(q *Postgres) *sharedDestinations {
	s := q.sched
	return &sharedDestinations{q: q, after: s.SuspendAfter, known: map[string]bool{},
		wait: func(n int) time.Duration { return s.Backoff(n) }}
}

// failing reports whether dom has a row, reading the rows' names again when they are older
// than Poll. A database that cannot be read leaves the names as they were.
func (d *sharedDestinations) failing(dom string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.read) >= d.q.opts.Poll || now.Before(d.read) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		rows, err := d.q.pool.Query(ctx, `SELECT domain FROM queue_suspensions`)
		if err == nil {
			var doms []string
			if doms, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
				d.known = make(map[string]bool, len(doms))
				for _, dom := range doms {
					d.known[dom] = true
				}
				d.read = now
			}
		}
	}
	return d.known[dom]
}

func (d *sharedDestinations) setKnown(dom string, has bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if has {
		d.known[dom] = true
	} else {
		delete(d.known, dom)
	}
}

func (d *sharedDestinations) admit(dom, id string, now time.Time) (ok, probe bool, reason string) {
	if d.after < 0 || !d.failing(dom, now) {
		return true, false, ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The probe is this node's until the end of a lease: a node that dies while probing
	// leaves the probe to another after as long as it leaves its messages.
	err := d.q.pool.QueryRow(ctx, `UPDATE queue_suspensions SET probe_owner = $2, probe_until = $4
		WHERE domain = $1 AND until <= $3 AND (probe_until IS NULL OR probe_until <= $3) RETURNING true`,
		dom, d.q.opts.Node, now, now.Add(d.q.opts.Lease)).Scan(&probe)
	switch {
	case err == nil:
		return true, true, ""
	case !errors.Is(err, pgx.ErrNoRows):
		// Unknown: attempt it; the attempt's outcome cannot be stored either.
		return true, false, ""
	}
	err = d.q.pool.QueryRow(ctx, `SELECT reason FROM queue_suspensions WHERE domain = $1`, dom).Scan(&reason)
	if errors.Is(err, pgx.ErrNoRows) {
		d.setKnown(dom, false) // reached meanwhile by another node
		return true, false, ""
	}
	if err != nil {
		return true, false, ""
	}
	return false, false, reason
}

func (d *sharedDestinations) report(dom string, probe, reached bool, status string, now time.Time) []string {
	if d.after < 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if reached {
		if !probe && !d.failing(dom, now) {
			return nil
		}
		d.setKnown(dom, false)
		tag, err := d.q.pool.Exec(ctx, `DELETE FROM queue_suspensions WHERE domain = $1`, dom)
		if err != nil || tag.RowsAffected() == 0 {
			return nil
		}
		// The recipients deferred without an attempt while dom was suspended, by any node,
		// are made due; those whose own attempt failed keep their schedule.
		rows, err := d.q.pool.Query(ctx, `SELECT DISTINCT msg_id FROM queue_rcpts
			WHERE domain = $1 AND state = 'pending' AND next_attempt > $2 AND starts_with(data->>'last_status', $3)`,
			dom, now, suspendedStatus)
		if err != nil {
			return nil
		}
		ids, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		return ids
	}
	d.setKnown(dom, true)
	err := pgx.BeginFunc(ctx, d.q.pool, func(tx pgx.Tx) error {
		var fails int
		if err := tx.QueryRow(ctx, `INSERT INTO queue_suspensions AS s (domain, fails, until, reason)
				VALUES ($1, 1, '-infinity', $2)
			ON CONFLICT (domain) DO UPDATE SET fails = s.fails + 1, reason = excluded.reason,
				probe_owner = CASE WHEN $3 AND s.probe_owner = $4 THEN NULL ELSE s.probe_owner END,
				probe_until = CASE WHEN $3 AND s.probe_owner = $4 THEN NULL ELSE s.probe_until END
			RETURNING fails`, dom, suspendReason(status), probe, d.q.opts.Node).Scan(&fails); err != nil {
			return err
		}
		if fails < max(d.after, 1) {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE queue_suspensions SET until = $2 WHERE domain = $1`,
			dom, now.Add(d.wait(fails-d.after+1)))
		return err
	})
	if err != nil {
		d.q.logger.Warn("queue: destination failure not shared", "rcpt_domain", dom, "err", err)
	}
	return nil
}

func (d *sharedDestinations) abandon(dom string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.q.pool.Exec(ctx, `UPDATE queue_suspensions SET probe_owner = NULL, probe_until = NULL
		WHERE domain = $1 AND probe_owner = $2`, dom, d.q.opts.Node)
}

// count is the number of destinations suspended now: a destination under probe still is,
// for every attempt but the probe.
func (d *sharedDestinations) count(now time.Time) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := d.q.pool.QueryRow(ctx, `SELECT count(*) FROM queue_suspensions WHERE until > $1 OR probe_until > $1`, now).Scan(&n); err != nil {
		d.q.logger.Error("queue: stats", "err", err)
	}
	return n
}

// LiftSuspensions ends the suspension of every destination found unreachable, for every
// node: their messages are attempted on their schedule again (with Retry, at once). It
// returns how many destinations were suspended or being probed.
func (q *Postgres) LiftSuspensions(ctx context.Context) (int, error) {
	tag, err := q.pool.Exec(ctx, `DELETE FROM queue_suspensions`)
	if err != nil {
		return 0, err
	}
	q.logger.Info("queue: destination suspensions lifted by an administrator", "n", tag.RowsAffected())
	return int(tag.RowsAffected()), nil
}
