package pgschema_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/pgschema"
)

func migrations(t *testing.T, files map[string]string) []pgschema.Migration {
	t.Helper()
	fsys := fstest.MapFS{}
	for name, sql := range files {
		fsys["m/"+name] = &fstest.MapFile{Data: []byte(sql)}
	}
	migs, err := pgschema.Load(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	return migs
}

func TestLoadRefusesGapsAndNames(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"gap":      {"0001_a.sql": "", "0003_c.sql": ""},
		"double":   {"0001_a.sql": "", "001_b.sql": ""},
		"bad name": {"first.sql": ""},
		"zero":     {"0000_a.sql": ""},
		"empty":    {"README": "x"},
	} {
		fsys := fstest.MapFS{}
		for f, s := range files {
			fsys["m/"+f] = &fstest.MapFile{Data: []byte(s)}
		}
		if _, err := pgschema.Load(fsys, "m"); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

// Nodes that start together apply each migration once (the second CREATE TABLE would fail
// otherwise); a failing migration leaves the version where it was; a database migrated by a
// newer program is refused.
func TestMigrate(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := func() *pgxpool.Pool {
		p, err := pgxpool.New(ctx, pg.DSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	two := migrations(t, map[string]string{
		"0001_box.sql":  "CREATE TABLE box (id bigint PRIMARY KEY)",
		"0002_slow.sql": "SELECT pg_sleep(0.2); CREATE TABLE msg (id bigint PRIMARY KEY, box bigint REFERENCES box)",
	})
	if st, err := pgschema.Check(ctx, pool(), "mailbox", two); err != nil || st.Current != 0 || !st.Pending() {
		t.Fatalf("Check on an empty database: %+v, %v", st, err)
	}
	var wg sync.WaitGroup
	applied := make([]int, 4)
	errs := make([]error, 4)
	for i := range applied {
		p := pool()
		wg.Go(func() { _, applied[i], errs[i] = pgschema.Migrate(ctx, p, "mailbox", two) })
	}
	wg.Wait()
	total := 0
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		total += applied[i]
	}
	if total != 2 {
		t.Fatalf("%d migrations applied across the nodes, want 2", total)
	}
	p := pool()
	// Another component has its own versions.
	if st, n, err := pgschema.Migrate(ctx, p, "queue", migrations(t, map[string]string{"0001_q.sql": "CREATE TABLE q (id bigint)"})); err != nil || n != 1 || st.Current != 1 {
		t.Fatalf("queue: %+v, %d, %v", st, n, err)
	}

	bad := append(two[:2:2], pgschema.Migration{Version: 3, Name: "bad", SQL: "CREATE TABLE ok3 (x int); SELECT no_such_function()"})
	if st, _, err := pgschema.Migrate(ctx, p, "mailbox", bad); err == nil || st.Current != 2 {
		t.Fatalf("failing migration: %+v, %v", st, err)
	}
	var exists bool
	p.QueryRow(ctx, `SELECT to_regclass('ok3') IS NOT NULL`).Scan(&exists)
	if exists {
		t.Fatal("a failed migration left its first statement behind")
	}

	three := append(two[:2:2], pgschema.Migration{Version: 3, Name: "c", SQL: "ALTER TABLE msg ADD COLUMN modseq bigint"})
	if _, n, err := pgschema.Migrate(ctx, p, "mailbox", three); err != nil || n != 1 {
		t.Fatalf("third: %d, %v", n, err)
	}
	if _, _, err := pgschema.Migrate(ctx, p, "mailbox", two); !errors.Is(err, pgschema.ErrNewer) {
		t.Fatalf("older program migrating: %v, want ErrNewer", err)
	}
	if _, err := pgschema.Check(ctx, p, "mailbox", two); !errors.Is(err, pgschema.ErrNewer) {
		t.Fatalf("older program checking: %v, want ErrNewer", err)
	}
}
