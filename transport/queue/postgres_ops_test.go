package queue_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/transport/queue"
)

// PostgreSQL restarted while a node delivers a message: the outcome of that attempt cannot be
// stored nor its lease released, yet once the database is back the node gives its lease
// back at once and attempts the message again within seconds, not after the lease's minute.
func TestPostgresRestartMidDelivery(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	dsn := pgDatabase(t, pg)
	q, err := queue.OpenPostgres(context.Background(), dsn, &queue.PostgresOptions{Node: "a", Lease: time.Minute,
		Poll: 100 * time.Millisecond, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	id := enqueue(t, q, "s@a.mssante.fr", "x\r\n", "r@b.mssante.fr")
	started, cont := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	var again atomic.Int64 // when the second attempt came, in Unix nanoseconds
	runNode(t, q, queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		if calls.Add(1) == 1 {
			close(started)
			<-cont
		} else {
			again.CompareAndSwap(0, time.Now().UnixNano())
		}
		return []queue.Result{{Status: "250 2.0.0 ok"}}
	}), nil)
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("the message was not attempted")
	}
	pg.Stop() // the attempt's outcome and its lease release will fail
	close(cont)
	time.Sleep(500 * time.Millisecond)
	pg.Start(t)
	back := time.Now()
	waitFor(t, "a second attempt", func() bool { return again.Load() != 0 })
	took := time.Unix(0, again.Load()).Sub(back)
	t.Logf("attempted again %v after the database came back (lease 1m)", took)
	if took > 10*time.Second {
		t.Errorf("attempted again after %v: the lease was left to expire", took)
	}
	waitFor(t, "the message done", func() bool { _, err := q.Get(id); return err != nil })
}
