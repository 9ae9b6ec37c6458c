package mailbox

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPoolsUnderLoad runs 64 callers at once, each mixing flag changes and deliveries (the
// writer) with read transactions and plain reads (the read pool), every statement prepared
// once: they all finish (no caller waits for a connection another holds while it waits), and
// neither pool opens more connections than its bound.
func TestPoolsUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := openTest(t, t.TempDir(), &Options{FlagSync: FlagSyncNormal, WatchPoll: -1})
	s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG})
	for i := range 10 {
		if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	mb, _ := s.Mailbox(ctx, "a@h.fr", Inbox)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	start := make(chan struct{})
	for g := range 64 {
		wg.Go(func() {
			since := mb.ModSeq
			<-start // all at once into a read transaction: 64 callers for 8 connections
			for i := range 10 {
				var err error
				switch i % 5 {
				case 0:
					var c *Changes
					if c, err = s.Changes(ctx, mb.ID, since); err == nil {
						since = c.ModSeq
					}
				case 1:
					_, err = s.StoreFlags(ctx, mb.ID, []uint32{uint32(g%10 + 1)}, FlagsAdd, []string{fmt.Sprintf("k%d", g)})
				case 2:
					_, err = s.MessagesByUID(ctx, mb.ID, []uint32{1, 5, 10})
				case 3:
					_, err = s.HeadersByUID(ctx, mb.ID, []uint32{2, 3})
				case 4:
					if g%8 == 0 {
						_, err = s.Append(ctx, "a@h.fr", Inbox, strings.NewReader("Subject: y\r\n\r\ny\r\n"), nil)
					} else {
						_, _, err = s.ClaimRecent(ctx, mb.ID)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("caller %d, step %d: %w", g, i, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.db.Stats().MaxOpenConnections; n != readConns {
		t.Errorf("read pool bound %d, want %d", n, readConns)
	}
	if n := s.db.Stats().OpenConnections; n > readConns {
		t.Errorf("%d read connections open", n)
	}
	for _, w := range []*writer{s.w, s.flagW} {
		if n := w.db.Stats().OpenConnections; n != 1 {
			t.Errorf("%d connections open on a writer, want 1", n)
		}
	}
	kw, err := s.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(kw.Keywords) != 64 {
		t.Fatalf("%d keywords after 64 callers added one each", len(kw.Keywords))
	}
}
