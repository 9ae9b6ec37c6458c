package queue

import (
	"context"
	"time"

	"github.com/mssante-go/sdk/internal/pglisten"
)

// pgChannel is the LISTEN/NOTIFY channel on which a node says that it made messages due (a
// commit, a release, a retry); the payload is its node name. Run listens on it, so that a
// message committed on any node is leased at once by an idle node rather than at its next
// poll; the poll stays, for what a lost connection missed and for the retries that fall due.
//
// The notification is sent after the commit, in a transaction of its own, rather than inside
// the message's transaction: PostgreSQL orders the commits of notifying transactions under
// one database-wide lock held through their flush to disk, which would make concurrent
// messages commit one after another instead of sharing a flush. Notifications asked for while
// one is on its way are sent as one.
const pgChannel = "mssante_queue"

// announce tells the other nodes that messages are due now.
func (q *Postgres) announce() {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
	case q.announcing:
		q.announceAgain = true
	default:
		q.announcing = true
		q.bg.Add(1)
		go q.announceLoop()
	}
}

func (q *Postgres) announceLoop() {
	defer q.bg.Done()
	for {
		ctx, cancel := context.WithTimeout(q.bgCtx, 5*time.Second)
		_, err := q.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, pgChannel, q.opts.Node)
		cancel()
		if err != nil && q.bgCtx.Err() == nil {
			q.logger.Debug("queue: other nodes not notified, they will poll", "err", err)
		}
		q.mu.Lock()
		if !q.announceAgain || q.closed {
			q.announcing = false
			q.mu.Unlock()
			return
		}
		q.announceAgain = false
		q.mu.Unlock()
	}
}

// listen wakes Run when another node announces due messages, until ctx is done, with one
// connection that it opens again after a loss (Run then looks for due messages once, for
// the notifications it missed).
func (q *Postgres) listen(ctx context.Context) {
	lost := false
	pglisten.Keep(ctx, q.pool.Config().ConnConfig.Copy(), pgChannel, nil, pglisten.Handler{
		Notify: func(node string) {
			if node != q.opts.Node { // this node's commits kick it directly
				q.Kick()
			}
		},
		Listening: func() {
			if lost {
				q.logger.Info("queue: listening to the other nodes again")
				lost = false
			}
			q.Kick()
		},
		Lost: func(err error) {
			if !lost {
				q.logger.Warn("queue: not listening to the other nodes, polling meanwhile", "err", err)
				lost = true
			}
		},
	})
}
