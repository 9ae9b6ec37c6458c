package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Refusals of a peer or its certificate. Each is returned wrapped (in a [*CertError] for
// certificate checks) by the side that detects it; test them with errors.Is.
var (
	// ErrUnknownAuthority: the chain does not lead to a root of the trust store.
	ErrUnknownAuthority = errors.New("transport: certificate signed by an unknown authority")
	// ErrBadSignature: the certificate names a CA of the trust store as its issuer but that CA
	// did not sign it (for example a self-signed certificate carrying the intermediate's name).
	ErrBadSignature = errors.New("transport: certificate signature does not verify with its named issuer")
	// ErrExpired: the certificate (or a CA of its chain) is past its NotAfter date.
	ErrExpired = errors.New("transport: certificate expired")
	// ErrNotYetValid: the certificate (or a CA of its chain) is before its NotBefore date.
	ErrNotYetValid = errors.New("transport: certificate not yet valid")
	// ErrWrongEKU: the certificate lacks the extended key usage of its role (serverAuth for a
	// server, clientAuth for a client).
	ErrWrongEKU = errors.New("transport: certificate not valid for this usage (extended key usage)")
	// ErrRevoked: a valid CRL of the issuer lists the certificate.
	ErrRevoked = errors.New("transport: certificate revoked")
	// ErrOlderCRL: a CRL older than the one held for its CA was offered and refused (the held
	// one stays in use).
	ErrOlderCRL = errors.New("transport: CRL older than the one held")
	// ErrNoValidCRL: no CRL of the issuer is valid at the verification time and the trust store's
	// revocation policy is to fail closed (the default).
	ErrNoValidCRL = errors.New("transport: no valid CRL for the certificate's issuer")
	// ErrBadCertificate: the chain fails another check of x509 verification (name constraints,
	// path length, unsupported algorithm, malformed certificate, …).
	ErrBadCertificate = errors.New("transport: certificate invalid")
	// ErrHostname: the server certificate is not valid for the host name dialled.
	ErrHostname = errors.New("transport: certificate not valid for the host name")
	// ErrNoClientCert: the client presented no certificate to a server that requires one.
	ErrNoClientCert = errors.New("transport: no client certificate")
	// ErrNoPeerCertificate: the connection has no peer certificate to identify.
	ErrNoPeerCertificate = errors.New("transport: no peer certificate")
	// ErrProtocolVersion: the client offers no TLS version the server accepts (TLS 1.2, and 1.3
	// when enabled).
	ErrProtocolVersion = errors.New("transport: no acceptable TLS version offered")
	// ErrCipherSuite: the client offers none of the accepted cipher suites.
	ErrCipherSuite = errors.New("transport: no acceptable cipher suite offered")
)

// CertError is a refused certificate: Reason is one of the sentinels above, Subject the refused
// certificate's DN in whitelist form, Err the underlying error when there is one (for example an
// x509.CertificateInvalidError). errors.Is matches Reason, errors.As reaches Err.
type CertError struct {
	Reason  error
	Subject string
	Err     error
}

func (e *CertError) Error() string {
	s := e.Reason.Error()
	if e.Subject != "" {
		s += " (" + e.Subject + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the reason and the underlying error.
func (e *CertError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

func certErr(reason error, c *x509.Certificate, err error) *CertError {
	e := &CertError{Reason: reason, Err: err}
	if c != nil {
		e.Subject = SubjectDN(c)
	}
	return e
}

// classify turns an error of x509 verification (possibly wrapped by crypto/tls) into a
// *CertError with its reason, naming leaf (when known) as the refused certificate. knownIssuer
// reports whether the trust store knows a CA whose subject is c's issuer (then an
// unknown-authority failure is a bad signature). Errors that are not certificate verification
// errors are returned unchanged.
func classify(err error, at time.Time, knownIssuer func(*x509.Certificate) bool, leaf *x509.Certificate) error {
	var ce *CertError
	if err == nil || errors.As(err, &ce) {
		return err
	}
	var ci x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) && leaf == nil && len(cve.UnverifiedCertificates) > 0 {
		leaf = cve.UnverifiedCertificates[0]
	}
	// name returns the certificate to name in the error: the leaf, else the one x509 blames.
	name := func(c *x509.Certificate) *x509.Certificate {
		if leaf != nil {
			return leaf
		}
		return c
	}
	switch {
	case errors.As(err, &ci):
		switch ci.Reason {
		case x509.Expired:
			if ci.Cert != nil && at.Before(ci.Cert.NotBefore) {
				return certErr(ErrNotYetValid, name(ci.Cert), err)
			}
			return certErr(ErrExpired, name(ci.Cert), err)
		case x509.IncompatibleUsage:
			return certErr(ErrWrongEKU, name(ci.Cert), err)
		default:
			return certErr(ErrBadCertificate, name(ci.Cert), err)
		}
	case errors.As(err, &ua):
		c := ua.Cert
		if c == nil {
			c = leaf
		}
		if c != nil && knownIssuer != nil && knownIssuer(c) {
			return certErr(ErrBadSignature, name(c), err)
		}
		return certErr(ErrUnknownAuthority, name(c), err)
	case errors.As(err, &he):
		return certErr(ErrHostname, name(he.Certificate), err)
	case cve != nil:
		return certErr(ErrBadCertificate, leaf, err)
	}
	return err
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("transport: "+format, args...)
}
