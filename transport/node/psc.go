package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/mssante-go/sdk/transport/psc"
)

// PSCConfig is the table "psc": Pro Santé Connect token logins for PER and ORG BALs
// (transport/psc). Off when Issuer is empty.
type PSCConfig struct {
	Issuer           string        `toml:"issuer"`
	ClientIDs        []string      `toml:"client_ids"`
	DiscoveryURL     string        `toml:"discovery_url"`
	JWKSURL          string        `toml:"jwks_url"`
	ACR              []string      `toml:"acr"`
	IDClaim          string        `toml:"id_claim"`
	Skew             time.Duration `toml:"skew"`
	MinKeyRefresh    time.Duration `toml:"min_key_refresh"`
	Introspection    bool          `toml:"introspection"`
	IntrospectionURL string        `toml:"introspection_url"`
	ClientID         string        `toml:"client_id"`
	ClientCertFile   string        `toml:"client_cert_file"`
	ClientKeyFile    string        `toml:"client_key_file"`
	CAFile           string        `toml:"ca_file"`
	SessionLength    time.Duration `toml:"session_length"`
	EndWithToken     bool          `toml:"end_with_token"`
}

func (p *PSCConfig) check() []error {
	if p.Issuer == "" {
		return nil
	}
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("node: config: psc."+f, a...)) }
	if len(p.ClientIDs) == 0 {
		bad("client_ids is required with psc.issuer (the clients whose tokens are accepted)")
	}
	if p.Introspection && p.ClientID == "" {
		bad("client_id is required with psc.introspection")
	}
	if p.SessionLength <= 0 || p.SessionLength > psc.PSCSessionLength {
		bad("session_length must be positive and at most %v (a Pro Santé Connect session)", psc.PSCSessionLength)
	}
	if p.Skew < 0 || p.MinKeyRefresh < 0 {
		bad("skew and min_key_refresh must not be negative")
	}
	return errs
}

// Warnings are the settings that weaken authentication, for the start-up log and doctor.
func (c *Config) Warnings() []string {
	var w []string
	if c.Auth.AllowPasswords {
		w = append(w, "auth.allow_passwords is on: PER and ORG BALs may log in with a password, which the ANS no longer "+
			"accepts alone for health professionals since 1 January 2026; set [psc] and turn it off")
	}
	return w
}

// pscAuthenticator builds the token authenticator of [psc], or nil when it is off.
func (c *Config) pscAuthenticator(holdings psc.Holdings, now func() time.Time) (*psc.Authenticator, error) {
	p := &c.PSC
	if p.Issuer == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.CAFile != "" {
		b, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("node: psc.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("node: psc.ca_file %s: no PEM certificate", p.CAFile)
		}
	}
	opts := &psc.Options{Issuer: p.Issuer, ClientIDs: p.ClientIDs, DiscoveryURL: p.DiscoveryURL, JWKSURL: p.JWKSURL,
		ACR: p.ACR, IDClaim: p.IDClaim, Skew: p.Skew, MinKeyRefresh: p.MinKeyRefresh, Now: now}
	if p.Introspection {
		certFile, keyFile := p.ClientCertFile, p.ClientKeyFile
		if certFile == "" {
			certFile, keyFile = c.TLS.CertFile, c.TLS.KeyFile
		}
		crt, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("node: psc introspection client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{crt}
		opts.Introspection = &psc.Introspection{URL: p.IntrospectionURL, ClientID: p.ClientID}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	opts.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: t}
	v, err := psc.New(opts)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return &psc.Authenticator{Verifier: v, Holdings: holdings, SessionLength: p.SessionLength, EndWithToken: p.EndWithToken}, nil
}
