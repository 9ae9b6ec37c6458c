package node

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mssante-go/sdk/whitelist"
)

// Listening returns a channel closed once every listener of the node is up (Serve has bound
// and started them all): the moment a service manager may be told the node is ready.
func (n *Node) Listening() <-chan struct{} { return n.mta.listening }

// NotReady lists what keeps the node from doing its job, one short line each, nil when it is
// ready: listeners not up yet, no liste blanche held or one older than its maximum age
// (whitelist.DefaultMaxAge), a CRL past its next update, or no CRL at all when revocation is
// required. The lines name files, CAs and dates, never mail content.
func (n *Node) NotReady() []string { return n.mta.notReady() }

func (c *mta) notReady() []string {
	var out []string
	select {
	case <-c.listening:
	default:
		out = append(out, "listeners: not up yet")
	}
	now := c.now()
	switch l := c.currentList(); {
	case l == nil:
		out = append(out, "whitelist: no liste blanche held")
	case c.store != nil && c.store.State().TooOld, c.store == nil && now.Sub(l.Generated()) > whitelist.DefaultMaxAge:
		out = append(out, fmt.Sprintf("whitelist: the list held was generated %s, too old", l.Generated().UTC().Format(time.RFC3339)))
	}
	crls := c.trust.CRLs()
	if len(crls) == 0 && c.cfg.TLS.Revocation != "best_effort" {
		out = append(out, "crl: none held and tls.revocation is required")
	}
	for _, crl := range crls {
		// Within tls.crl_grace the CRL is still used: the node can do its job.
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate.Add(c.cfg.TLS.CRLGrace)) {
			out = append(out, fmt.Sprintf("crl: the CRL of %s is past its next update and grace (%s)",
				crl.Issuer.String(), crl.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

// handleHealth adds /healthz (the process answers) and /readyz (200 when NotReady is empty,
// else 503 with its lines) to mux, in plain text for probes and for people alike.
func (c *mta) handleHealth(mux *http.ServeMux) {
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		lines := c.notReady()
		if len(lines) == 0 {
			io.WriteString(w, "ready\n")
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, l := range lines {
			io.WriteString(w, l+"\n")
		}
	})
}
