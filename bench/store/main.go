// Command store measures the mailbox store on PostgreSQL against the SQLite store in the same
// run (bench/store/run.sh starts the PostgreSQL server): APPEND (each delivery committed
// durably before it returns), FETCH of every body (Store.Read) and SEARCH HEADER (the indexed
// headers of the folder), the backends taking turns, medians of the rounds and the ratio
// PostgreSQL/SQLite (> 1: PostgreSQL faster), with PostgreSQL's bodies in the database and in
// a folder (Options.Blobs).
//
// With -bodies it first compares the two ways of keeping bodies with a PostgreSQL index: in
// the database (a bytea row, one commit) and in a shared folder (a file written, fsynced and
// renamed, its folder fsynced, then a row naming it committed), append and read back, for
// 20 KB and 1 MB messages.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mssante-go/sdk/transport/mailbox"
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL DSN of the server (its postgres database)")
	dir := flag.String("dir", "", "work folder (same disk as the PostgreSQL cluster)")
	n := flag.Int("n", 1000, "messages per round")
	size := flag.Int("size", 20480, "message size in bytes")
	writers := flag.Int("writers", 1, "concurrent appenders")
	bals := flag.Int("bals", 1, "BALs the appenders deliver to (writer w to BAL w mod bals), as a relay does")
	rounds := flag.Int("rounds", 3, "rounds, backends taking turns")
	bodies := flag.Bool("bodies", false, "compare bodies in PostgreSQL and in a folder first")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the rounds to this file")
	flag.Parse()
	if *dsn == "" || *dir == "" {
		log.Fatal("usage: store -dsn DSN -dir DIR [-n N] [-size BYTES] [-writers W] [-rounds R] [-bodies]")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer admin.Close(ctx)
	if *bodies {
		compareBodies(ctx, admin, *dsn, *dir)
	}
	fmt.Printf("store: %d messages of %d bytes, %d writer(s) to %d BAL(s), %d rounds\n", *n, *size, *writers, *bals, *rounds)
	res := map[string]map[string][]float64{"sqlite": {}, "postgres": {}, "postgres-dir": {}}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	for r := range *rounds {
		order := []string{"sqlite", "postgres", "postgres-dir"}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, b := range order {
			var s mailbox.Store
			if b == "sqlite" {
				s, err = mailbox.OpenSQLite(ctx, filepath.Join(*dir, fmt.Sprintf("sqlite-%d", r)), &mailbox.Options{WatchPoll: -1})
			} else {
				var o *mailbox.Options
				if b == "postgres-dir" {
					o = &mailbox.Options{Blobs: "dir:" + filepath.Join(*dir, fmt.Sprintf("blobs-%d", r))}
				}
				s, err = mailbox.OpenPostgres(ctx, database(ctx, admin, *dsn, fmt.Sprintf("store_%d", r)), o)
			}
			if err != nil {
				log.Fatal(err)
			}
			for k, v := range round(ctx, s, *n, *size, *writers, max(*bals, 1)) {
				res[b][k] = append(res[b][k], v)
			}
			s.Close()
		}
	}
	for _, k := range []string{"append msg/s", "fetch msg/s", "search header/s"} {
		sq, pg, pd := median(res["sqlite"][k]), median(res["postgres"][k]), median(res["postgres-dir"][k])
		fmt.Printf("%-16s sqlite %9.1f  postgres %9.1f (%.2fx)  postgres, bodies in a folder %9.1f (%.2fx)   (rounds: sqlite %s, postgres %s, folder %s)\n",
			k, sq, pg, pg/sq, pd, pd/sq, list(res["sqlite"][k]), list(res["postgres"][k]), list(res["postgres-dir"][k]))
	}
}

// database creates an empty database and returns its DSN.
func database(ctx context.Context, admin *pgx.Conn, dsn, name string) string {
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name); err != nil {
		log.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		log.Fatal(err)
	}
	return strings.Replace(dsn, "dbname=postgres", "dbname="+name, 1)
}

// message is a mail of size bytes whose body is base64 of random bytes, as an attachment is:
// neither store nor PostgreSQL's compression finds it easier than real mail.
func message(i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: a@h.fr\r\nTo: b@h.fr\r\nSubject: test %d\r\nMessage-ID: <%d@h.fr>\r\n\r\n", i, i)
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	raw := make([]byte, 57)
	for b.Len() < size {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		b.WriteString(base64.StdEncoding.EncodeToString(raw))
		b.WriteString("\r\n")
	}
	return b.Bytes()[:size]
}

