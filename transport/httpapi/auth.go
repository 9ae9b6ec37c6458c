package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mssante-go/sdk/transport"
)

// ErrUnauthenticated reports a request without credentials an Authenticator knows, or with
// credentials it refused.
var ErrUnauthenticated = errors.New("httpapi: unauthenticated")

// ErrNoCredentials, returned by an Authenticator, means the request carries none of the kind it
// checks: FirstOf then asks the next one.
var ErrNoCredentials = errors.New("httpapi: no credentials of this kind")

// Caller is an authenticated client of the API.
type Caller struct {
	// BALs are the addresses the caller may use.
	BALs []string
	// Subject identifies the caller in logs: a certificate DN, a token's subject.
	Subject string
	// Token is the bearer token BearerAuth verified, for a Sender that authenticates the
	// caller again (NewConnectorSender); never logged.
	Token string

	tls  *tls.ConnectionState // of the request
	addr string               // the request's remote address
}

// may reports whether c may use the BAL addr.
func (c *Caller) may(addr string) bool {
	for _, b := range c.BALs {
		if strings.EqualFold(b, addr) {
			return true
		}
	}
	return false
}

// Authenticator finds the caller of a request. It returns ErrNoCredentials when the request
// carries none of its kind, another error when it refuses them.
type Authenticator interface {
	Authenticate(r *http.Request) (*Caller, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (*Caller, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*Caller, error) { return f(r) }

// Accounts maps a verified client certificate to its BAL; the submission server's accounts
// (connector.Accounts, connector.StaticAccounts) satisfy it, so that the API and submission
// share one mapping.
type Accounts interface {
	BALForCertificate(ctx context.Context, dn string, cert *x509.Certificate) (string, error)
}

// CertificateAuth authenticates a BAL applicative by its IGC-Santé client certificate (mutual
// TLS). The chain the client presented is verified with Trust for client authentication at
// Now, revocation included, whatever the server's TLS configuration did, so that a vendor's
// own server cannot weaken it; then Accounts maps the certificate's DN to the BAL.
type CertificateAuth struct {
	Trust    *transport.TrustStore
	Accounts Accounts
	// Now is the clock of the certificate checks; default time.Now.
	Now func() time.Time
}

// Authenticate implements Authenticator.
func (a *CertificateAuth) Authenticate(r *http.Request) (*Caller, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, ErrNoCredentials
	}
	if a.Trust == nil || a.Accounts == nil {
		return nil, errors.New("httpapi: CertificateAuth without Trust or Accounts")
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	chains, err := a.Trust.Verify(r.TLS.PeerCertificates, x509.ExtKeyUsageClientAuth, now())
	if err != nil {
		return nil, err
	}
	dn := transport.SubjectDN(chains[0][0])
	addr, err := a.Accounts.BALForCertificate(r.Context(), dn, chains[0][0])
	if err != nil {
		return nil, err
	}
	return &Caller{BALs: []string{addr}, Subject: dn}, nil
}

// BearerAuth takes an access token from "Authorization: Bearer" (RFC 6750). It is the hook
// for Pro Santé Connect, whose tokens open PER and ORG BALs: Verify checks the token
// (signature, issuer, audience, expiry) and returns the caller with the BALs of the person it
// names. The API never sees a password.
type BearerAuth struct {
	Verify func(ctx context.Context, token string) (*Caller, error)
}

// Authenticate implements Authenticator.
func (a *BearerAuth) Authenticate(r *http.Request) (*Caller, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, ErrNoCredentials
	}
	if a.Verify == nil {
		return nil, errors.New("httpapi: BearerAuth without Verify")
	}
	c, err := a.Verify(r.Context(), strings.TrimSpace(token))
	if c != nil && err == nil {
		c.Token = strings.TrimSpace(token)
	}
	return c, err
}

// FirstOf returns an Authenticator that asks each of as in turn; the first that finds its kind
// of credentials decides.
func FirstOf(as ...Authenticator) Authenticator {
	return AuthenticatorFunc(func(r *http.Request) (*Caller, error) {
		for _, a := range as {
			c, err := a.Authenticate(r)
			if errors.Is(err, ErrNoCredentials) {
				continue
			}
			return c, err
		}
		return nil, ErrNoCredentials
	})
}
