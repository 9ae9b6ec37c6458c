// Package node runs one operator node from one [Config], the TOML file of "mssante serve": the
// reference connector (transport/connector: relay, submission, delivery; transport/queue;
// transport/audit; transport/metrics; transport/antivirus) with, when the table "mailbox"
// sets dir, its mailbox store (transport/mailbox) as local delivery
// (transport/mailbox/local), IMAP access on 993 (implicit TLS) and 143 (STARTTLS)
// (transport/imapd, RFC 9051 / RFC 3501), the test responder (transport/responder, RFC 3834)
// and the retention purge loop (mailbox.PurgeEvery), each purge recorded in the connector's
// audit log. "mssante serve" and the sandbox of "mssante dev" run it.
//
// In mailbox mode the store is the registry of BALs: a BAL added with "mssante bal add" is
// accepted for delivery and submission without a restart (the [[bal]] entries of the
// configuration are added to it at start when missing).
//
// The specifications are those of the packages it wires; the node itself applies the
// transport-level ones (docs/references.md): Réf. #2 ECO.1.1.x for TLS and the IGC-Santé
// trust ([TLSConfig]), and the Liste blanche, loaded from a file or refreshed from the ANS
// ([WhitelistConfig]).
//
// Start with [LoadConfig] (or [DefaultConfig], whose file [DefaultConfigTOML] documents every
// setting), then [New], [Node.Serve] until the context ends, and [Node.ReloadConfig] (or
// [Node.Reload]) on SIGHUP; [Node.Listening] and [Node.NotReady] tell a supervisor when it is
// ready (/healthz and /readyz on the metrics listener).
package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/connshare"
	"github.com/mssante-go/sdk/transport/imapd"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/mailbox/local"
	"github.com/mssante-go/sdk/transport/psc"
	"github.com/mssante-go/sdk/transport/publication"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/transport/responder"
)

// Options are what a Node takes besides its Config.
type Options struct {
	// Listeners, when set, are used instead of listening on the configured addresses, by name:
	// "relay", "submission", "submission_tls", "metrics", "imap" (STARTTLS) and "imaps"
	// (implicit TLS); a name missing from a non-nil map is not served.
	Listeners map[string]net.Listener
	// Resolver replaces net.DefaultResolver for MX lookups.
	Resolver connector.Resolver
	// Now is the clock of certificate checks and of the retention purge (default time.Now).
	Now func() time.Time
	// Logger receives operational logs (nil: discard).
	Logger *slog.Logger
	// AuthCounters keep the failure counts of the [auth] brake (nil: in memory, this node's
	// only); authlimit.NewPostgres shares them between the nodes of a cluster.
	AuthCounters authlimit.Counters
	// ConnShare, when set, counts the connections per address of each server (relay,
	// submission, submission_tls, imap) over the nodes of a cluster ([limits]
	// max_connections_per_peer, [imap] max_connections_per_address); nil: per node. The
	// caller opens both over its database and closes them after the node.
	ConnShare *connshare.Share
}

// connShare returns the share of the connections of the server name (nil without ConnShare).
func (o Options) connShare(name string) transport.ConnShare {
	if o.ConnShare == nil {
		return nil
	}
	return o.ConnShare.Scope(name)
}

// Node is a running operator node. Its fields are set by New for callers (tests, the
// sandbox) that need to reach a component; Store, IMAP and Responder are nil without a
// mailbox side. Store is a *mailbox.SQLite, or a *mailbox.Postgres with [store] backend =
// "postgres".
type Node struct {
	Store     mailbox.Store
	IMAP      *imapd.Server
	Responder *responder.Responder

	mta    *mta
	cfg    *Config
	opts   Options
	logger *slog.Logger
	now    func() time.Time
	trust  *transport.TrustStore
	cert   atomic.Pointer[tls.Certificate] // of the IMAP listeners, swapped by Reload
	oauth  *psc.Authenticator              // Pro Santé Connect logins, nil without [psc]
	annu   *reconciler                     // reconciliation with the Annuaire, nil without [annuaire]
	pg     *pgBackend                      // what [store] backend = "postgres" opened, else nil
	reg    Registry                        // Store, as the registry of BALs

	reloadMu  sync.Mutex // one reload at a time
	closeOnce sync.Once
}

// Registry is what both mailbox stores offer besides mailbox.Store: the publication journal
// of the Annuaire reconciliation and the BALs a person holds.
type Registry interface {
	mailbox.Store
	publication.Store
	psc.Holdings
}

