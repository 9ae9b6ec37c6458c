package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/antivirus"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/metrics"
	"github.com/mssante-go/sdk/transport/psc"
	"github.com/mssante-go/sdk/transport/queue"
	"github.com/mssante-go/sdk/transport/revocation"
	"github.com/mssante-go/sdk/whitelist"
)

// mta is the connector's mail path built from a Config: relay and submission listeners,
// queue, delivery, audit, metrics, whitelist, with reload of certificates, CRLs and whitelist.
type mta struct {
	cfg      *Config
	opts     Options
	accounts connector.Accounts // asked before the [[bal]] table
	oauth    *psc.Authenticator // token logins on submission, nil without [psc]
	logger   *slog.Logger
	now      func() time.Time

	trust    *transport.TrustStore
	crl      *revocation.Fetcher // nil when fetching is off
	cert     atomic.Pointer[tls.Certificate]
	list     atomic.Pointer[whitelist.List] // file mode
	store    *whitelist.Store               // URL mode
	policy   connector.Policy
	queue    queue.Spool
	audit    *audit.Log
	auth     *authlimit.Limiter // shared with the IMAP listeners
	metrics  *metrics.Metrics
	local    connector.LocalDelivery
	delivery *connector.Delivery
	servers  map[string]*connector.Server
	allAccts connector.Accounts // accounts, then the [[bal]] table: the submission servers'
	// onResult is given each queue result (Node.OnQueueResult), set before serve.
	onResult func(env *queue.Envelope, r *queue.Recipient, res queue.Result)

	liveRoutes atomic.Pointer[map[string]string] // set by a reload that changed the routes
	listening  chan struct{}                     // closed by serve once every listener is up
	// otherListeners are the addresses of the listeners the node serves beside the mail path
	// (IMAP), bound before serve starts, for the start-up record.
	otherListeners map[string]string
}

// newMTA builds the mail path of cfg: it loads the certificate, the trust store, the whitelist
// (a file must verify; a URL store may start empty and then refuses with 4.7.1 until its
// first refresh) and opens the queue and the audit log. Local delivery goes to local (nil:
// the Maildir of [local]); accounts (nil: none) is asked before the [[bal]] table for the BAL
// of a submission login or client certificate. spool, when not nil, is the queue (the file
// queue of spool_dir otherwise); the mail path closes it. serve starts it.
func newMTA(cfg *Config, opts Options, spool queue.Spool, local connector.LocalDelivery, accounts connector.Accounts, oauth *psc.Authenticator) (*mta, error) {
	c := &mta{cfg: cfg, opts: opts, accounts: accounts, oauth: oauth, local: local, metrics: metrics.New(), servers: map[string]*connector.Server{},
		listening: make(chan struct{})}
	c.now = c.opts.Now
	if c.now == nil {
		c.now = time.Now
	}
	c.logger = c.opts.Logger
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	trust, checker, err := cfg.newTrustStore(c.logger.With("component", "ocsp"))
	if err != nil {
		return nil, err
	}
	c.trust = trust
	if err := errors.Join(c.registerOCSP(checker), c.startCRL()); err != nil {
		return nil, err
	}
	if err := c.loadCertAndCRLs(); err != nil {
		return nil, err
	}
	if err := c.openWhitelist(); err != nil {
		return nil, err
	}
	c.queue = spool
	if c.queue == nil {
		c.queue, err = queue.Open(&queue.Options{Dir: cfg.SpoolDir, MaxMessageBytes: cfg.Limits.MaxMessageBytes + 64<<10, Logger: c.logger,
			Schedule: queue.Schedule{First: cfg.Queue.RetryFirst, Factor: cfg.Queue.RetryFactor, Max: cfg.Queue.RetryMax,
				Jitter: jitter(cfg.Queue.RetryJitter), GiveUp: cfg.Queue.GiveUp, DelayNotice: cfg.Queue.DelayNotice},
			RedeliveryWindow: redeliveryWindow(cfg.Relay.RedeliveryWindow), RedeliveryMax: cfg.Relay.RedeliveryMax})
	}
	if err != nil {
		return nil, err
	}
	c.audit, err = audit.Open(&audit.Options{Dir: cfg.Audit.Dir, MaxBytes: cfg.Audit.MaxBytes, Retention: cfg.Audit.Retention,
		Node: cfg.Node.Name})
	if err != nil {
		c.queue.Close()
		return nil, err
	}
	a := cfg.Auth
	c.auth = authlimit.New(&authlimit.Options{MaxConnFailures: a.MaxConnectionFailures, FreeFailures: a.FreeFailures,
		FreeAddressFailures: a.FreeAddressFailures, Delay: a.Delay, MaxDelay: a.MaxDelay, LockoutFailures: a.LockoutFailures,
		LockoutAddressFailures: a.LockoutAddressFailures, AccountFailures: a.AccountFailures, Window: a.Window,
		MaxTracked: a.MaxTracked, Counters: c.opts.AuthCounters, Audit: c.audit, Now: c.opts.Now})
	if c.local == nil {
		c.local = &connector.Maildir{Dir: cfg.Local.Maildir, Mailboxes: c.mailboxes()}
	}
	if err := c.build(); err != nil {
		c.queue.Close()
		c.audit.Close()
		return nil, err
	}
	if err := c.gauges(); err != nil {
		c.queue.Close()
		c.audit.Close()
		return nil, err
	}
	return c, nil
}

