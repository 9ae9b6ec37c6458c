package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/httpapi"
	"github.com/mssante-go/sdk/transport/webhook"
)

// api is the HTTP API of the node's BALs: the httpapi Handler over the submission server
// (httpapi.ConnectorSender), its TLS server and its webhooks.
type api struct {
	sender *httpapi.ConnectorSender
	server *httpapi.Server
	hooks  *webhook.Dispatcher // nil without [[api.webhook]]
}

// buildAPI builds the API of [api] over the submission server; nil when disabled.
func (c *mta) buildAPI(accounts connector.Accounts) (*api, error) {
	cfg := c.cfg.API
	if !cfg.Enabled {
		return nil, nil
	}
	dir := cfg.StateDir
	if dir == "" {
		dir = filepath.Join(c.cfg.SpoolDir, "api")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: api: %w", err)
	}
	a := &api{}
	var eps []webhook.Endpoint
	for _, w := range cfg.Webhooks {
		if err := transport.CheckKeyFileMode(w.SecretFile); err != nil {
			return nil, fmt.Errorf("node: api: webhook secret: %w", err)
		}
		b, err := os.ReadFile(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("node: api: webhook secret: %w", err)
		}
		eps = append(eps, webhook.Endpoint{BAL: strings.ToLower(w.BAL), URL: w.URL, Secret: []byte(strings.TrimSpace(string(b)))})
	}
	if len(eps) > 0 {
		var err error
		a.hooks, err = webhook.New(&webhook.Options{Dir: filepath.Join(dir, "webhooks"), Endpoints: eps,
			AllowInsecure: cfg.WebhookAllowInsecure, Timeout: cfg.WebhookTimeout, MinBackoff: cfg.WebhookMinBackoff,
			MaxBackoff: cfg.WebhookMaxBackoff, MaxAge: cfg.WebhookMaxAge, Logger: c.logger.With("component", "webhook"), Now: c.opts.Now})
		if err != nil {
			return nil, fmt.Errorf("node: api: %w", err)
		}
	}
	serves := func(addr string) bool {
		i := strings.LastIndexByte(addr, '@')
		return i > 0 && slices.Contains(c.cfg.Domains, addr[i+1:]) && c.local.Lookup(context.Background(), addr) == nil
	}
	var err error
	a.sender, err = httpapi.NewConnectorSender(&httpapi.ConnectorOptions{Submitter: c.servers["submission"], Serves: serves,
		StateDir: dir, NIL: cfg.NIL, MaxMessageSize: c.cfg.Limits.MaxMessageBytes, Webhooks: a.hooks,
		Logger: c.logger.With("component", "api"), Now: c.opts.Now})
	if err != nil {
		return nil, fmt.Errorf("node: api: %w", err)
	}
	var auth httpapi.Authenticator = &httpapi.CertificateAuth{Trust: c.trust, Accounts: accounts, Now: c.now}
	if c.oauth != nil {
		// The token opens the person's one BAL (psc.Authenticator with no BAL named).
		auth = httpapi.FirstOf(auth, &httpapi.BearerAuth{Verify: func(ctx context.Context, token string) (*httpapi.Caller, error) {
			l, err := c.oauth.Authenticate(ctx, "", token)
			if err != nil {
				return nil, err
			}
			return &httpapi.Caller{BALs: []string{l.BAL}, Subject: "psc"}, nil
		}})
	}
	h, err := httpapi.New(&httpapi.Options{Sender: a.sender, Auth: auth, StateDir: filepath.Join(dir, "handler"),
		Webhooks: a.hooks, MaxBodySize: cfg.MaxBodyBytes, SendTimeout: cfg.SendTimeout,
		Logger: c.logger.With("component", "api"), Now: c.opts.Now})
	if err != nil {
		return nil, fmt.Errorf("node: api: %w", err)
	}
	a.server, err = httpapi.NewServer(h, &httpapi.ServerOptions{TLS: transport.TLSOptions{Trust: c.trust, Time: c.now,
		AllowTLS13: c.cfg.TLS.AllowTLS13, AllowCBC: c.cfg.TLS.AllowCBC},
		GetCertificate:    func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil },
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout,
		IdleTimeout: cfg.IdleTimeout, Logger: c.logger.With("component", "api")})
	if err != nil {
		return nil, fmt.Errorf("node: api: %w", err)
	}
	return a, nil
}

// serve runs the API on l and the webhooks until ctx ends, then shuts the server down.
func (a *api) serve(ctx context.Context, l net.Listener, wg *sync.WaitGroup, log func(error)) {
	wg.Go(func() {
		if err := a.server.Serve(l); err != nil && !errors.Is(err, httpapi.ErrServerClosed) {
			log(err)
		}
	})
	if a.hooks != nil {
		wg.Go(func() { a.hooks.Run(ctx) })
	}
}