var (
	_ Registry = (*mailbox.SQLite)(nil)
	_ Registry = (*mailbox.Postgres)(nil)
)

// imapGrace bounds the wait for open IMAP sessions at stop (clients keep them open).
const imapGrace = 5 * time.Second

// New builds the node of cfg: it opens the mailbox store (when configured), adds the missing
// [[bal]] entries and the responder's BAL, and builds the connector and the IMAP server.
// Serve runs it; Close releases what New opened when Serve is never called.
func New(ctx context.Context, cfg *Config, opts *Options) (_ *Node, err error) {
	n := &Node{cfg: cfg}
	if opts != nil {
		n.opts = *opts
	}
	n.logger = n.opts.Logger
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	n.now = n.opts.Now
	if n.now == nil {
		n.now = time.Now
	}
	mopts := n.opts
	mopts.Logger = n.logger
	if !cfg.mailboxSide() {
		n.mta, err = newMTA(cfg, mopts, nil, nil, nil, nil)
		return n, err
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	var spool queue.Spool // nil: the file queue of spool_dir
	if cfg.Store.Postgres() {
		if n.pg, err = openPostgres(ctx, cfg, &mopts); err != nil {
			return nil, err
		}
		n.Store, n.reg, spool = n.pg.store, n.pg.store, n.pg.queue
		n.opts.AuthCounters, n.opts.ConnShare = mopts.AuthCounters, mopts.ConnShare
	} else {
		st, err := OpenStore(ctx, cfg, &mopts)
		if err != nil {
			return nil, err
		}
		n.Store, n.reg = st, st
	}
	if err := n.addBALs(ctx); err != nil {
		return nil, err
	}
	var delivery connector.LocalDelivery = local.New(n.Store)
	if addr := cfg.Responder.Address; addr != "" {
		if err := n.ensureBAL(ctx, &mailbox.BAL{Address: addr, Type: mailbox.ORG,
			Description: "Réponse automatique (test responder)"}, ""); err != nil {
			return nil, err
		}
		n.Responder, err = responder.New(&responder.Options{Address: addr, Store: n.Store, Next: delivery,
			Hostname: cfg.Hostname, Now: n.opts.Now, Logger: n.logger.With("component", "responder"), Send: n.sendReply})
		if err != nil {
			return nil, err
		}
		delivery = n.Responder
	}
	for _, w := range cfg.Warnings() {
		n.logger.Warn("node: " + w)
	}
	if n.oauth, err = cfg.pscAuthenticator(n.reg, n.opts.Now); err != nil {
		return nil, err
	}
	if n.mta, err = newMTA(cfg, mopts, spool, delivery, storeAccounts{n.Store}, n.oauth); err != nil {
		return nil, err
	}
	if err := n.newIMAP(); err != nil {
		return nil, err
	}
	if n.annu, err = newReconciler(cfg, n.reg, n.mta.metrics, n.logger); err != nil {
		return nil, err
	}
	return n, nil
}

// sendReply queues an automatic reply of the responder, like a DSN (null sender).
func (n *Node) sendReply(ctx context.Context, from, to string, msg []byte) error {
	q := n.mta.queue
	_, err := q.Enqueue(ctx, &queue.Envelope{From: from, Source: "responder", Rcpts: []*queue.Recipient{{Addr: to}}},
		bytes.NewReader(msg))
	if err == nil {
		q.Kick()
	}
	return err
}

// addBALs adds the [[bal]] entries missing from the store, with the default quota and
// retention and the entry's password (hashed by the store, as "mssante bal passwd" does), so
// that a PER or ORG BAL logs in over IMAP with it. An existing BAL is left as it is, password
// included: the store (mssante bal) is the registry.
func (n *Node) addBALs(ctx context.Context) error {
	for _, b := range n.cfg.BALs {
		t := mailbox.Type(strings.ToUpper(b.Type))
		if t == "" {
			t = mailbox.ORG
			if b.CertDN != "" {
				t = mailbox.APP
			}
		}
		if err := n.ensureBAL(ctx, &mailbox.BAL{Address: b.Address, Type: t, CertDN: b.CertDN}, b.Password); err != nil {
			return err
		}
	}
	return nil
}

// ensureBAL adds b with the default quota and retention, and password when not empty, unless
// the store already has it.
func (n *Node) ensureBAL(ctx context.Context, b *mailbox.BAL, password string) error {
	_, err := n.Store.GetBAL(ctx, b.Address)
	if err == nil {
		return nil
	}
	if !errors.Is(err, mailbox.ErrNoBAL) {
		return fmt.Errorf("node: %w", err)
	}
	b.QuotaBytes, b.Retention = n.cfg.Mailbox.DefaultQuota, n.cfg.Mailbox.DefaultRetention
	if err := n.Store.AddBAL(ctx, b); err != nil {
		return fmt.Errorf("node: BAL %s: %w", b.Address, err)
	}
	if password != "" {
		if err := n.Store.SetPassword(ctx, b.Address, password); err != nil {
			return fmt.Errorf("node: password of BAL %s: %w", b.Address, err)
		}
	}
	return nil
}

// newIMAP builds the IMAP server with the connector's certificate and trust (CRLs included).
func (n *Node) newIMAP() error {
	cfg := n.cfg
	// One trust store for the whole node, so that a CRL fetched applies to IMAP too.
	n.trust = n.mta.trust
	if err := n.loadCert(); err != nil {
		return err
	}
	base := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.cert.Load(), nil }}
	tcfg, err := transport.ServerConfig(base, &transport.TLSOptions{Trust: n.trust, Time: n.opts.Now, AllowTLS13: cfg.TLS.AllowTLS13, AllowCBC: cfg.TLS.AllowCBC, OptionalClientCert: true})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	ic := &cfg.IMAP
	n.IMAP, err = imapd.New(&imapd.Options{Store: n.Store, TLSConfig: tcfg, AuthLimiter: n.mta.auth, Logger: n.logger,
		OAuth: n.oauth, Audit: n.mta.audit, NoPasswords: !cfg.Auth.AllowPasswords,
		HandshakeTimeout: ic.HandshakeTimeout, LoginTimeout: ic.LoginTimeout, IdleTimeout: ic.IdleTimeout,
		MaxConns: ic.MaxConnections, MaxConnsPerAddr: ic.MaxConnectionsPerAddress, ConnShare: n.opts.connShare("imap"),
		// The handshake verified a presented certificate (chain and CRL); EXTERNAL also
		// needs one to have been presented.
		VerifyPeer: func(st tls.ConnectionState) error {
			if len(st.PeerCertificates) == 0 {
				return errors.New("node: no client certificate")
			}
			_, err := n.trust.Verify(st.PeerCertificates, x509.ExtKeyUsageClientAuth, n.now())
			return err
		}})
	return err
}