// gauges adds the series computed at scrape time.
func (c *mta) gauges() error {
	return errors.Join(
		c.metrics.GaugeFunc("mssante_queue_messages", "Messages in the queue.", nil,
			func() float64 { return float64(c.queue.Stats().Messages) }),
		c.metrics.GaugeFunc("mssante_queue_recipients", "Recipients still to deliver in the queue.", nil,
			func() float64 { return float64(c.queue.Stats().Recipients) }),
		c.metrics.GaugeFunc("mssante_queue_loading",
			"Messages found at start still to be read from their files (delivered once read).", nil,
			func() float64 { return float64(c.queue.Stats().Loading) }),
		c.metrics.GaugeFunc("mssante_queue_redelivery_loading",
			"1 while the redelivery keys are read at start (relay commits wait meanwhile), else 0.", nil,
			func() float64 {
				if c.queue.Stats().RedeliveryLoading {
					return 1
				}
				return 0
			}),
		c.metrics.GaugeFunc("mssante_certificate_expiry_seconds", "Seconds until our certificate expires.",
			map[string]string{"name": "server"}, func() float64 {
				if crt := c.cert.Load(); crt != nil && crt.Leaf != nil {
					return crt.Leaf.NotAfter.Sub(c.now()).Seconds()
				}
				return 0
			}),
		c.metrics.GaugeFunc("mssante_whitelist_age_seconds", "Seconds since the liste blanche in use was generated (-1: none).", nil,
			func() float64 {
				if l := c.currentList(); l != nil {
					return c.now().Sub(l.Generated()).Seconds()
				}
				return -1
			}),
		c.metrics.GaugeFunc("mssante_crl_next_update_seconds",
			"Seconds until the first CRL held passes its next update (negative once past, 0 when none is held).", nil,
			func() float64 {
				crls := c.trust.CRLs()
				if len(crls) == 0 {
					return 0
				}
				first := math.Inf(1) // a CRL without a next update never goes stale
				for _, crl := range crls {
					if !crl.NextUpdate.IsZero() {
						first = min(first, crl.NextUpdate.Sub(c.now()).Seconds())
					}
				}
				return first
			}))
}

func jitter(j float64) float64 {
	if j == 0 {
		return -1 // zero in the file means none; -1 tells the queue so
	}
	return j
}

func redeliveryWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1 // zero in the file means off; -1 tells the queue so
	}
	return d
}

// mailboxes lists the configured BAL addresses (the local mailboxes that exist).
func (c *mta) mailboxes() map[string]bool {
	m := map[string]bool{}
	for _, b := range c.cfg.BALs {
		m[strings.ToLower(b.Address)] = true
	}
	return m
}

