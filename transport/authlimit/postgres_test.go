package authlimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/authlimit"
)

// pgNodes starts a PostgreSQL server and returns n Limiters over it, each with its own pool
// (as n nodes would have), sharing one clock, and the counters of the first.
func pgNodes(t *testing.T, n int, o authlimit.Options) (*peers.Postgres, []*authlimit.Limiter, *authlimit.Postgres, *clock) {
	t.Helper()
	pg := peers.StartPostgres(t, nil)
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	o.Now = clk.now
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		ls    = make([]*authlimit.Limiter, n)
		first *authlimit.Postgres
		wg    sync.WaitGroup
		errs  = make([]error, n)
	)
	for i := range n {
		pool, err := pgxpool.New(ctx, pg.DSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		wg.Go(func() { // the nodes start together: the schema is migrated once
			c, err := authlimit.NewPostgres(ctx, pool, &authlimit.PostgresOptions{Timeout: time.Second})
			if err != nil {
				errs[i] = err
				return
			}
			oi := o
			oi.Counters = c
			ls[i] = authlimit.New(&oi)
			if i == 0 {
				first = c
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return pg, ls, first, clk
}

// attempt runs Before as before does, and names an unavailable database.
func attempt(c *authlimit.Conn, account string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	switch err := c.Before(ctx, account); {
	case err == nil:
		return "pass"
	case errors.Is(err, authlimit.ErrLocked):
		return "locked"
	case errors.Is(err, authlimit.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "delayed"
	default:
		return err.Error()
	}
}

// The behaviour tests of the memory counters pass unchanged over PostgreSQL, one node: the
// throttling is the same whichever keeps the counts.
func TestPostgresConformance(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	counters, err := authlimit.NewPostgres(ctx, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		test func(*testing.T)
	}{{"Limits", TestLimits}, {"AddressLimits", TestAddressLimits}, {"NoAccountLimit", TestNoAccountLimit},
		{"AccountLimit", TestAccountLimit}, {"Audit", TestAudit}} {
		if _, err := pool.Exec(ctx, `TRUNCATE authlimit_failures`); err != nil {
			t.Fatal(err)
		}
		shared = counters
		t.Run(c.name, c.test)
		shared = nil
	}
}

// Two nodes over one PostgreSQL: failures on node A delay and then lock the same account
// from the same address on node B, an address spraying accounts on A is locked on B, a
// guess spread over addresses and both nodes locks the addresses that took part, a success
// on B clears what A counted, and the window ends it all, the expired rows swept.
func TestPostgresTwoNodes(t *testing.T) {
	_, ls, counters, clk := pgNodes(t, 2, authlimit.Options{Delay: time.Hour, MaxDelay: 2 * time.Hour,
		MaxConnFailures: 100, FreeFailures: 2, LockoutFailures: 4, FreeAddressFailures: 6,
		LockoutAddressFailures: 8, AccountFailures: 10})
	a, b := ls[0], ls[1]
	const acct = "dr.martin@hopital.mssante.fr"
	const attacker = "192.0.2.7:4711"
	check := func(l *authlimit.Limiter, remote, account, want string) {
		t.Helper()
		if got := attempt(l.Conn("imap", remote), account); got != want {
			t.Fatalf("%s as %s: %s, want %s", remote, account, got, want)
		}
	}
	ca := a.Conn("imap", attacker)
	for range 2 {
		check(b, attacker, acct, "pass")
		if err := ca.Failed(acct); err != nil {
			t.Fatal(err)
		}
	}
	check(b, attacker, acct, "delayed")
	ca.Failed(acct)
	ca.Failed(acct)
	check(b, attacker, acct, "locked")
	check(b, "198.51.100.1:1", acct, "pass") // the owner, elsewhere
	check(b, attacker, "other@hopital.mssante.fr", "pass")

	spray := a.Conn("submission", "203.0.113.9:1")
	for i := range 8 {
		spray.Failed(fmt.Sprintf("u%d@h.fr", i))
	}
	check(b, "203.0.113.9:2", "fresh@h.fr", "locked")

	const victim = "victim@h.fr"
	for i := range 10 {
		ls[i%2].Conn("imap", fmt.Sprintf("10.0.0.%d:1", i+1)).Failed(victim)
	}
	check(b, "10.0.0.1:1", victim, "locked")
	check(a, "10.0.0.2:1", victim, "locked")
	check(a, "10.0.1.1:1", victim, "pass") // no failure of its own

	b.Conn("imap", attacker).Succeeded(acct)
	check(a, attacker, acct, "pass")

	clk.add(15 * time.Minute)
	check(b, "203.0.113.9:2", "fresh@h.fr", "pass")
	check(b, "10.0.0.1:1", victim, "pass")
	a.Conn("imap", "192.0.2.99:1").Failed("late@h.fr") // sweeps the rows past the window
	n, err := counters.Rows(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("%d rows after the sweep (%v), want 3", n, err)
	}
}

// Failures counted at the same time on both nodes are all counted: the upsert is atomic, so
// the hundredth failure, wherever it happened, reaches the lockout at 100.
func TestPostgresConcurrentFailures(t *testing.T) {
	_, ls, _, _ := pgNodes(t, 2, authlimit.Options{MaxConnFailures: 1000, FreeFailures: 1000,
		FreeAddressFailures: 1000, LockoutFailures: 100, LockoutAddressFailures: 1000, AccountFailures: 1000})
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			c := ls[g%2].Conn("imap", "192.0.2.1:1")
			for range 10 {
				if err := c.Failed("a@h.fr"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := attempt(ls[1].Conn("imap", "192.0.2.1:2"), "a@h.fr"); got != "locked" {
		t.Fatalf("after 100 failures over two nodes: %s, want locked (a failure lost)", got)
	}
}

// Before on the memory counters and on PostgreSQL (a local socket), for the cost of
// sharing them: go test -run '^$' -bench Before ./transport/authlimit/
func BenchmarkBefore(b *testing.B) {
	o := authlimit.Options{Delay: time.Nanosecond}
	b.Run("memory", func(b *testing.B) { benchBefore(b, authlimit.New(&o)) })
	b.Run("postgres", func(b *testing.B) {
		pg := peers.StartPostgres(b, nil)
		pool, err := pgxpool.New(context.Background(), pg.DSN())
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		c, err := authlimit.NewPostgres(context.Background(), pool, nil)
		if err != nil {
			b.Fatal(err)
		}
		po := o
		po.Counters = c
		benchBefore(b, authlimit.New(&po))
	})
}

func benchBefore(b *testing.B, l *authlimit.Limiter) {
	l.Conn("imap", "192.0.2.1:1").Failed("a@h.fr")
	c := l.Conn("imap", "192.0.2.1:1")
	ctx := context.Background()
	for b.Loop() {
		if err := c.Before(ctx, "a@h.fr"); err != nil {
			b.Fatal(err)
		}
	}
}

// The brake fails closed: while the database is down, an attempt is refused (temporarily)
// and a failure closes the connection; once it is back, the nodes use it again.
func TestPostgresUnavailableFailsClosed(t *testing.T) {
	pg, ls, _, _ := pgNodes(t, 1, authlimit.Options{})
	l := ls[0]
	if got := attempt(l.Conn("imap", "192.0.2.1:1"), "a@h.fr"); got != "pass" {
		t.Fatalf("database up: %s", got)
	}
	pg.Stop()
	if got := attempt(l.Conn("imap", "192.0.2.1:1"), "a@h.fr"); got != "unavailable" {
		t.Fatalf("database down: %s, want unavailable", got)
	}
	if err := l.Conn("imap", "192.0.2.1:1").Failed("a@h.fr"); !errors.Is(err, authlimit.ErrUnavailable) {
		t.Fatalf("failure with the database down: %v", err)
	}
	pg.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for attempt(l.Conn("imap", "192.0.2.1:1"), "a@h.fr") != "pass" {
		if time.Now().After(deadline) {
			t.Fatal("not back 10 s after the database restarted")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
