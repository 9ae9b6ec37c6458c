package node

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/connshare"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/queue"
)

// Store backends of StoreConfig.Backend.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// ErrDSNFileMode reports a [store] dsn_file that users other than its owner may read: it
// holds the database password.
var ErrDSNFileMode = errors.New("node: store.dsn_file open to group or others")

// StoreConfig is the table "store": where the mailbox store, the queue, the [auth] counters
// and the per-address connection counts live. "sqlite" (the default) keeps them on this
// machine ([mailbox] dir, spool_dir); "postgres" puts them in one PostgreSQL database shared
// by every node of a cluster.
type StoreConfig struct {
	Backend string `toml:"backend"`
	// DSN is the libpq connection string or URL; DSNFile, a file (mode 0600) holding it,
	// keeps the password out of the main configuration. Exactly one with "postgres".
	DSN     string `toml:"dsn"`
	DSNFile string `toml:"dsn_file"`
	// TLSCAFile, when set, turns on sslmode=verify-full against this root CA file. A
	// database reached over TCP must be verified (here or by sslmode=verify-full in the DSN);
	// a Unix socket needs no TLS.
	TLSCAFile string `toml:"tls_ca_file"`
	// PoolSize bounds the connections of each component to the database (0: its default).
	PoolSize int `toml:"pool_size"`
	// Blobs is where the PostgreSQL store keeps message bodies (mailbox.Options.Blobs): ""
	// or "postgres" in the database, "dir:/path" in files under a folder every node mounts,
	// which reads faster than the database (bench/README.md, mailbox store).
	Blobs string `toml:"blobs"`
}

// Postgres reports whether the store backend is PostgreSQL.
func (s *StoreConfig) Postgres() bool { return s.Backend == BackendPostgres }

func (s *StoreConfig) check() []error {
	var errs []error
	switch s.Backend {
	case BackendSQLite:
		if s.DSN != "" || s.DSNFile != "" || s.TLSCAFile != "" || s.Blobs != "" {
			errs = append(errs, errors.New("node: config: store.dsn, dsn_file, tls_ca_file and blobs need store.backend = \"postgres\""))
		}
	case BackendPostgres:
		if (s.DSN == "") == (s.DSNFile == "") {
			errs = append(errs, errors.New("node: config: store.backend = \"postgres\" needs exactly one of store.dsn and store.dsn_file"))
		}
	default:
		errs = append(errs, fmt.Errorf("node: config: store.backend must be sqlite or postgres, not %q", s.Backend))
	}
	if s.PoolSize < 0 {
		errs = append(errs, errors.New("node: config: store.pool_size must not be negative"))
	}
	return errs
}

// ConnString returns the connection string of the database: the DSN (read from DSNFile,
// refused with ErrDSNFileMode when group or others may read it), with verify-full TLS
// against TLSCAFile and the pool size. It refuses a database reached over TCP whose
// certificate would not be verified against its host name. Errors never repeat the DSN,
// which may hold a password.
func (s *StoreConfig) ConnString() (string, error) {
	if !s.Postgres() {
		return "", errors.New("node: store.backend is not postgres")
	}
	dsn := s.DSN
	if s.DSNFile != "" {
		fi, err := os.Stat(s.DSNFile)
		if err != nil {
			return "", fmt.Errorf("node: store.dsn_file: %w", err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("%w: %s has mode %04o: chmod 600 %s", ErrDSNFileMode, s.DSNFile, uint32(fi.Mode().Perm()), s.DSNFile)
		}
		b, err := os.ReadFile(s.DSNFile)
		if err != nil {
			return "", fmt.Errorf("node: store.dsn_file: %w", err)
		}
		dsn = strings.TrimSpace(string(b))
	}
	params := map[string]string{}
	if s.TLSCAFile != "" {
		if _, err := os.Stat(s.TLSCAFile); err != nil {
			return "", fmt.Errorf("node: store.tls_ca_file: %w", err)
		}
		params["sslmode"], params["sslrootcert"] = "verify-full", s.TLSCAFile
	}
	if s.PoolSize > 0 {
		params["pool_max_conns"] = strconv.Itoa(s.PoolSize)
	}
	dsn = withParams(dsn, params)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("node: store: the PostgreSQL DSN does not parse (%s)", redactedParseError(err))
	}
	if err := verifiedTLS(cfg.ConnConfig.Config); err != nil {
		return "", err
	}
	return dsn, nil
}

