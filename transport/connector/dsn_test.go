package connector_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/queue"
)

// A notice raised twice for the same recipients (a node that died after enqueuing the DSN and
// before recording it, or another node taking the message over) queues one DSN.
func TestDSNNotifierOncePerNotice(t *testing.T) {
	q, err := queue.Open(&queue.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	id, err := q.Enqueue(ctx, &queue.Envelope{From: "s@a.mssante.fr", Rcpts: []*queue.Recipient{{Addr: "r@b.mssante.fr"}}},
		strings.NewReader("Subject: x\r\nMessage-ID: <1@a.mssante.fr>\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := q.Get(id)
	env.Rcpts[0].State, env.Rcpts[0].LastStatus = queue.Failed, "550 5.1.1 unknown user"
	n := &connector.DSNNotifier{Queue: q, Hostname: "mx.a.mssante.fr"}
	for range 2 {
		if err := n.Notify(ctx, env, queue.NoticeFailed, env.Rcpts); err != nil {
			t.Fatal(err)
		}
	}
	if ids := q.IDs(); len(ids) != 2 {
		t.Fatalf("%d messages queued, want the original and one DSN", len(ids))
	}
	// Another kind for the same recipient is another notice.
	if err := n.Notify(ctx, env, queue.NoticeDelayed, env.Rcpts); err != nil {
		t.Fatal(err)
	}
	if ids := q.IDs(); len(ids) != 3 {
		t.Fatalf("%d messages queued after a delay notice, want 3", len(ids))
	}
}