// round appends n messages, reads those of the first BAL, and searches its headers 20 times.
func round(ctx context.Context, s mailbox.Store, n, size, writers, bals int) map[string]float64 {
	bal := func(i int) string {
		if i == 0 {
			return "bench@h.fr"
		}
		return fmt.Sprintf("bench%d@h.fr", i)
	}
	for i := range bals {
		if err := s.AddBAL(ctx, &mailbox.BAL{Address: bal(i), Type: mailbox.ORG}); err != nil {
			log.Fatal(err)
		}
	}
	out := map[string]float64{}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				if _, err := s.Append(ctx, bal(w%bals), mailbox.Inbox, bytes.NewReader(message(i, size)), nil); err != nil {
					log.Fatal(err)
				}
			}
		})
	}
	wg.Wait()
	out["append msg/s"] = float64(n) / time.Since(start).Seconds()
	mb, err := s.Mailbox(ctx, "bench@h.fr", mailbox.Inbox)
	if err != nil {
		log.Fatal(err)
	}
	start = time.Now()
	uids, err := s.UIDs(ctx, mb.ID)
	if err != nil {
		log.Fatal(err)
	}
	var total int64
	buf := make([]byte, size)
	err = s.Read(ctx, mb.ID, uids, func(uid uint32, r io.ReaderAt, sz int64) error {
		_, err := r.ReadAt(buf[:sz], 0)
		total += sz
		return err
	})
	want := 0
	for w := range writers {
		if w%bals == 0 {
			want += (n - w + writers - 1) / writers
		}
	}
	if err != nil || len(uids) != want || total != int64(want*size) {
		log.Fatalf("fetch: %d messages, %d bytes, %v", len(uids), total, err)
	}
	out["fetch msg/s"] = float64(len(uids)) / time.Since(start).Seconds()
	const searches = 20
	start = time.Now()
	for i := range searches {
		h, err := s.Headers(ctx, mb.ID, 0)
		if err != nil {
			log.Fatal(err)
		}
		found := 0
		// writer 0 delivers messages 0, writers, 2×writers… to the first BAL
		target := (i * 7 % ((n + writers - 1) / writers)) * writers
		want := []byte(fmt.Sprintf("Subject: test %d\r\n", target))
		for _, b := range h {
			if bytes.Contains(b, want) {
				found++
			}
		}
		if found != 1 {
			log.Fatalf("search: %d found", found)
		}
	}
	out["search header/s"] = searches / time.Since(start).Seconds()
	return out
}

// compareBodies times append and read-back of a body kept in PostgreSQL against one kept in
// a folder with its name in PostgreSQL.
func compareBodies(ctx context.Context, admin *pgx.Conn, dsn, dir string) {
	conn, err := pgx.Connect(ctx, database(ctx, admin, dsn, "bodies")+" synchronous_commit=on")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE inrow (id bigint PRIMARY KEY, body bytea NOT NULL);
		ALTER TABLE inrow ALTER COLUMN body SET STORAGE EXTERNAL;
		CREATE TABLE byname (id bigint PRIMARY KEY, name text NOT NULL)`); err != nil {
		log.Fatal(err)
	}
	blobs := filepath.Join(dir, "blobs")
	os.MkdirAll(blobs, 0o700)
	id := 0
	for _, c := range []struct{ size, n int }{{20 << 10, 300}, {1 << 20, 40}} {
		body := message(0, c.size)
		var rowApp, rowRead, fileApp, fileRead []float64
		for range c.n {
			id++
			t := time.Now()
			if _, err := conn.Exec(ctx, `INSERT INTO inrow VALUES ($1, $2)`, id, body); err != nil {
				log.Fatal(err)
			}
			rowApp = append(rowApp, ms(t))
			t = time.Now()
			var b []byte
			if err := conn.QueryRow(ctx, `SELECT body FROM inrow WHERE id = $1`, id).Scan(&b); err != nil || len(b) != c.size {
				log.Fatal(err)
			}
			rowRead = append(rowRead, ms(t))

			t = time.Now()
			name := filepath.Join(blobs, fmt.Sprint(id))
			writeSynced(name, body)
			if _, err := conn.Exec(ctx, `INSERT INTO byname VALUES ($1, $2)`, id, name); err != nil {
				log.Fatal(err)
			}
			fileApp = append(fileApp, ms(t))
			t = time.Now()
			var nm string
			if err := conn.QueryRow(ctx, `SELECT name FROM byname WHERE id = $1`, id).Scan(&nm); err != nil {
				log.Fatal(err)
			}
			if b, err := os.ReadFile(nm); err != nil || len(b) != c.size {
				log.Fatal(err)
			}
			fileRead = append(fileRead, ms(t))
		}
		fmt.Printf("bodies %7d B x %d: append ms  in PostgreSQL %.2f  in a folder %.2f  (%.2fx);  read ms  in PostgreSQL %.3f  in a folder %.3f  (%.2fx)\n",
			c.size, c.n, median(rowApp), median(fileApp), median(rowApp)/median(fileApp),
			median(rowRead), median(fileRead), median(rowRead)/median(fileRead))
	}
}

// writeSynced writes a file as the SQLite store writes a message: a temporary file,
// fsynced, renamed into place, its folder fsynced.
func writeSynced(name string, body []byte) {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := f.Write(body); err != nil {
		log.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	f.Close()
	if err := os.Rename(tmp, name); err != nil {
		log.Fatal(err)
	}
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		log.Fatal(err)
	}
	d.Sync()
	d.Close()
}

func ms(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func list(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%.0f", x))
	}
	return strings.Join(parts, " ")
}
