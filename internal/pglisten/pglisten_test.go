package pglisten_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/pglisten"
)

// Keep hands over the notifications of its channel; when PostgreSQL restarts it reports the
// loss, listens again (Listening) and the next notification reaches it; a channel name that
// needs quoting is listened to as it is; Dial fails without a server.
func TestKeepAcrossRestart(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := pgx.ParseConfig(pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	const channel = "Queue-Wake"
	conn, err := pglisten.Dial(ctx, cfg, channel)
	if err != nil {
		t.Fatal(err)
	}
	payloads := make(chan string, 8)
	listening := make(chan struct{}, 8)
	lost := make(chan error, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pglisten.Keep(ctx, cfg, channel, conn, pglisten.Handler{
			Notify:    func(p string) { payloads <- p },
			Listening: func() { listening <- struct{}{} },
			Lost:      func(err error) { lost <- err },
		})
	}()
	notify := func(payload string) {
		t.Helper()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(want string) {
		t.Helper()
		select {
		case p := <-payloads:
			if p != want {
				t.Fatalf("payload %q, want %q", p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no notification %q", want)
		}
	}
	notify("one")
	expect("one")
	pg.Stop()
	select {
	case <-lost:
	case <-time.After(15 * time.Second):
		t.Fatal("the loss of the connection was not reported")
	}
	pg.Start(t)
	select {
	case <-listening:
	case <-time.After(20 * time.Second):
		t.Fatal("not listening again after the restart")
	}
	notify("two")
	expect("two")
	cancel()
	<-done

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	bad, _ := pgx.ParseConfig("host=/nonexistent user=postgres dbname=postgres")
	if _, err := pglisten.Dial(dctx, bad, channel); err == nil {
		t.Error("Dial without a server succeeded")
	}
}
