package authlimit_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/transport/authlimit"
)

// A server asks the connection's limiter before checking a password, and tells it the
// outcome; it closes the connection on ErrLocked and ErrTooManyFailures.
func Example() {
	l := authlimit.New(nil) // the defaults: close after 3 failures, delay from 3, refuse from 10
	c := l.Conn("imap", "192.0.2.1:49152")
	check := func(user, pass string) bool { return pass == "correct horse" }
	for _, pass := range []string{"a", "b", "c"} {
		if err := c.Before(context.Background(), "dr@h.fr"); err != nil {
			fmt.Println("refused:", err)
			return
		}
		if check("dr@h.fr", pass) {
			c.Succeeded("dr@h.fr")
			continue
		}
		if err := c.Failed("dr@h.fr"); errors.Is(err, authlimit.ErrTooManyFailures) {
			fmt.Println("closing:", err)
		}
	}
	// Output:
	// closing: authlimit: too many failed authentications on this connection
}

// The nodes of a cluster share their counts in PostgreSQL: each opens the same database,
// and a guesser is braked on all of them as on one.
func ExampleNewPostgres() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "host=/run/postgresql dbname=mssante")
	if err != nil {
		return
	}
	defer pool.Close()
	counters, err := authlimit.NewPostgres(ctx, pool, nil) // migrates its table at first use
	if err != nil {
		return
	}
	l := authlimit.New(&authlimit.Options{Counters: counters})
	_ = l.Conn("imap", "192.0.2.1:49152")
}
