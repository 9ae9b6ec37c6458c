package node

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// APIConfig is the table "api": the HTTP API of the BALs (transport/httpapi) served by the
// node, and its webhooks (transport/webhook).
type APIConfig struct {
	Enabled bool   `toml:"enabled"`
	Listen  string `toml:"listen"`
	// StateDir holds the idempotency records, the records of sent messages and the pending
	// webhook events; default the spool's "api" folder.
	StateDir string `toml:"state_dir"`
	// NIL is the X-MSS-NIL of the messages the API composes from JSON.
	NIL          string `toml:"nil"`
	MaxBodyBytes int64  `toml:"max_body_bytes"`
	// ReceiptsOnly are the APP BALs whose ordinary mail the API leaves in the mailbox for a
	// DPI's own reader (bal.Watch): it follows only their DSNs and MDNs.
	ReceiptsOnly []string `toml:"receipts_only"`

	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	ReadTimeout       time.Duration `toml:"read_timeout"`
	WriteTimeout      time.Duration `toml:"write_timeout"`
	IdleTimeout       time.Duration `toml:"idle_timeout"`
	SendTimeout       time.Duration `toml:"send_timeout"`

	WebhookTimeout       time.Duration   `toml:"webhook_timeout"`
	WebhookMinBackoff    time.Duration   `toml:"webhook_min_backoff"`
	WebhookMaxBackoff    time.Duration   `toml:"webhook_max_backoff"`
	WebhookMaxAge        time.Duration   `toml:"webhook_max_age"`
	WebhookAllowInsecure bool            `toml:"webhook_allow_insecure"`
	Webhooks             []WebhookConfig `toml:"webhook"`
}

// WebhookConfig is one [[api.webhook]] endpoint: the BAL whose events it receives, its URL
// and the file holding its signing secret.
type WebhookConfig struct {
	BAL        string `toml:"bal"`
	URL        string `toml:"url"`
	SecretFile string `toml:"secret_file"`
}

// check reports what is wrong in the table, all at once; nil when the API is disabled.
func (a *APIConfig) check() error {
	if !a.Enabled {
		return nil
	}
	var errs []error
	bad := func(f string, v ...any) { errs = append(errs, fmt.Errorf("node: config: api."+f, v...)) }
	if _, _, err := net.SplitHostPort(a.Listen); err != nil {
		bad("listen %q is not host:port", a.Listen)
	}
	if a.MaxBodyBytes <= 0 {
		bad("max_body_bytes must be positive")
	}
	for _, d := range []time.Duration{a.ReadHeaderTimeout, a.ReadTimeout, a.WriteTimeout, a.IdleTimeout, a.SendTimeout,
		a.WebhookTimeout, a.WebhookMinBackoff, a.WebhookMaxBackoff, a.WebhookMaxAge} {
		if d <= 0 {
			bad("timeouts, backoffs and webhook_max_age must be positive")
			break
		}
	}
	for i, b := range a.ReceiptsOnly {
		if !isAddress(b) {
			bad("receipts_only[%d]: %q is not an address", i, b)
		}
	}
	for i, w := range a.Webhooks {
		if !isAddress(w.BAL) {
			bad("webhook[%d]: bal %q is not an address", i, w.BAL)
		}
		if u, err := url.Parse(w.URL); err != nil || u.Host == "" || (u.Scheme != "https" && !(a.WebhookAllowInsecure && u.Scheme == "http")) {
			bad("webhook[%d]: url must be https://…", i)
		}
		if w.SecretFile == "" {
			bad("webhook[%d]: secret_file is required", i)
		}
	}
	return errors.Join(errs...)
}
