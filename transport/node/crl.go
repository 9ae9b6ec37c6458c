package node

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/revocation"
	"github.com/prometheus/client_golang/prometheus"
)

// crlStartTimeout bounds the first CRL fetch of a node that holds no CRL at start.
const crlStartTimeout = 30 * time.Second

// trustOptions are the trust store options of the table "tls", with the OCSP checker (nil
// when tls.ocsp is off).
func trustOptions(cfg *Config, logger *slog.Logger) (*transport.TrustOptions, *revocation.OCSP) {
	rev := transport.RevocationRequired
	if cfg.TLS.Revocation == "best_effort" {
		rev = transport.RevocationBestEffort
	}
	o := &transport.TrustOptions{NoIGCSanteRoot: cfg.TLS.NoIGCSanteRoot, Revocation: rev, CRLGrace: cfg.TLS.CRLGrace}
	var checker *revocation.OCSP
	switch cfg.TLS.OCSP {
	case "ocsp_then_crl":
		o.OCSPPolicy = transport.OCSPThenCRL
	case "both":
		o.OCSPPolicy = transport.OCSPAndCRL
	default:
		return o, nil
	}
	checker = revocation.NewOCSP(&revocation.OCSPOptions{URL: cfg.TLS.OCSPURL, Logger: logger})
	o.OCSP = checker
	return o, checker
}

// NewTrustStore returns the trust store of the table "tls": the embedded IGC-Santé root unless
// no_igc_sante_root, the CAs of ca_files, the revocation policy and crl_grace (no CRL yet).
func (c *Config) NewTrustStore() (*transport.TrustStore, error) {
	trust, _, err := c.newTrustStore(nil)
	return trust, err
}

func (c *Config) newTrustStore(logger *slog.Logger) (*transport.TrustStore, *revocation.OCSP, error) {
	o, checker := trustOptions(c, logger)
	trust := transport.NewTrustStore(o)
	for _, f := range c.TLS.CAFiles {
		if err := trust.AddFile(f); err != nil {
			return nil, nil, fmt.Errorf("node: %s: %w", f, err)
		}
	}
	return trust, checker, nil
}

// CRLCacheDir is where the node keeps the last good CRL of each CA: tls.crl_cache_dir, or
// the folder "crl" of the spool.
func (c *Config) CRLCacheDir() string {
	if c.TLS.CRLCacheDir != "" {
		return c.TLS.CRLCacheDir
	}
	return filepath.Join(c.SpoolDir, "crl")
}

// NewCRLFetcher returns the CRL fetcher of cfg feeding trust (tls.crl_urls, the distribution
// points of the CAs and of our certificate, tls.crl_cache_dir), with the persisted CRLs
// already added to trust; nil when tls.crl_refresh_interval is 0 (fetching off). "mssante
// serve" runs one; "mssante cert crl refresh" uses one for a single pass.
func NewCRLFetcher(cfg *Config, trust *transport.TrustStore, now func() time.Time, logger *slog.Logger) (*revocation.Fetcher, error) {
	if cfg.TLS.CRLRefreshInterval <= 0 {
		return nil, nil
	}
	var own []*x509.Certificate
	if crt, err := transport.LoadKeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err == nil {
		for _, der := range crt.Certificate {
			if c, err := x509.ParseCertificate(der); err == nil {
				own = append(own, c)
			}
		}
	}
	f, err := revocation.New(&revocation.Options{Stores: []*transport.TrustStore{trust}, Certificates: own,
		URLs: cfg.TLS.CRLURLs, BundleURLs: cfg.TLS.CABundleURLs, Dir: cfg.CRLCacheDir(), Interval: cfg.TLS.CRLRefreshInterval, Now: now, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return f, nil
}

// startCRL builds the fetcher of the mail path and, when no CRL is held yet (first start,
// no crl_files), fetches once before our own certificate is verified.
func (c *mta) startCRL() error {
	if err := c.metrics.Register(caExpiry{c}); err != nil {
		return err
	}
	var err error
	if c.crl, err = NewCRLFetcher(c.cfg, c.trust, c.opts.Now, c.logger.With("component", "crl")); err != nil || c.crl == nil {
		return err
	}
	c.trust.OnNoCRL(c.crl.Learn)
	if len(c.trust.CRLs()) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), crlStartTimeout)
		defer cancel()
		if err := c.crl.Refresh(ctx); err != nil {
			c.logger.Warn("node: first CRL fetch failed", "err", err)
		}
	}
	return c.metrics.Register(c.crl)
}

// registerOCSP exposes the OCSP answers when tls.ocsp is on.
func (c *mta) registerOCSP(checker *revocation.OCSP) error {
	if checker == nil {
		return nil
	}
	return c.metrics.Register(checker)
}

// refreshCRLs runs one CRL pass on reload; a failure is logged, the CRLs held stay.
func (c *mta) refreshCRLs() {
	if c.crl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), crlStartTimeout)
	defer cancel()
	if err := c.crl.Refresh(ctx); err != nil {
		c.logger.Warn("node: CRL refresh failed, CRLs held kept", "err", err)
	}
}

// caExpiry exposes the time to expiry of every CA the node trusts.
type caExpiry struct{ c *mta }

var descCAExpiry = prometheus.NewDesc("mssante_ca_certificate_expiry_seconds",
	"Seconds until a trusted CA certificate expires, by CA.", []string{"ca"}, nil)

func (e caExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- descCAExpiry }

func (e caExpiry) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	for _, ca := range e.c.trust.CAs() {
		dn := transport.SubjectDN(ca)
		if seen[dn] { // the same CA re-issued: its first copy
			continue
		}
		seen[dn] = true
		ch <- prometheus.MustNewConstMetric(descCAExpiry, prometheus.GaugeValue, ca.NotAfter.Sub(e.c.now()).Seconds(), dn)
	}
}
