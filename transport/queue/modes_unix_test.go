//go:build unix

package queue_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/queue"
)

// The spool holds messages and envelopes: every file the queue creates is 0600 and every
// folder 0700 even under umask 0, state files rewritten after an attempt included.
func TestSpoolFileModes(t *testing.T) {
	testenv.Umask0(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "spool")
	q, err := queue.Open(&queue.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, rcpt := range []string{"b@y.mssante.fr", "c@y.mssante.fr"} {
		env := &queue.Envelope{From: "a@x.mssante.fr", Rcpts: []*queue.Recipient{{Addr: rcpt}}, RedeliveryKey: rcpt}
		if _, err := q.Enqueue(ctx, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	// A temporary failure rewrites the envelope state (env/ID.json through tmp/); a delivery
	// removes the message and keeps its redelivery keys (the file redelivery).
	q.RunOnce(ctx, queue.DelivererFunc(func(_ context.Context, j *queue.Job) []queue.Result {
		if j.Rcpts[0].Addr == "b@y.mssante.fr" {
			return []queue.Result{{Err: errors.New("try later"), Status: "451 4.3.0 later"}}
		}
		return []queue.Result{{Status: "250 2.0.0 ok"}}
	}), nil)
	if n := testenv.PrivateModes(t, dir, nil); n != 4 {
		t.Errorf("%d files checked, want a message, its state, the redelivery keys and queue.lock", n)
	}
}
