// Package revocation keeps the CRLs of a [transport.TrustStore] fresh by itself: it fetches
// them over HTTP(S) from the CRL distribution points written in the CA certificates of the
// store (and in the certificates given in [Options.Certificates], such as our own, whose
// points publish the CRL of their issuer), from configured URLs and from the points of
// verified peer certificates whose CA has no CRL yet ([Fetcher.Learn]), on a jittered schedule
// that comes earlier as a CRL's nextUpdate nears, and on demand ([Fetcher.Refresh]).
//
// A downloaded CRL is used only when its signature verifies with a CA of the store, it is
// not older than the CRL held for that CA (a replayed CRL cannot un-revoke a certificate;
// RFC 5280 §5.2.3 CRL number) and its nextUpdate has not passed (RFC 5280 §5.1.2.5). Each
// refusal is a named error (ErrFetch, ErrHTTPStatus, ErrTooLarge, ErrMalformed,
// ErrUnknownIssuer, ErrBadSignature, ErrRollback, ErrStale, ErrUnsupportedScheme), counted in
// mssante_crl_fetch_errors_total, and leaves the CRL held in use. Requests are conditional
// (If-None-Match / If-Modified-Since, RFC 9110 §13.1): an unchanged CRL costs a 304.
//
// The last good CRL of each CA is written to [Options.Dir] (0600) and loaded again by [New],
// so that a restart, or a CA server down at start, does not leave the node without a CRL. Past
// nextUpdate plus the store's grace ([transport.TrustOptions.CRLGrace]) the store fails closed
// (transport.ErrNoValidCRL) and the fetcher logs it at error level at each pass.
//
// LDAP distribution points (ldap://, as IGC-Santé also publishes) are not fetched: they are
// skipped when an HTTP point is given beside them and refused with ErrUnsupportedScheme
// otherwise.
//
// The fetcher is a prometheus.Collector (register it with metrics.Metrics.Register):
//
//	mssante_crl_next_update_timestamp_seconds{ca}     nextUpdate of the CRL held
//	mssante_crl_this_update_timestamp_seconds{ca}     thisUpdate of the CRL held
//	mssante_crl_last_fetch_timestamp_seconds{url}     last successful fetch (200 or 304)
//	mssante_crl_last_error_timestamp_seconds{url}     last failed fetch (0: none)
//	mssante_crl_fetch_errors_total{url,reason}        failed fetches by reason
//
// The same passes refresh CA bundles ([Options.BundleURLs], the ANS's .p7b of the IGC-Santé
// chain): their intermediates that chain to a trusted root are added and kept in Dir; a root is
// never taken from a download and nothing is removed.
//
// [OCSP] is the second source for peer certificates (RFC 6960): answers checked (certificate,
// CA, authorised responder, freshness) and cached until their nextUpdate, consulted by the
// trust store under [transport.OCSPPolicy] (mssante_ocsp_answers_total{outcome}).
//
// Log lines name the CA and the URL only.
package revocation

import (
	"errors"
)

// Refusals of a fetched CRL; test them with errors.Is.
var (
	// ErrFetch: the CRL server could not be reached or did not answer in time.
	ErrFetch = errors.New("revocation: CRL server unreachable or too slow")
	// ErrHTTPStatus: the server answered with a status other than 200 or 304.
	ErrHTTPStatus = errors.New("revocation: CRL server answered an error status")
	// ErrTooLarge: the CRL is larger than Options.MaxSize.
	ErrTooLarge = errors.New("revocation: CRL too large")
	// ErrMalformed: the body is not a DER or PEM CRL (truncated, garbage).
	ErrMalformed = errors.New("revocation: CRL malformed")
	// ErrUnknownIssuer: no CA of the trust store has the CRL's issuer name.
	ErrUnknownIssuer = errors.New("revocation: CRL issuer not in the trust store")
	// ErrBadSignature: the CRL names a CA of the store but that CA did not sign it.
	ErrBadSignature = errors.New("revocation: CRL signature does not verify with its issuer")
	// ErrRollback: the CRL is older than the one held for its CA.
	ErrRollback = errors.New("revocation: CRL older than the one held")
	// ErrStale: the CRL's nextUpdate has passed.
	ErrStale = errors.New("revocation: CRL past its next update")
	// ErrUnsupportedScheme: the distribution point is neither http nor https (ldap is not
	// fetched).
	ErrUnsupportedScheme = errors.New("revocation: distribution point scheme not fetched")
)

// reason is the metric label of an error.
func reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{{ErrFetch, "fetch"}, {ErrHTTPStatus, "http_status"}, {ErrTooLarge, "too_large"}, {ErrMalformed, "malformed"},
		{ErrUnknownIssuer, "unknown_issuer"}, {ErrBadSignature, "bad_signature"}, {ErrRollback, "rollback"},
		{ErrStale, "stale"}, {ErrUnsupportedScheme, "unsupported_scheme"}} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}
