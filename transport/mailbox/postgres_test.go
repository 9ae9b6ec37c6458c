package mailbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/internal/peers"
)

// opener opens a new, empty Store for a test of the conformance suite; it is closed in
// t.Cleanup.
type opener func(t *testing.T, opts *Options) Store

// forEachStore runs a behaviour test against every Store implementation, as subtests
// /sqlite, /postgres and /postgres-dir (bodies in a folder, Options.Blobs): the same test,
// unchanged, on both backends and both places of PostgreSQL's bodies.
func forEachStore(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) {
		test(t, func(t *testing.T, o *Options) Store { return openTest(t, t.TempDir(), o) })
	})
	t.Run("postgres", func(t *testing.T) {
		test(t, func(t *testing.T, o *Options) Store { return openPostgresTest(t, newDatabase(t), o) })
	})
	t.Run("postgres-dir", func(t *testing.T) {
		test(t, func(t *testing.T, o *Options) Store {
			var oo Options
			if o != nil {
				oo = *o
			}
			oo.Blobs = "dir:" + t.TempDir()
			return openPostgresTest(t, newDatabase(t), &oo)
		})
	})
}

// The PostgreSQL server of the test binary: started by the first test that needs it,
// stopped by TestMain after the last. Each test gets a database of its own.
var sharedPG struct {
	once     sync.Once
	pg       *peers.Postgres
	fail     string // why it could not start
	skip     bool
	cleanups []func()
	dbs      atomic.Int64
}

// pgStart is what mainTB's Fatal and Skip panic with: StartPostgres runs outside any one
// test, and its failure is reported by every test that needs the server.
type pgStart struct {
	msg  string
	skip bool
}

// mainTB lends StartPostgres the few methods it calls, for a server that outlives the test
// that starts it; its cleanups run in TestMain.
type mainTB struct{ testing.TB }

func (mainTB) Helper()                        {}
func (mainTB) Cleanup(f func())               { sharedPG.cleanups = append(sharedPG.cleanups, f) }
func (mainTB) Fatal(args ...any)              { panic(pgStart{msg: fmt.Sprint(args...)}) }
func (mainTB) Fatalf(format string, a ...any) { panic(pgStart{msg: fmt.Sprintf(format, a...)}) }
func (mainTB) Skip(args ...any)               { panic(pgStart{msg: fmt.Sprint(args...), skip: true}) }
func (mainTB) Skipf(format string, a ...any) {
	panic(pgStart{msg: fmt.Sprintf(format, a...), skip: true})
}
func (mainTB) Logf(format string, args ...any) {}

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(sharedPG.cleanups) - 1; i >= 0; i-- {
		sharedPG.cleanups[i]()
	}
	os.Exit(code)
}

// testPostgres returns the shared server, starting it at the first call. Without PostgreSQL
// installed the test is skipped, or fails under MSSANTE_REQUIRE_PEERS=1.
func testPostgres(t *testing.T) *peers.Postgres {
	t.Helper()
	sharedPG.once.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				f, ok := r.(pgStart)
				if !ok {
					panic(r)
				}
				sharedPG.fail, sharedPG.skip = f.msg, f.skip
			}
		}()
		sharedPG.pg = peers.StartPostgres(mainTB{}, nil)
	})
	switch {
	case sharedPG.skip:
		t.Skip(sharedPG.fail)
	case sharedPG.fail != "":
		t.Fatal(sharedPG.fail)
	}
	return sharedPG.pg
}

// newDatabase creates an empty database on the shared server and returns its DSN.
func newDatabase(t *testing.T) string {
	t.Helper()
	pg := testPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN())
	if err != nil {
		t.Fatalf("postgres: %v\n%s", err, pg.Log())
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("mailbox_%d", sharedPG.dbs.Add(1))
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(pg.DSN(), "dbname=postgres", "dbname="+name, 1)
}

// openPostgresTest opens a store (a node) on the database of dsn, closed in t.Cleanup.
func openPostgresTest(t *testing.T, dsn string, opts *Options) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenPostgres(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// registry is what both stores offer beyond Store: the listings, their publication journal
// and the members of ORG BALs.
type registry interface {
	Store
	Listings(ctx context.Context) ([]Listing, error)
	Listing(ctx context.Context, address string) (*Listing, error)
	ChangeListing(ctx context.Context, address string, c ListingChange) (*Listing, error)
	Journal(ctx context.Context, a PublicationAction, address string) error
	Pending(ctx context.Context) ([]Publication, error)
	Done(ctx context.Context, ids ...int64) error
	Owned(ctx context.Context, address string) (bool, error)
	Record(ctx context.Context, a PublicationAction, l *Listing) error
	DoneSince(ctx context.Context, t time.Time) (map[string]PublicationAction, error)
	AddMember(ctx context.Context, bal, nationalID string) error
	RemoveMember(ctx context.Context, bal, nationalID string) error
	Members(ctx context.Context, bal string) ([]Member, error)
	BALsHeldBy(ctx context.Context, nationalID string) ([]string, error)
}

var (
	_ registry = (*SQLite)(nil)
	_ registry = (*Postgres)(nil)
)

// TestReadMany: Read hands over the listed messages in the order listed, each with its own
// content, across the batches in which the PostgreSQL store fetches its bodies; it skips the
// expunged ones, and an error of fn stops the walk and is returned.
func TestReadMany(t *testing.T) { forEachStore(t, testReadMany) }

func testReadMany(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil)
	if err := s.AddBAL(ctx, &BAL{Address: "a@h.fr", Type: ORG}); err != nil {
		t.Fatal(err)
	}
	body := func(i int) string { return msg(i) + strings.Repeat(fmt.Sprintf("%07d\r\n", i), 2000) } // 18 KB
	var uids []uint32
	var mbox MailboxID
	for i := range 150 {
		r, err := s.Append(ctx, "a@h.fr", Inbox, strings.NewReader(body(i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		uids, mbox = append(uids, r.UID), r.Mailbox
	}
	if _, err := s.StoreFlags(ctx, mbox, []uint32{uids[3], uids[100]}, FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, mbox, nil); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(uids)
	slices.Reverse(want)
	var got []uint32
	err := s.Read(ctx, mbox, want, func(uid uint32, r io.ReaderAt, size int64) error {
		b := make([]byte, size)
		if _, err := r.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if i := int(uid - uids[0]); string(b) != body(i) {
			return fmt.Errorf("message %d: %d bytes, not its own", uid, len(b))
		}
		got = append(got, uid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(u uint32) bool { return u == uids[3] || u == uids[100] })
	if !slices.Equal(got, want) {
		t.Fatalf("read %d messages %v…, want %d %v…", len(got), got[:min(5, len(got))], len(want), want[:5])
	}
	stop := errors.New("enough")
	n := 0
	err = s.Read(ctx, mbox, uids, func(uint32, io.ReaderAt, int64) error {
		if n++; n == 120 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 120 {
		t.Fatalf("Read stopped by fn: %v after %d calls", err, n)
	}
}
