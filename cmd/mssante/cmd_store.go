package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/internal/pgschema"
	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/connshare"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/transport/queue"
)

const storeUsage = `migrate|check --config serve.toml [--json]
       mssante store copy --from MAILBOX_DIR (--to DSN | --config serve.toml) [--json]

The PostgreSQL database of a cluster of nodes ([store] backend = "postgres" in serve.toml).
Each component (mailbox, queue, authlimit, connshare) keeps its schema version in the table
mssante_schema.

  migrate   apply the migrations this binary embeds that the database lacks, component by
            component, each under an advisory lock (nodes starting meanwhile wait), then print
            each component's version; a node also does this at start
  check     print each component's version in the database beside this binary's, changing
            nothing: "current" (up to date), "pending" (migrate, or start a node, applies
            them) or "newer" (a newer release migrated it: this binary refuses to use it)
  copy      copy a SQLite mailbox store (the [mailbox] dir of a single node) into the
            PostgreSQL database (--to, or [store] of --config): BALs with their password
            hashes, certificate DNs, members, listings and publication journal; folders with
            their UIDVALIDITY, UIDs, flags, keywords and subscriptions; messages; the store's
            audit rows. Mail clients keep their caches. Stop the node first. The target must
            hold no BAL; the copy is one transaction, so a failed copy leaves it empty and can
            be run again. Prints its progress on stderr and, at the end, the counts read back
            from the database. The queue is not copied: let it drain first (mssante queue list)

--json writes one object a line. copy: {"bals", "members", "listings", "publications",
"folders", "messages", "audit", "bytes"} (verified in the target). migrate, check: {"component", "version" (in the database, 0 for none),
"binary" (the latest this binary knows), "state" (current, pending, newer), "applied" (migrate:
how many it applied)}.
Exit status: 0; 1 when the database cannot be reached, a migration fails or, for check, a
component is newer than this binary or has migrations pending; 2 for a usage error.`

// storeComponent is one component kept in the database, with the migrations of this binary.
type storeComponent struct {
	name string
	migs func() ([]pgschema.Migration, error)
}

// storeComponents are the components a node opens on PostgreSQL, in the order they are
// migrated.
func storeComponents() []storeComponent {
	return []storeComponent{
		{"mailbox", mailbox.PostgresMigrations},
		{"queue", queue.PostgresMigrations},
		{"authlimit", authlimit.PostgresMigrations},
		{"connshare", connshare.PostgresMigrations},
	}
}

// storeLine is one component's line of "store migrate|check".
type storeLine struct {
	Component string `json:"component"`
	Version   int    `json:"version"`
	Binary    int    `json:"binary"`
	State     string `json:"state"`
	Applied   int    `json:"applied,omitempty"`
}

func lineOf(st pgschema.Status, err error) storeLine {
	l := storeLine{Component: st.Component, Version: st.Current, Binary: st.Latest, State: "current"}
	switch {
	case errors.Is(err, pgschema.ErrNewer) || st.Current > st.Latest:
		l.State = "newer"
	case st.Pending():
		l.State = "pending"
	}
	return l
}

func runStore(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "store", storeUsage)
	configPath := fs.String("config", "", "the configuration of \"mssante serve\" ([store])")
	jsonOut := fs.Bool("json", false, "one JSON object a line (fields above)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the database (and, migrate, for the lock); copy: none")
	from := fs.String("from", "", "copy: the SQLite store's folder (the [mailbox] dir of the node it served)")
	to := fs.String("to", "", "copy: the PostgreSQL connection string (libpq or URL), instead of --config's [store]")
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		fs.Parse(args)
		fs.Usage()
		return exitCode(2, nil)
	}
	sub := args[0]
	if sub != "migrate" && sub != "check" && sub != "copy" {
		return usageError(fs, "unknown subcommand %q", sub)
	}
	rest, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError(fs, "unexpected argument %q", rest[0])
	}
	if sub == "copy" {
		return runStoreCopy(ctx, e, fs, *from, *to, *configPath, *jsonOut)
	}
	if *configPath == "" {
		return usageError(fs, "--config is required")
	}
	cfg, err := node.LoadConfigFile(*configPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	lines, err := storeVersions(ctx, &cfg.Store, sub == "migrate")
	bad := 0
	for _, l := range lines {
		if l.State != "current" {
			bad++
		}
		if *jsonOut {
			jsonLine(e.stdout, l)
			continue
		}
		fmt.Fprintf(e.stdout, "%-10s database %d, binary %d: %s", l.Component, l.Version, l.Binary, l.State)
		if sub == "migrate" {
			fmt.Fprintf(e.stdout, " (%d applied)", l.Applied)
		}
		fmt.Fprintln(e.stdout)
	}
	if err != nil {
		return err
	}
	if bad > 0 {
		return exitCode(1, fmt.Errorf("store: %d component(s) not at this binary's version", bad))
	}
	return nil
}