func (c *mta) loadCertAndCRLs() error {
	crt, err := transport.LoadKeyPair(c.cfg.TLS.CertFile, c.cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("node: certificate: %w", err)
	}
	for _, f := range c.cfg.TLS.CRLFiles {
		// A CRL fetched since may be newer than the file: the newer one stays.
		if err := c.trust.AddCRLFile(f); err != nil && !errors.Is(err, transport.ErrOlderCRL) {
			return fmt.Errorf("node: %s: %w", f, err)
		}
	}
	// Our own certificate must verify with our trust store, as the peers will check it.
	chain := []*x509.Certificate{crt.Leaf}
	for _, der := range crt.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("node: certificate chain: %w", err)
		}
		chain = append(chain, ic)
	}
	if _, err := c.trust.Verify(chain, x509.ExtKeyUsageServerAuth, c.now()); err != nil {
		return fmt.Errorf("node: our certificate does not verify: %w", err)
	}
	if c.crl != nil {
		c.crl.SetCertificates(chain)
	}
	c.cert.Store(&crt)
	return nil
}

func (c *mta) openWhitelist() error {
	w := c.cfg.Whitelist
	vo := whitelist.VerifyOptions{Roots: c.trust.Roots(), Signer: w.Signer, UseListDate: w.UseListDate, At: c.now}
	if w.File != "" {
		if err := c.loadWhitelistFile(&vo); err != nil {
			return err
		}
		c.policy = connector.ListedOperator(filePolicy{c})
		return nil
	}
	s, err := whitelist.NewStore(&whitelist.StoreOptions{URL: w.URL, CacheFile: w.CacheFile, Interval: w.RefreshInterval,
		Verify: vo, Now: c.now, Logger: c.logger})
	if err != nil {
		return err
	}
	c.store = s
	c.policy = connector.ListedOperator(s)
	return nil
}

func (c *mta) loadWhitelistFile(vo *whitelist.VerifyOptions) error {
	f, err := os.Open(c.cfg.Whitelist.File)
	if err != nil {
		return fmt.Errorf("node: whitelist: %w", err)
	}
	defer f.Close()
	l, err := whitelist.Verify(f, vo)
	if err != nil {
		return fmt.Errorf("node: whitelist %s: %w", c.cfg.Whitelist.File, err)
	}
	if old := c.list.Load(); old != nil && l.Generated().Before(old.Generated()) {
		return fmt.Errorf("node: whitelist %s: %w", c.cfg.Whitelist.File, whitelist.ErrRollback)
	}
	c.list.Store(l)
	return nil
}

func (c *mta) currentList() *whitelist.List {
	if c.store != nil {
		return c.store.List()
	}
	return c.list.Load()
}

// filePolicy is the Policy of a whitelist file, swapped on Reload. Before the first load the
// nil *whitelist.List answers whitelist.ErrNoList and has no domains.
type filePolicy struct{ c *mta }

func (p filePolicy) CheckDomain(d string) error       { return p.c.list.Load().CheckDomain(d) }
func (p filePolicy) CheckOperator(d, dn string) error { return p.c.list.Load().CheckOperator(d, dn) }
func (p filePolicy) Domains(fn func(string, []whitelist.Entry) bool) {
	p.c.list.Load().Domains(fn)
}

