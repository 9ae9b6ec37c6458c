package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/transport/revocation"
)

// doctorRevocation checks the revocation material of an "mssante serve" configuration: each
// CRL address answers and gives a valid CRL (fetched into memory only: the node's cache is not
// written), each CA's CRL held is fresh, and, with tls.ocsp on, the OCSP responder answers
// about our certificate.
func doctorRevocation(ctx context.Context, path string, now time.Time) []doctorCheck {
	var out doctorOut
	cfg, err := node.LoadConfigFile(path)
	if err != nil {
		out.add(doctorFail, "configuration "+path, err.Error(), "fix the file (mssante serve --check-config)")
		return out
	}
	trust, err := cfg.NewTrustStore()
	if err != nil {
		out.add(doctorFail, "trusted CAs of "+path, err.Error(), "fix tls.ca_files")
		return out
	}
	cached, _ := filepath.Glob(filepath.Join(cfg.CRLCacheDir(), "*.crl"))
	for _, f := range append(cfg.TLS.CRLFiles, cached...) {
		if err := trust.AddCRLFile(f); err != nil && !errors.Is(err, transport.ErrOlderCRL) {
			out.add(doctorWarn, "CRL file "+f, err.Error(), "remove it or replace it with a CRL of a trusted CA")
		}
	}
	if cfg.TLS.CRLRefreshInterval > 0 {
		f, err := revocation.New(&revocation.Options{Stores: []*transport.TrustStore{trust}, URLs: cfg.TLS.CRLURLs,
			Certificates: ownChain(cfg), Now: func() time.Time { return now }, Timeout: 15 * time.Second})
		if err == nil {
			for _, u := range f.URLsToFetch() {
				if err := f.RefreshURL(ctx, u); err != nil {
					out.add(doctorWarn, "CRL download "+u, err.Error(), "check that the address answers from this host (proxy, firewall)")
				} else {
					out.add(doctorOK, "CRL download "+u, "a valid CRL of a trusted CA", "")
				}
			}
		}
	}
	crls := trust.CRLs()
	if len(crls) == 0 && cfg.TLS.Revocation != "best_effort" {
		out.add(doctorFail, "CRLs", "none held and tls.revocation is required: every peer is refused",
			"set tls.crl_urls or tls.crl_files, then mssante cert crl refresh --config "+path)
	}
	for _, crl := range crls {
		name := "CRL of " + issuerName(trust, crl)
		left := crl.NextUpdate.Sub(now)
		switch {
		case crl.NextUpdate.IsZero():
			out.add(doctorOK, name, "no next update", "")
		case left < -cfg.TLS.CRLGrace:
			out.add(doctorFail, name, fmt.Sprintf("past its next update (%s) and grace: its certificates are refused",
				crl.NextUpdate.UTC().Format(time.RFC3339)), "mssante cert crl refresh --config "+path)
		case left < 24*time.Hour:
			out.add(doctorWarn, name, fmt.Sprintf("next update %s, in less than a day", crl.NextUpdate.UTC().Format(time.RFC3339)),
				"check that the node fetches it (mssante_crl_fetch_errors_total)")
		default:
			out.add(doctorOK, name, fmt.Sprintf("fresh, next update %s", crl.NextUpdate.UTC().Format(time.RFC3339)), "")
		}
	}
	if cfg.TLS.OCSP != "off" {
		out = append(out, doctorOCSP(cfg, trust, now))
	}
	return out
}

func ownChain(cfg *node.Config) []*x509.Certificate {
	data, err := os.ReadFile(cfg.TLS.CertFile)
	if err != nil {
		return nil
	}
	certs, _ := transport.ParseCertificates(data)
	return certs
}

// issuerName is the DN of the CA of crl in whitelist form.
func issuerName(trust *transport.TrustStore, crl *x509.RevocationList) string {
	for _, ca := range trust.CAs() {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) {
			return transport.SubjectDN(ca)
		}
	}
	return crl.Issuer.String()
}

// doctorOCSP asks the OCSP responder about our own certificate.
func doctorOCSP(cfg *node.Config, trust *transport.TrustStore, now time.Time) doctorCheck {
	chain := ownChain(cfg)
	name := "OCSP responder"
	var issuer *x509.Certificate
	if len(chain) > 0 {
		for _, ca := range append(chain[1:], trust.CAs()...) {
			if chain[0].CheckSignatureFrom(ca) == nil {
				issuer = ca
				break
			}
		}
	}
	if issuer == nil {
		return doctorCheck{doctorWarn, name, "the CA of our certificate is not known: nothing to ask about", "check tls.cert_file and tls.ca_files"}
	}
	checker := revocation.NewOCSP(&revocation.OCSPOptions{URL: cfg.TLS.OCSPURL, Timeout: 15 * time.Second})
	switch err := checker.CheckOCSP(chain[0], issuer, now); {
	case err == nil:
		return doctorCheck{doctorOK, name, "answers: our certificate is good", ""}
	case errors.Is(err, transport.ErrRevoked):
		return doctorCheck{doctorFail, name, "answers: our certificate is REVOKED", "order a new certificate from the IGC-Santé"}
	default:
		return doctorCheck{doctorWarn, name, err.Error(), "check tls.ocsp_url and that the responder answers from this host"}
	}
}
