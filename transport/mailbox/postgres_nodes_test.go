package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/internal/pgschema"
)

// waitSignal fails unless ch receives within d, and returns how long it took.
func waitSignal(t *testing.T, ch <-chan struct{}, d time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-ch:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s: no signal within %v", what, d)
	}
	return 0
}

func drainSignals(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestPostgresWatchAcrossNodes: a delivery, a flag change and an expunge made through one
// store (node A) wake the watcher of the folder on another store (node B) on the same
// database within one second, and B then reads the change; after PostgreSQL restarts, B's
// listener reconnects and the next change of A reaches it.
func TestPostgresWatchAcrossNodes(t *testing.T) {
	ctx := context.Background()
	dsn := newDatabase(t)
	a := openPostgresTest(t, dsn, nil)
	b := openPostgresTest(t, dsn, nil)
	if err := a.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	mb, err := b.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := b.Watch(mb.ID)
	defer cancel()
	last := mb.ModSeq
	step := func(what string, change func() error, check func(c *Changes) bool) {
		t.Helper()
		drainSignals(ch)
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		took := waitSignal(t, ch, time.Second, what)
		c, err := b.Changes(ctx, mb.ID, last)
		if err != nil || !check(c) {
			t.Fatalf("%s: node B reads %+v, %v", what, c, err)
		}
		t.Logf("%s on node A: node B woken after %v", what, took.Round(time.Microsecond))
		last = c.ModSeq
	}
	step("append", func() error {
		_, err := a.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), nil)
		return err
	}, func(c *Changes) bool { return len(c.Messages) == 1 && c.Messages[0].UID == 1 })
	step("flags", func() error {
		_, err := a.StoreFlags(ctx, mb.ID, []uint32{1}, FlagsAdd, []string{`\Deleted`})
		return err
	}, func(c *Changes) bool { return len(c.Messages) == 1 && c.Messages[0].HasFlag(`\Deleted`) })
	step("expunge", func() error {
		_, err := a.Expunge(ctx, mb.ID, nil)
		return err
	}, func(c *Changes) bool { return len(c.Expunged) == 1 && c.Expunged[0] == 1 })

	pg := testPostgres(t)
	pg.Stop()
	pg.Start(t)
	// the pool of A reconnects at its next query; B's listener within its retry period, and
	// it then looks at the watched folders once for what it missed
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := a.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(2)), nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node A after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitSignal(t, ch, 5*time.Second, "append after a restart")
	time.Sleep(1500 * time.Millisecond) // B's listener is back by now
	step("append after the listener is back", func() error {
		_, err := a.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(3)), nil)
		return err
	}, func(c *Changes) bool { return len(c.Messages) >= 1 && c.Messages[len(c.Messages)-1].UID == 3 })
}

// TestPostgresConcurrentNodes: two stores (nodes) deliver to the same folder at once, two
// goroutines each, while a reader lists the folder's UIDs: every list it reads is 1..n
// without a gap (a UID is never visible before a smaller one), and in the end the UIDs are
// 1..total, each once, with the folder's counters and the BAL's usage to match.
func TestPostgresConcurrentNodes(t *testing.T) {
	ctx := context.Background()
	dsn := newDatabase(t)
	nodes := []*Postgres{openPostgresTest(t, dsn, nil), openPostgresTest(t, dsn, nil)}
	if err := nodes[0].AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	mb, _ := nodes[1].Mailbox(ctx, "a@h.fr", Inbox)
	const perWriter = 100
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for n, s := range nodes {
		for w := range 2 {
			wg.Go(func() {
				for i := range perWriter {
					if _, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(n*1000+w*100+i)), nil); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	stop := make(chan struct{})
	reads, gaps := 0, ""
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			uids, err := nodes[1].UIDs(ctx, mb.ID)
			if err != nil {
				gaps = err.Error()
				return
			}
			reads++
			for i, u := range uids {
				if u != uint32(i+1) {
					gaps = fmt.Sprintf("read %d: UID %d at position %d: %v", reads, u, i+1, uids)
					return
				}
			}
		}
	})
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if gaps != "" {
		t.Fatal(gaps)
	}
	const total = 4 * perWriter
	uids, err := nodes[0].UIDs(ctx, mb.ID)
	if err != nil || len(uids) != total || uids[0] != 1 || uids[total-1] != total || slices.Compact(slices.Clone(uids))[total-1] != total {
		t.Fatalf("UIDs after %d deliveries: %d of them, %v", total, len(uids), err)
	}
	m, _ := nodes[0].Mailbox(ctx, "a@h.fr", Inbox)
	b, _ := nodes[1].GetBAL(ctx, "a@h.fr")
	if m.UIDNext != total+1 || m.Messages != total || b.Messages != total || b.UsedBytes != m.Size {
		t.Fatalf("after %d deliveries: folder %+v, BAL %+v", total, m, b)
	}
	t.Logf("%d deliveries from 2 nodes, %d reads of the UID list, no gap", total, reads)
}