func (c *mta) build() error {
	cfg := c.cfg
	tlsOpts := &transport.TLSOptions{Trust: c.trust, Time: c.now, AllowTLS13: cfg.TLS.AllowTLS13, AllowCBC: cfg.TLS.AllowCBC}
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }
	accounts := &connector.StaticAccounts{ByDN: map[string]string{}, Passwords: map[string]connector.PasswordAccount{}}
	for _, b := range cfg.BALs {
		if b.CertDN != "" {
			accounts.ByDN[b.CertDN] = b.Address
		}
		if b.Login != "" {
			accounts.Passwords[strings.ToLower(b.Login)] = connector.PasswordAccount{Password: b.Password, BAL: b.Address}
		}
	}
	var acc connector.Accounts = accounts
	if c.accounts != nil {
		acc = chainAccounts{c.accounts, accounts}
	}
	c.allAccts = acc
	var scanner antivirus.Scanner
	if cl := cfg.Scanner.Clamd; cl != "" {
		network, addr, _ := strings.Cut(cl, ":")
		scanner = &antivirus.ClamAV{Network: network, Addr: addr, Timeout: cfg.Scanner.Timeout}
	}
	mk := func(name string, mode connector.Mode, implicit bool) error {
		s, err := connector.NewServer(&connector.ServerOptions{Mode: mode, Hostname: cfg.Hostname, TLS: tlsOpts, GetCertificate: getCert,
			ImplicitTLS: implicit, RequireNIL: cfg.Submission.RequireNIL, Policy: c.policy, LocalDomains: cfg.Domains, Local: c.local, Accounts: acc,
			AllowPlain: cfg.Submission.AllowPlain && cfg.Auth.AllowPasswords, OAuth: c.oauth, AuthLimiter: c.auth, Queue: c.queue, Scanner: scanner,
			ScanUnavailablePermanent: cfg.Scanner.OnError == "reject", Audit: c.audit, Metrics: c.metrics,
			MaxMessageBytes: cfg.Limits.MaxMessageBytes, MaxRecipients: cfg.Limits.MaxRecipients,
			MaxLineLength: cfg.Limits.MaxLineLength, ReadTimeout: cfg.Limits.ReadTimeout, WriteTimeout: cfg.Limits.WriteTimeout,
			MaxConns: cfg.Limits.MaxConnections, MaxConnsPerPeer: cfg.Limits.MaxConnectionsPerPeer, ConnShare: c.opts.connShare(name),
			CommandTimeout: cfg.Limits.CommandTimeout, DataTimeout: cfg.Limits.DataTimeout,
			SessionTimeout: cfg.Limits.SessionTimeout, HandshakeTimeout: cfg.Limits.HandshakeTimeout, Logger: c.logger})
		if err != nil {
			return err
		}
		c.servers[name] = s
		return nil
	}
	if err := mk("relay", connector.ModeRelay, false); err != nil {
		return err
	}
	if err := mk("submission", connector.ModeSubmission, false); err != nil {
		return err
	}
	if err := mk("submission_tls", connector.ModeSubmission, true); err != nil {
		return err
	}
	var err error
	c.delivery, err = connector.NewDelivery(&connector.DeliveryOptions{Hostname: cfg.Hostname, TLS: tlsOpts,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.cert.Load(), nil },
		Policy:               c.policy, LocalDomains: cfg.Domains, Local: c.local, Routes: cfg.Delivery.Routes, Resolver: c.opts.Resolver,
		Port: cfg.Delivery.Port, MaxPerDestination: cfg.Delivery.MaxPerDestination, IdleTimeout: cfg.Delivery.IdleTimeout,
		MaxMessagesPerConn: cfg.Delivery.MaxMessagesPerConnection, ConnectTimeout: cfg.Delivery.ConnectTimeout,
		CommandTimeout: cfg.Delivery.CommandTimeout, Audit: c.audit, Metrics: c.metrics, Logger: c.logger, Now: c.now})
	return err
}

// routes returns the static routes in use.
func (c *mta) routes() map[string]string {
	if r := c.liveRoutes.Load(); r != nil {
		return *r
	}
	return c.cfg.Delivery.Routes
}

// setRoutes makes delivery follow routes from its next message on.
func (c *mta) setRoutes(routes map[string]string) {
	r := maps.Clone(routes)
	c.liveRoutes.Store(&r)
	c.delivery.SetRoutes(r)
}

// reload re-reads the certificate and key, the CRL files and the whitelist file (or asks the
// whitelist store for a refresh). On error the previous material stays in use.
func (c *mta) reload() error {
	var errs []error
	c.refreshCRLs()
	if err := c.loadCertAndCRLs(); err != nil {
		errs = append(errs, err)
	}
	if c.store != nil {
		c.store.RefreshSoon()
	} else {
		vo := whitelist.VerifyOptions{Roots: c.trust.Roots(), Signer: c.cfg.Whitelist.Signer, UseListDate: c.cfg.Whitelist.UseListDate, At: c.now}
		if err := c.loadWhitelistFile(&vo); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		c.logger.Error("node: reload failed, previous material kept", "err", err)
	} else {
		c.logger.Info("node: reloaded certificate, CRLs and whitelist")
	}
	return err
}