// loadCert (re)reads the certificate and the CRLs of the IMAP listeners (the connector
// checked the same files).
func (n *Node) loadCert() error {
	for _, f := range n.cfg.TLS.CRLFiles {
		if err := n.trust.AddCRLFile(f); err != nil && !errors.Is(err, transport.ErrOlderCRL) {
			return fmt.Errorf("node: %s: %w", f, err)
		}
	}
	crt, err := transport.LoadKeyPair(n.cfg.TLS.CertFile, n.cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("node: certificate: %w", err)
	}
	n.cert.Store(&crt)
	return nil
}

// Queue returns the node's durable queue.
func (n *Node) Queue() queue.Spool { return n.mta.queue }

// Reload re-reads the certificate, the CRLs and the whitelist of the mail path, then, when the
// mail path took them, the certificate and CRLs of the IMAP listeners. On error the previous
// material stays in use. [Node.ReloadConfig] does the same with a new configuration.
func (n *Node) Reload() error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	return n.reload()
}

func (n *Node) reload() error {
	err := n.mta.reload()
	if n.IMAP != nil && err == nil {
		if ierr := n.loadCert(); ierr != nil {
			n.logger.Error("node: IMAP certificate reload failed, previous one kept", "err", ierr)
			err = errors.Join(err, ierr)
		}
	}
	return err
}