// TestPostgresRestartUnderAppends: deliveries go on while PostgreSQL is stopped (fast
// shutdown) and then killed, and started again each time. Every delivery acknowledged is
// stored exactly once; a delivery that failed returned an error (never a success); the
// deliveries after each restart succeed through the same store, whose pool reconnects.
func TestPostgresRestartUnderAppends(t *testing.T) {
	ctx := context.Background()
	dsn := newDatabase(t)
	s := openPostgresTest(t, dsn, nil)
	if err := s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	pg := testPostgres(t)
	var mu sync.Mutex
	acked := map[int]bool{}
	failed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	next := 0
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := s.Append(actx, "a@h.fr", Inbox, strings.NewReader(msg(i)), &AppendOptions{DeliveryID: fmt.Sprint("d-", i)})
				cancel()
				mu.Lock()
				if err == nil {
					acked[i] = true
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitAcked := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); count() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d deliveries acknowledged, want %d: the store does not recover", count(), n)
			}
		}
	}
	waitAcked(50)
	pg.Stop()
	time.Sleep(300 * time.Millisecond)
	pg.Start(t)
	waitAcked(count() + 50)
	pg.Kill()
	time.Sleep(300 * time.Millisecond)
	pg.Start(t)
	waitAcked(count() + 50)
	close(stop)
	wg.Wait()
	if failed == 0 {
		t.Fatal("no delivery failed while PostgreSQL was down: the test did not test")
	}
	mb, err := s.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil {
		t.Fatal(err)
	}
	uids, _ := s.UIDs(ctx, mb.ID)
	heads, err := s.HeadersByUID(ctx, mb.ID, uids)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int]int{}
	for _, h := range heads {
		var i int
		j := bytes.Index(h, []byte("Message-ID: <"))
		if j < 0 {
			t.Fatalf("header without Message-ID: %q", h)
		}
		fmt.Sscanf(string(h[j+len("Message-ID: <"):]), "%d@", &i)
		stored[i]++
	}
	for i := range acked {
		if stored[i] != 1 {
			t.Errorf("acknowledged delivery %d stored %d times", i, stored[i])
		}
	}
	for i, n := range stored {
		if n != 1 {
			t.Errorf("delivery %d stored %d times", i, n)
		}
	}
	t.Logf("%d deliveries acknowledged, %d failed with an error (%d of which committed before the connection was lost), none lost",
		len(acked), failed, len(stored)-len(acked))
}

