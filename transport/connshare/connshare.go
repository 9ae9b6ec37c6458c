// Package connshare counts the simultaneous connections per source address across the nodes
// of a cluster, over PostgreSQL, so that transport.ConnLimits.MaxConnsPerAddr bounds what an
// address holds on all the nodes behind one load balancer, not on each.
//
// Each node keeps its own counts in memory, as a lone node does, and publishes them to the
// table connshare_conns (node, scope, address, count) when they change, coalesced over
// Options.Delay, with a heartbeat in connshare_nodes every Options.Interval. Every cycle it
// also reads the sums of the other live nodes, which the limit check adds to its own from
// memory: accepting a connection never waits for the database. A node whose heartbeat is
// older than Options.Lease is ignored (a dead node holds its addresses for a lease at most),
// and its rows are deleted after ten leases.
//
// The counts of the other nodes are as old as the last publication and read: up to Delay
// plus Interval (and the queries' time). A burst of connections spread over k nodes within
// that lag is not seen by the others, so an address may then hold up to k times
// MaxConnsPerAddr; once the counts are published, new connections are refused until it is
// back under the limit. When the database does not answer, a node keeps the others' last
// counts for a lease, then bounds each address by its own connections only (and logs it):
// the per-node limit always holds.
package connshare

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/pgschema"
	"github.com/mssante-go/sdk/transport"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrNoNode is returned by Open when Options.Node is empty.
var ErrNoNode = errors.New("connshare: Options.Node is required")

// Options configure Open. Zero fields take the documented defaults.
type Options struct {
	// Node names this node, uniquely in the cluster (required; a connector node's
	// [node] name, which its audit log carries too). A node that starts again under its
	// name replaces its earlier counts.
	Node string
	// Delay coalesces the changes of the counts into one publication (default 100 ms).
	Delay time.Duration
	// Interval is the period of the heartbeat and of the reading of the other nodes'
	// counts (default 1 s).
	Interval time.Duration
	// Lease is how long a node's counts hold after its last heartbeat (default 10 s).
	Lease time.Duration
	// MaxAddrs bounds the other nodes' (scope, address) counts read and kept (default
	// 100000): beyond it, the addresses with the most connections are kept.
	MaxAddrs int
	// Timeout bounds each cycle's queries (default 2 s).
	Timeout time.Duration
	// Logger receives the failures to reach the database (nil: discard).
	Logger *slog.Logger
	// Now is the clock of the age of the counts read (default time.Now); the leases are
	// measured by the database's clock.
	Now func() time.Time
}

// Share is one node's view of the cluster's connections. Open starts it; Close stops it.
type Share struct {
	pool *pgxpool.Pool
	opts Options
	log  *slog.Logger
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	local  map[key]int      // this node's counts, as the limiters last said
	dirty  map[key]struct{} // changed since the last publication
	others map[key]int      // the other live nodes' sums
	read   time.Time        // when others was last read
}

type key struct{ scope, addr string }

