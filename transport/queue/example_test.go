package queue_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/mssante-go/sdk/transport/queue"
)

// A server enqueues a message before answering 250; Run (here RunOnce) delivers it.
func Example() {
	dir, _ := os.MkdirTemp("", "spool")
	defer os.RemoveAll(dir)
	q, err := queue.Open(&queue.Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	defer q.Close()
	env := &queue.Envelope{From: "bal@hopital.mssante.fr", Rcpts: []*queue.Recipient{{Addr: "dr@clinique.mssante.fr"}}}
	if _, err := q.Enqueue(context.Background(), env, strings.NewReader("Subject: test\r\n\r\nbody\r\n")); err != nil {
		panic(err) // answer 451: the message is not safe
	}
	deliver := queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		for _, r := range j.Rcpts {
			fmt.Println("deliver to", r.Addr)
		}
		return make([]queue.Result, len(j.Rcpts)) // all delivered
	})
	q.RunOnce(context.Background(), deliver, nil)
	fmt.Println("left:", q.Stats().Messages)
	// Output:
	// deliver to dr@clinique.mssante.fr
	// left: 0
}