// serve listens (on Options.Listeners or the configured addresses), runs delivery and the
// whitelist refresh, and blocks until ctx is done; it then stops accepting, lets the sessions
// in a transaction end (up to [limits] shutdown_grace, then cuts them unacknowledged), stops
// delivery and closes the queue and the audit log.
func (c *mta) serve(ctx context.Context) error {
	addrs := map[string]string{"relay": c.cfg.Relay.Listen, "submission": c.cfg.Submission.Listen,
		"submission_tls": c.cfg.Submission.ListenTLS, "metrics": c.cfg.Metrics.Listen}
	lns := map[string]net.Listener{}
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	for _, name := range []string{"relay", "submission", "submission_tls", "metrics"} {
		if l, ok := c.opts.Listeners[name]; ok {
			lns[name] = l
			continue
		}
		if c.opts.Listeners != nil || addrs[name] == "" {
			continue
		}
		l, err := net.Listen("tcp", addrs[name])
		if err != nil {
			closeAll()
			return fmt.Errorf("node: %s: %w", name, err)
		}
		lns[name] = l
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if c.crl != nil {
		wg.Go(func() { c.crl.Run(ctx) })
	}
	for name, s := range c.servers {
		l, ok := lns[name]
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Serve(l); err != nil && !errors.Is(err, connector.ErrServerClosed) {
				c.logger.Error("node: listener stopped", "listener", name, "err", err)
			}
		}()
		c.logger.Info("node: listening", "listener", name, "addr", l.Addr().String())
	}
	var httpSrv *http.Server
	if l, ok := lns["metrics"]; ok {
		mux := http.NewServeMux()
		mux.Handle("/metrics", c.metrics)
		c.handleHealth(mux)
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go httpSrv.Serve(l)
	}
	close(c.listening)
	up := maps.Clone(c.otherListeners)
	if up == nil {
		up = map[string]string{}
	}
	for name, l := range lns {
		up[name] = l.Addr().String()
	}
	c.logReady(up)
	if c.store != nil {
		go c.store.Run(ctx)
	}
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		c.queue.Run(ctx, c.delivery, &queue.RunOptions{Workers: c.cfg.Delivery.Workers, OnResult: c.onResult,
			Notifier: &connector.DSNNotifier{Queue: c.queue, Hostname: c.cfg.Hostname, GiveUp: c.cfg.Queue.GiveUp, Now: c.now}})
	}()
	<-ctx.Done()
	c.logger.Info("node: shutting down")
	// Idle pooled outbound sessions first: a peer stopping at the same time waits for them in
	// its own Shutdown, so keeping them until the idle timeout would hold both stops.
	c.delivery.Close()
	sctx, scancel := context.WithTimeout(context.Background(), c.cfg.Limits.ShutdownGrace)
	defer scancel()
	for _, s := range c.servers {
		if err := s.Shutdown(sctx); err != nil {
			// A session still in a transaction after the grace period is cut, and waited for
			// briefly, so that no session writes to the queue once it is closed below.
			c.logger.Warn("node: sessions still open after the grace period; closing them", "err", err)
			s.Close()
			wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.Shutdown(wctx)
			wcancel()
		}
	}
	if httpSrv != nil {
		httpSrv.Shutdown(sctx)
	}
	wg.Wait()
	<-runDone
	c.queue.Close()
	c.delivery.Close()
	c.audit.Close()
	return nil
}

// chainAccounts asks each Accounts in turn; the first that knows the credentials answers.
type chainAccounts []connector.Accounts

func (c chainAccounts) BALForCertificate(ctx context.Context, dn string, cert *x509.Certificate) (string, error) {
	for _, a := range c {
		if bal, err := a.BALForCertificate(ctx, dn, cert); !errors.Is(err, connector.ErrUnknownAccount) {
			return bal, err
		}
	}
	return "", connector.ErrUnknownAccount
}

func (c chainAccounts) BALForPassword(ctx context.Context, user, pass string) (string, error) {
	for _, a := range c {
		if bal, err := a.BALForPassword(ctx, user, pass); !errors.Is(err, connector.ErrUnknownAccount) {
			return bal, err
		}
	}
	return "", connector.ErrUnknownAccount
}