// withParams sets params in dsn, a URL or a list of key=value settings.
func withParams(dsn string, params map[string]string) string {
	if len(params) == 0 {
		return dsn
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn // ParseConfig reports it
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	var b strings.Builder
	b.WriteString(dsn)
	for k, v := range params {
		fmt.Fprintf(&b, " %s='%s'", k, strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v))
	}
	return b.String()
}

// verifiedTLS refuses a TCP connection whose server certificate is not checked against the
// host name, or that may fall back to plain text: the database holds the messages.
func verifiedTLS(c pgconn.Config) error {
	for _, fc := range append([]*pgconn.FallbackConfig{{Host: c.Host, TLSConfig: c.TLSConfig}}, c.Fallbacks...) {
		if strings.HasPrefix(fc.Host, "/") {
			continue
		}
		if fc.TLSConfig == nil || fc.TLSConfig.InsecureSkipVerify {
			return fmt.Errorf("node: store: the database host %s is reached over TCP without verify-full TLS: set store.tls_ca_file (or sslmode=verify-full in the DSN)", fc.Host)
		}
	}
	return nil
}

// redactedParseError is pgconn's parse error without the connection string it may quote.
func redactedParseError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		return pe.Unwrap().Error()
	}
	return "invalid syntax"
}

// OpenStore opens the mailbox store of cfg as a node opens it: the SQLite store of [mailbox]
// dir, or the PostgreSQL database of [store] with backend = "postgres" (whose schema it
// migrates). Administration commands open the store a node serves through it. opts may be
// nil; only its Logger and Now are used.
func OpenStore(ctx context.Context, cfg *Config, opts *Options) (Registry, error) {
	if opts == nil {
		opts = &Options{}
	}
	if cfg.Store.Postgres() {
		dsn, err := cfg.Store.ConnString()
		if err != nil {
			return nil, err
		}
		return openPostgresStore(ctx, cfg, dsn, opts)
	}
	if cfg.Mailbox.Dir == "" {
		return nil, errors.New("node: no mailbox store: [mailbox] dir is empty and [store] backend is not \"postgres\"")
	}
	// The SQLite store dates what it stores by the machine's clock, as it always has: opts.Now
	// moves the purge only.
	o := storeOptions(cfg, opts)
	o.Now = nil
	st, err := mailbox.OpenSQLite(ctx, cfg.Mailbox.Dir, o)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return st, nil
}

func openPostgresStore(ctx context.Context, cfg *Config, dsn string, opts *Options) (*mailbox.Postgres, error) {
	o := storeOptions(cfg, opts)
	o.Blobs = cfg.Store.Blobs
	st, err := mailbox.OpenPostgres(ctx, dsn, o)
	if err != nil {
		return nil, fmt.Errorf("node: store: %w", err)
	}
	return st, nil
}

// storeOptions are the mailbox store's options of cfg: room for the largest message with
// the headers a node adds, the flag synchronisation of [mailbox] flag_sync and the reach of
// its expunge_log.
func storeOptions(cfg *Config, opts *Options) *mailbox.Options {
	flagSync := mailbox.FlagSyncFull
	if cfg.Mailbox.FlagSync == "normal" {
		flagSync = mailbox.FlagSyncNormal
	}
	return &mailbox.Options{MaxMessageSize: cfg.Limits.MaxMessageBytes + 64<<10, Logger: opts.Logger, FlagSync: flagSync, Now: opts.Now,
		ExpungeLog: uint64(cfg.Mailbox.ExpungeLog)}
}