// Serve listens, runs the connector, the IMAP listeners and the purge loop, and blocks until
// ctx is done; it then stops them all and closes the store.
func (n *Node) Serve(ctx context.Context) error {
	if n.Store == nil {
		return n.mta.serve(ctx)
	}
	defer n.Close()
	var lns []net.Listener
	listen := func(name, addr string) (net.Listener, error) {
		if l, ok := n.opts.Listeners[name]; ok {
			return l, nil
		}
		if n.opts.Listeners != nil || addr == "" {
			return nil, nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("node: %s: %w", name, err)
		}
		return l, nil
	}
	l143, err := listen("imap", n.cfg.IMAP.Listen)
	if err != nil {
		return err
	}
	l993, err := listen("imaps", n.cfg.IMAP.ListenTLS)
	if err != nil {
		if l143 != nil {
			l143.Close()
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	serve := func(name string, l net.Listener, fn func(net.Listener) error) {
		if l == nil {
			return
		}
		lns = append(lns, l)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(l); err != nil && ctx.Err() == nil {
				n.logger.Error("node: listener stopped", "listener", name, "err", err)
			}
		}()
		n.logger.Info("node: listening", "listener", name, "addr", l.Addr().String())
	}
	serve("imap", l143, n.IMAP.Serve)
	serve("imaps", l993, n.IMAP.ServeTLS)
	n.mta.otherListeners = map[string]string{}
	for name, l := range map[string]net.Listener{"imap": l143, "imaps": l993} {
		if l != nil {
			n.mta.otherListeners[name] = l.Addr().String()
		}
	}
	if n.annu != nil {
		wg.Go(func() { n.annu.run(ctx) })
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		mailbox.PurgeEvery(ctx, auditedPurge{n.Store, n.mta.audit}, n.cfg.Mailbox.PurgeInterval, n.now,
			n.logger.With("component", "purge"))
	}()
	connErr := make(chan error, 1)
	go func() { connErr <- n.mta.serve(ctx) }()
	select {
	case <-ctx.Done():
	case err = <-connErr: // the connector could not start: stop the rest
		cancel()
		connErr <- err
	}
	sctx, scancel := context.WithTimeout(context.Background(), imapGrace)
	n.IMAP.Shutdown(sctx)
	scancel()
	err = <-connErr
	wg.Wait()
	return err
}

// Close closes the mailbox store, and on PostgreSQL what the node opened beside it (Serve
// does it when it returns).
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		if n.Store != nil {
			err = n.Store.Close()
		}
		if n.pg != nil {
			err = errors.Join(err, n.pg.close())
		}
	})
	return err
}

// auditedPurge is the store as the purge loop sees it: each purge that deleted messages is
// recorded in the connector's audit log, one record per BAL (identifiers and counts only).
type auditedPurge struct {
	mailbox.Store
	audit *audit.Log
}

func (a auditedPurge) Purge(ctx context.Context, now time.Time) (*mailbox.PurgeResult, error) {
	mark := time.Now() // the store stamps its audit rows with its clock, time.Now here
	res, err := a.Store.Purge(ctx, now)
	if err != nil || res.Messages == 0 {
		return res, err
	}
	ents, aerr := a.Store.Audit(ctx, mark)
	logged := false
	for _, e := range ents {
		if e.Event != "retention-purge" {
			continue
		}
		var msgs, size int64
		fmt.Sscanf(e.Detail, "messages=%d bytes=%d", &msgs, &size)
		a.audit.Log(&audit.Record{Event: audit.EventPurged, Source: "retention", BAL: e.BAL, Size: size,
			Reason: fmt.Sprintf("messages=%d", msgs)})
		logged = true
	}
	if aerr != nil || !logged { // the per-BAL detail is unavailable: record the total
		a.audit.Log(&audit.Record{Event: audit.EventPurged, Source: "retention", Size: res.Bytes,
			Reason: fmt.Sprintf("messages=%d", res.Messages)})
	}
	return res, nil
}

// storeAccounts finds submission accounts in the mailbox store: an APP BAL by the DN of its
// certificate, a PER or ORG BAL by its address and password.
type storeAccounts struct{ s mailbox.Store }

func (a storeAccounts) BALForCertificate(ctx context.Context, dn string, _ *x509.Certificate) (string, error) {
	b, err := a.s.BALByCertDN(ctx, dn)
	if errors.Is(err, mailbox.ErrNoBAL) {
		return "", connector.ErrUnknownAccount
	}
	if err != nil {
		return "", err
	}
	return b.Address, nil
}

func (a storeAccounts) BALForPassword(ctx context.Context, user, pass string) (string, error) {
	err := a.s.CheckPassword(ctx, user, pass)
	if errors.Is(err, mailbox.ErrAuthFailed) || errors.Is(err, mailbox.ErrNoBAL) {
		return "", connector.ErrUnknownAccount
	}
	if err != nil {
		return "", err
	}
	b, err := a.s.GetBAL(ctx, user)
	if err != nil {
		return "", err
	}
	return b.Address, nil
}