// Open applies the schema migrations of the component "connshare" that the database lacks,
// replaces this node's earlier counts, and starts publishing and reading.
func Open(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Share, error) {
	s := &Share{pool: pool, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		local: map[key]int{}, dirty: map[key]struct{}{}, others: map[key]int{}}
	if opts != nil {
		s.opts = *opts
	}
	o := &s.opts
	if o.Node == "" {
		return nil, ErrNoNode
	}
	if o.Delay <= 0 {
		o.Delay = 100 * time.Millisecond
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 10 * time.Second
	}
	if o.MaxAddrs <= 0 {
		o.MaxAddrs = 100000
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	migs, err := pgschema.Load(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("connshare: %w", err)
	}
	if _, _, err := pgschema.Migrate(ctx, pool, "connshare", migs); err != nil {
		return nil, fmt.Errorf("connshare: %w", err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM connshare_nodes WHERE node = $1`, o.Node); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO connshare_nodes (node, heartbeat) VALUES ($1, now())`, o.Node)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connshare: %w", err)
	}
	if err := s.cycle(ctx); err != nil {
		return nil, err
	}
	go s.run()
	return s, nil
}

// Scope returns the share of one group of listeners (a server's ConnLimiter: "relay",
// "submission", "imap"), for transport.ConnLimits.Share: each group has its own budget, as
// each has its own limiter.
func (s *Share) Scope(name string) transport.ConnShare { return scope{s, name} }

type scope struct {
	s    *Share
	name string
}

func (c scope) Others(addr string) int {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.others[key{c.name, addr}]
}

func (c scope) Set(addr string, n int) {
	s, k := c.s, key{c.name, addr}
	s.mu.Lock()
	if n > 0 {
		s.local[k] = n
	} else {
		delete(s.local, k)
	}
	s.dirty[k] = struct{}{}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Others returns the connections from addr that the other live nodes hold in scope, as
// last read (for tests and metrics).
func (s *Share) Others(scope, addr string) int { return s.Scope(scope).Others(addr) }

func (s *Share) run() {
	defer close(s.done)
	tick := time.NewTicker(s.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		case <-s.kick:
			select { // let the changes of a burst gather
			case <-s.stop:
				return
			case <-time.After(s.opts.Delay):
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		if err := s.cycle(ctx); err != nil {
			s.log.Warn("connshare: the cluster's connection counts are not up to date", "err", err)
		}
		cancel()
	}
}

// cycle publishes the changed counts with the heartbeat in one transaction, then reads the
// other nodes' sums. On failure the changes are kept for the next cycle, and the others'
// counts for a lease.
func (s *Share) cycle(ctx context.Context) error {
	s.mu.Lock()
	changed := s.dirty
	s.dirty = map[key]struct{}{}
	s.mu.Unlock()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE connshare_nodes SET heartbeat = now() WHERE node = $1`, s.opts.Node)
		if err != nil {
			return err
		}
		publish := changed
		if tag.RowsAffected() == 0 {
			// Swept after a long partition: come back with all the counts.
			if _, err := tx.Exec(ctx, `INSERT INTO connshare_nodes (node, heartbeat) VALUES ($1, now())`, s.opts.Node); err != nil {
				return err
			}
			publish = maps.Clone(changed)
			s.mu.Lock()
			for k := range s.local {
				publish[k] = struct{}{}
			}
			s.mu.Unlock()
		}
		var upScope, upAddr, delScope, delAddr []string
		var upN []int32
		s.mu.Lock()
		for k := range publish {
			if n, ok := s.local[k]; ok {
				upScope, upAddr, upN = append(upScope, k.scope), append(upAddr, k.addr), append(upN, int32(min(n, 1<<30)))
			} else {
				delScope, delAddr = append(delScope, k.scope), append(delAddr, k.addr)
			}
		}
		s.mu.Unlock()
		if len(delScope) > 0 {
			_, err = tx.Exec(ctx, `DELETE FROM connshare_conns WHERE node = $1 AND (scope, addr) IN
				(SELECT * FROM unnest($2::text[], $3::text[]))`, s.opts.Node, delScope, delAddr)
		}
		if err == nil && len(upScope) > 0 {
			_, err = tx.Exec(ctx, `INSERT INTO connshare_conns (node, scope, addr, n)
				SELECT $1, sc, a, n FROM unnest($2::text[], $3::text[], $4::integer[]) AS t(sc, a, n)
				ON CONFLICT (node, scope, addr) DO UPDATE SET n = excluded.n`, s.opts.Node, upScope, upAddr, upN)
		}
		if err == nil {
			_, err = tx.Exec(ctx, `DELETE FROM connshare_nodes WHERE heartbeat < now() - $1::interval`, 10*s.opts.Lease)
		}
		return err
	})
	if err != nil {
		s.mu.Lock()
		for k := range changed {
			s.dirty[k] = struct{}{}
		}
		s.mu.Unlock()
		s.expire()
		return fmt.Errorf("connshare: publishing: %w", err)
	}
	others, err := s.readOthers(ctx)
	if err != nil {
		s.expire()
		return fmt.Errorf("connshare: reading: %w", err)
	}
	s.mu.Lock()
	s.others, s.read = others, s.opts.Now()
	s.mu.Unlock()
	return nil
}

func (s *Share) readOthers(ctx context.Context) (map[key]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.scope, c.addr, sum(c.n)::integer AS total
		FROM connshare_conns c JOIN connshare_nodes nd USING (node)
		WHERE c.node <> $1 AND nd.heartbeat > now() - $2::interval
		GROUP BY c.scope, c.addr ORDER BY total DESC LIMIT $3`, s.opts.Node, s.opts.Lease, s.opts.MaxAddrs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[key]int{}
	for rows.Next() {
		var k key
		var n int
		if err := rows.Scan(&k.scope, &k.addr, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}

// expire forgets the others' counts once they are older than a lease.
func (s *Share) expire() {
	s.mu.Lock()
	if s.opts.Now().Sub(s.read) > s.opts.Lease {
		s.others = map[key]int{}
	}
	s.mu.Unlock()
}

// Close stops publishing and removes this node's counts, so that the others stop counting
// them at once rather than after a lease.
func (s *Share) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM connshare_nodes WHERE node = $1`, s.opts.Node); err != nil {
		return fmt.Errorf("connshare: %w", err)
	}
	return nil
}
