package mailbox

import (
	"context"
	"strconv"
	"time"
)

// A write's notification ("id modseq" on pgChannel) is sent after its commit, in a
// transaction of its own, rather than inside the write's transaction: PostgreSQL orders the
// commits of notifying transactions under one database-wide lock held through their flush to
// disk, which would make deliveries to different folders commit one after another instead of
// sharing a flush. Notifications asked for while one is on its way are sent together, the
// highest modseq of each folder. One lost with a node that stops between the commit and the
// notification is made up for by the watchers' poll (pollLoop).

// announce queues the notification of changes (folder → modseq, 0 when unknown).
func (s *Postgres) announce(changes map[MailboxID]uint64) {
	if len(changes) == 0 {
		return
	}
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.pending == nil {
		s.pending = map[MailboxID]uint64{}
	}
	for id, m := range changes {
		s.pending[id] = max(s.pending[id], m)
	}
	if s.announcing {
		return
	}
	s.mu.Lock() // no goroutine starts once Close waits for them
	defer s.mu.Unlock()
	if !s.closed {
		s.announcing = true
		s.bg.Add(1)
		go s.announceLoop()
	}
}

func (s *Postgres) announceLoop() {
	defer s.bg.Done()
	for {
		s.nmu.Lock()
		changes := s.pending
		s.pending = nil
		if len(changes) == 0 {
			s.announcing = false
			s.nmu.Unlock()
			return
		}
		s.nmu.Unlock()
		payloads := make([]string, 0, len(changes))
		for id, m := range changes {
			payloads = append(payloads, strconv.FormatInt(int64(id), 10)+" "+strconv.FormatUint(m, 10))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, pgChannel, payloads)
		cancel()
		if err != nil {
			s.logger().Debug("mailbox: other nodes not notified, their watchers will poll", "err", err)
		}
	}
}

// pollLoop looks at the watched folders every WatchPoll (0: 2 s; negative: never), for the
// changes whose notification was lost, until ctx is done.
func (s *Postgres) pollLoop(ctx context.Context) {
	defer s.bg.Done()
	every := s.opts.WatchPoll
	if every == 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.pollWatched(ctx)
		}
	}
}