// pgBackend is what a node opens on PostgreSQL, and closes after it.
type pgBackend struct {
	store    *mailbox.Postgres
	queue    *queue.Postgres
	pool     *pgxpool.Pool // of the counters and the connection counts
	counters *authlimit.Postgres
	share    *connshare.Share
}

// openPostgres opens the components the node keeps in the database of cfg.Store; the
// counters and the connection counts only where opts does not bring its own.
func openPostgres(ctx context.Context, cfg *Config, opts *Options) (_ *pgBackend, err error) {
	dsn, err := cfg.Store.ConnString()
	if err != nil {
		return nil, err
	}
	b := &pgBackend{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.store, err = openPostgresStore(ctx, cfg, dsn, opts); err != nil {
		return nil, err
	}
	q := cfg.Queue
	if b.queue, err = queue.OpenPostgres(ctx, dsn, &queue.PostgresOptions{MaxMessageBytes: cfg.Limits.MaxMessageBytes + 64<<10,
		Schedule: queue.Schedule{First: q.RetryFirst, Factor: q.RetryFactor, Max: q.RetryMax, Jitter: jitter(q.RetryJitter),
			GiveUp: q.GiveUp, DelayNotice: q.DelayNotice},
		RedeliveryWindow: redeliveryWindow(cfg.Relay.RedeliveryWindow), Now: opts.Now, Logger: opts.Logger,
		MaxConns: int32(cfg.Store.PoolSize), Lease: q.Lease, Node: leaseName(cfg.nodeName())}); err != nil {
		return nil, fmt.Errorf("node: queue: %w", err)
	}
	if opts.AuthCounters != nil && opts.ConnShare != nil {
		return b, nil
	}
	if b.pool, err = pgxpool.New(ctx, dsn); err != nil {
		return nil, fmt.Errorf("node: store: %w", err)
	}
	if opts.AuthCounters == nil {
		if b.counters, err = authlimit.NewPostgres(ctx, b.pool, nil); err != nil {
			return nil, fmt.Errorf("node: store: %w", err)
		}
		opts.AuthCounters = b.counters
	}
	if opts.ConnShare == nil {
		if b.share, err = connshare.Open(ctx, b.pool, &connshare.Options{Node: cfg.nodeName(), Logger: opts.Logger}); err != nil {
			return nil, fmt.Errorf("node: store: %w", err)
		}
		opts.ConnShare = b.share
	}
	return b, nil
}

// leaseName is the name this process gives its leases in the shared queue: the node's name,
// which "mssante queue list" shows, made unique to the process, since a lease is given back
// by the name of its holder (a node restarted, or two processes by mistake under one name,
// must not release each other's).
func leaseName(node string) string {
	return fmt.Sprintf("%s-%d-%06x", node, os.Getpid(), mrand.IntN(1<<24))
}

// close closes what openPostgres opened; the mail path closes the queue first when it ran.
func (b *pgBackend) close() error {
	var errs []error
	if b.queue != nil {
		errs = append(errs, b.queue.Close())
	}
	if b.share != nil {
		errs = append(errs, b.share.Close())
	}
	if b.pool != nil {
		b.pool.Close()
	}
	if b.store != nil {
		errs = append(errs, b.store.Close())
	}
	return errors.Join(errs...)
}

// mailboxSide reports whether the node has a mailbox store: [mailbox] dir on SQLite, always
// on PostgreSQL.
func (c *Config) mailboxSide() bool {
	return c.Mailbox.Dir != "" || c.Store.Postgres()
}

// nodeName is the name of this node among those of a cluster: [node] name, else the host
// name.
func (c *Config) nodeName() string {
	if c.Node.Name != "" {
		return c.Node.Name
	}
	h, _ := os.Hostname()
	return h
}