// TestOpenPostgresRefusals: a malformed DSN, a server that is not there, and a database
// migrated by a newer program are refused with an error, at once.
func TestOpenPostgresRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := OpenPostgres(ctx, "host=/nonexistent port=notaport", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("malformed DSN: %v", err)
	}
	if _, err := OpenPostgres(ctx, "host="+t.TempDir()+" user=postgres connect_timeout=2", nil); err == nil {
		t.Fatal("opened a store with no server")
	}
	dsn := newDatabase(t)
	s := openPostgresTest(t, dsn, nil)
	if _, err := s.pool.Exec(ctx, `INSERT INTO mssante_schema (component, version, name) VALUES ('mailbox', 999, 'future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPostgres(ctx, dsn, nil); !errors.Is(err, pgschema.ErrNewer) {
		t.Fatalf("newer schema: %v", err)
	}
	if _, err := OpenPostgres(ctx, dsn, &Options{FlagSync: 7}); err == nil {
		t.Fatal("unknown FlagSync accepted")
	}
}

// TestPostgresPurgeOnTwoNodes: two nodes run the retention purge at the same moment: the
// expired messages are deleted once, and the audit log has one purge entry, by the node that
// did it.
func TestPostgresPurgeOnTwoNodes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	clock := &Options{Now: func() time.Time { return now }}
	dsn := newDatabase(t)
	nodes := []*Postgres{openPostgresTest(t, dsn, clock), openPostgresTest(t, dsn, clock)}
	nodes[0].AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG, Retention: 24 * time.Hour})
	for i := range 50 {
		nodes[i%2].Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(i)), &AppendOptions{Date: now.Add(-48 * time.Hour)})
	}
	results := make([]*PurgeResult, 2)
	var wg sync.WaitGroup
	for i, s := range nodes {
		wg.Go(func() {
			r, err := s.Purge(ctx, now)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	if results[0] == nil || results[1] == nil || results[0].Messages+results[1].Messages != 50 {
		t.Fatalf("purged %+v and %+v, want 50 in all", results[0], results[1])
	}
	if b, _ := nodes[1].GetBAL(ctx, "a@h.fr"); b.Messages != 0 || b.UsedBytes != 0 {
		t.Fatalf("after the purge: %+v", b)
	}
	au, _ := nodes[0].Audit(ctx, now.Add(-time.Minute))
	n := 0
	for _, e := range au {
		if e.Event == "retention-purge" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d purge entries in the audit log, want 1: %+v", n, au)
	}
}

// TestPostgresAppendsLeaveConnections: while another node holds a folder's row, eight
// deliveries to that folder wait their turn without taking the store's two connections:
// a BAL lookup (what an SMTP session asks at RCPT) still answers at once. Once the row is
// free the deliveries all commit, with distinct UIDs.
func TestPostgresAppendsLeaveConnections(t *testing.T) {
	ctx := context.Background()
	dsn := newDatabase(t)
	s := openPostgresTest(t, dsn+" pool_max_conns=2", nil)
	other := openPostgresTest(t, dsn, nil)
	if err := s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	mb, err := s.Mailbox(ctx, "a@h.fr", Inbox)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := other.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM mailbox_folder WHERE id = $1 FOR UPDATE`, mb.ID); err != nil {
		t.Fatal(err)
	}
	uids := make(chan uint32, 8)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			r, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(i)), nil)
			if err != nil {
				errs <- err
				return
			}
			uids <- r.UID
		}()
	}
	// The deliveries are under way when one of them waits on the row in the database.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("a delivery waiting on the folder's row", func() bool {
		var n int
		other.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock'`).Scan(&n)
		return n > 0
	})
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.GetBAL(lctx, "a@h.fr"); err != nil {
		t.Fatalf("GetBAL while deliveries wait on the folder: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for range 8 {
		select {
		case u := <-uids:
			if seen[u] {
				t.Fatalf("UID %d given twice", u)
			}
			seen[u] = true
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(30 * time.Second):
			t.Fatal("the deliveries did not end")
		}
	}
}

// TestPostgresLostNotification: a change committed without its notification, as when a node
// stops between its commit and its NOTIFY, still wakes the watchers of another node, by its
// poll every WatchPoll; with the poll disabled it does not.
func TestPostgresLostNotification(t *testing.T) {
	ctx := context.Background()
	dsn := newDatabase(t)
	a := openPostgresTest(t, dsn, nil)
	if err := a.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, "a@h.fr", Inbox, strings.NewReader(msg(1)), nil); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, tt := range []struct {
		name  string
		poll  time.Duration
		woken bool
	}{{"poll 200ms", 200 * time.Millisecond, true}, {"no poll", -1, false}} {
		t.Run(tt.name, func(t *testing.T) {
			b := openPostgresTest(t, dsn, &Options{WatchPoll: tt.poll})
			mb, err := b.Mailbox(ctx, "a@h.fr", Inbox)
			if err != nil {
				t.Fatal(err)
			}
			ch, cancel := b.Watch(mb.ID)
			defer cancel()
			time.Sleep(100 * time.Millisecond) // the notification of A's append, if late
			drainSignals(ch)
			// what node A's delivery commits, without the notification that followed it
			if _, err := conn.Exec(ctx, `WITH f AS (UPDATE mailbox_folder SET modseq = modseq + 1 WHERE id = $1 RETURNING modseq)
				UPDATE mailbox_message SET flags = '\Seen', modseq = (SELECT modseq FROM f) WHERE mailbox = $1`, mb.ID); err != nil {
				t.Fatal(err)
			}
			if !tt.woken {
				select {
				case <-ch:
					t.Fatal("woken without a notification or a poll")
				case <-time.After(time.Second):
				}
				return
			}
			waitSignal(t, ch, time.Second, "change without its notification")
			c, err := b.Changes(ctx, mb.ID, mb.ModSeq)
			if err != nil || len(c.Messages) != 1 || !c.Messages[0].HasFlag(`\Seen`) {
				t.Fatalf("node B reads %+v, %v", c, err)
			}
		})
	}
}
