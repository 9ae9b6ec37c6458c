package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/transport/webhook"
)

// NodeAPIOptions configure NewNodeAPI.
type NodeAPIOptions struct {
	// Logger receives operational events (IDs and BAL addresses, never content).
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NodeAPI is the API of the BALs of a node, from the [api] table of its configuration: the
// Handler over a ConnectorSender on the node's submission server, callers authenticated by
// their client certificate (the node's trust store and accounts) or, with [psc], a Pro Santé
// Connect token; the webhooks of [[api.webhook]]. With a mailbox store, it follows the BALs'
// INBOX there: receipts update the status of what the API sent, and the received messages of
// the APP BALs are listed and answered. "mssante serve" runs it beside the node.
type NodeAPI struct {
	server *Server
	hooks  *webhook.Dispatcher // nil without endpoints
	follow *storeFollower      // nil without a mailbox store
	log    *slog.Logger
}

// NewNodeAPI builds the API of n from cfg (the node's configuration, [api] enabled) and
// hooks its sender to n's queue results; call it before n.Serve.
func NewNodeAPI(n *node.Node, cfg *node.Config, opts *NodeAPIOptions) (*NodeAPI, error) {
	var o NodeAPIOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	ac := cfg.API
	if !ac.Enabled {
		return nil, fmt.Errorf("%w: [api] is not enabled", ErrConfig)
	}
	dir := ac.StateDir
	if dir == "" {
		dir = filepath.Join(cfg.SpoolDir, "api")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	a := &NodeAPI{log: o.Logger}
	var eps []webhook.Endpoint
	for _, w := range ac.Webhooks {
		if err := transport.CheckKeyFileMode(w.SecretFile); err != nil {
			return nil, fmt.Errorf("httpapi: webhook secret: %w", err)
		}
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("httpapi: webhook secret: %w", err)
		}
		eps = append(eps, webhook.Endpoint{BAL: strings.ToLower(w.BAL), URL: w.URL, Secret: []byte(strings.TrimSpace(string(b)))})
	}
	if len(eps) > 0 {
		var err error
		a.hooks, err = webhook.New(&webhook.Options{Dir: filepath.Join(dir, "webhooks"), Endpoints: eps,
			AllowInsecure: ac.WebhookAllowInsecure, Timeout: ac.WebhookTimeout, MinBackoff: ac.WebhookMinBackoff,
			MaxBackoff: ac.WebhookMaxBackoff, MaxAge: ac.WebhookMaxAge, Logger: o.Logger.With("component", "webhook"), Now: o.Now})
		if err != nil {
			return nil, fmt.Errorf("httpapi: %w", err)
		}
	}
	sender, err := NewConnectorSender(&ConnectorOptions{Submitter: n.Submission(), Serves: n.HasBAL, StateDir: dir,
		NIL: ac.NIL, MaxMessageSize: cfg.Limits.MaxMessageBytes, Webhooks: a.hooks, Logger: o.Logger, Now: o.Now})
	if err != nil {
		return nil, err
	}
	var auth Authenticator = &CertificateAuth{Trust: n.Trust(), Accounts: n.Accounts(), Now: now}
	if pa := n.OAuth(); pa != nil {
		// The token opens every BAL its holder holds, by the rule of IMAP and SMTP (their PER
		// BAL, the ORG BALs they are a member of): each request names its BAL.
		auth = FirstOf(auth, &BearerAuth{Verify: func(ctx context.Context, token string) (*Caller, error) {
			_, held, err := pa.Held(ctx, token)
			if err != nil {
				return nil, err
			}
			return &Caller{BALs: held, Subject: "psc"}, nil
		}})
	}
	h, err := New(&Options{Sender: sender, Auth: auth, StateDir: filepath.Join(dir, "handler"), Webhooks: a.hooks,
		MaxBodySize: ac.MaxBodyBytes, SendTimeout: ac.SendTimeout, Logger: o.Logger, Now: o.Now})
	if err != nil {
		return nil, err
	}
	a.server, err = NewServer(h, &ServerOptions{TLS: transport.TLSOptions{Trust: n.Trust(), Time: now,
		AllowTLS13: cfg.TLS.AllowTLS13, AllowCBC: cfg.TLS.AllowCBC}, GetCertificate: n.GetCertificate,
		ReadHeaderTimeout: ac.ReadHeaderTimeout, ReadTimeout: ac.ReadTimeout, WriteTimeout: ac.WriteTimeout,
		IdleTimeout: ac.IdleTimeout, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	if n.Store != nil {
		a.follow = &storeFollower{h: h, s: sender, store: n.Store, maxSize: cfg.Limits.MaxMessageBytes + 64<<10,
			receiptsOnly: map[string]bool{}, log: o.Logger}
		for _, b := range ac.ReceiptsOnly {
			a.follow.receiptsOnly[strings.ToLower(b)] = true
		}
		h.node = a.follow
	}
	n.OnQueueResult(sender.OnResult)
	return a, nil
}

// Serve serves the API on l and delivers the webhooks until ctx ends, then lets the requests
// in progress end (up to grace) and returns.
func (a *NodeAPI) Serve(ctx context.Context, l net.Listener, grace time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if a.hooks != nil {
		wg.Go(func() { a.hooks.Run(ctx) })
	}
	if a.follow != nil {
		wg.Go(func() { a.follow.run(ctx) })
	}
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(l) }()
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		if a.server.Shutdown(sctx) != nil {
			a.server.Close()
		}
		cancel()
		<-errc
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	if errors.Is(err, ErrServerClosed) {
		err = nil
	}
	return err
}