// storeVersions connects to the database of st and returns each component's status, after
// applying its migrations when migrate is set. It stops at the first failure, with the
// lines of the components done.
func storeVersions(ctx context.Context, st *node.StoreConfig, migrate bool) ([]storeLine, error) {
	if !st.Postgres() {
		return nil, errors.New("store: [store] backend is not \"postgres\": the SQLite store migrates itself when it opens")
	}
	dsn, err := st.ConnString()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("store: the database does not answer: %w", err)
	}
	var lines []storeLine
	for _, c := range storeComponents() {
		migs, err := c.migs()
		if err != nil {
			return lines, fmt.Errorf("store: %s: %w", c.name, err)
		}
		var status pgschema.Status
		applied := 0
		if migrate {
			status, applied, err = pgschema.Migrate(ctx, pool, c.name, migs)
		} else {
			status, err = pgschema.Check(ctx, pool, c.name, migs)
		}
		l := lineOf(status, err)
		l.Applied = applied
		lines = append(lines, l)
		if err != nil && !errors.Is(err, pgschema.ErrNewer) {
			return lines, fmt.Errorf("store: %s: %w", c.name, err)
		}
		if err != nil && migrate {
			return lines, fmt.Errorf("store: %s: %w", c.name, err)
		}
	}
	return lines, nil
}

// runStoreCopy is "mssante store copy".
func runStoreCopy(ctx context.Context, e *env, fs *flag.FlagSet, from, to, configPath string, asJSON bool) error {
	if from == "" {
		return usageError(fs, "copy needs --from, the SQLite store's folder")
	}
	if (to == "") == (configPath == "") {
		return usageError(fs, "copy needs one of --to and --config")
	}
	if to == "" {
		cfg, err := node.LoadConfigFile(configPath)
		if err != nil {
			return err
		}
		if to, err = cfg.Store.ConnString(); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(from, "index.db")); err != nil {
		return fmt.Errorf("store: %s is not a mailbox store (no index.db): %w", from, err)
	}
	src, err := mailbox.OpenSQLite(ctx, from, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := mailbox.OpenPostgres(ctx, to, nil)
	if err != nil {
		return err
	}
	defer dst.Close()
	last := time.Now()
	n, err := mailbox.CopyToPostgres(ctx, src, dst, &mailbox.CopyOptions{Progress: func(c mailbox.CopyCounts) {
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(e.stderr, "copied %d BALs, %d folders, %d messages (%d bytes)\n", c.BALs, c.Folders, c.Messages, c.Bytes)
		}
	}})
	if err != nil {
		return err
	}
	if asJSON {
		jsonLine(e.stdout, copyLine{n.BALs, n.Members, n.Listings, n.Publications, n.Folders, n.Messages, n.Audit, n.Bytes})
		return nil
	}
	fmt.Fprintf(e.stdout, "copied and verified: %d BALs, %d members, %d listings, %d publication records, %d folders, %d messages (%d bytes), %d audit records\n",
		n.BALs, n.Members, n.Listings, n.Publications, n.Folders, n.Messages, n.Bytes, n.Audit)
	return nil
}

// copyLine is the --json line of "store copy".
type copyLine struct {
	BALs         int64 `json:"bals"`
	Members      int64 `json:"members"`
	Listings     int64 `json:"listings"`
	Publications int64 `json:"publications"`
	Folders      int64 `json:"folders"`
	Messages     int64 `json:"messages"`
	Audit        int64 `json:"audit"`
	Bytes        int64 `json:"bytes"`
}
