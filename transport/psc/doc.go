// Package psc verifies Pro Santé Connect access tokens for the connector's IMAP and submission
// listeners: the SASL mechanisms XOAUTH2 and OAUTHBEARER (RFC 7628) carry the token, [Verifier]
// checks it, and [Authenticator] maps the practitioner's national id to a BAL they hold.
//
// Pro Santé Connect is an OpenID Connect provider; an access token is a JWT (RFC 7519) signed
// by the provider (RFC 7515) with one of the keys it publishes as a JWK set (RFC 7517), at the
// address its discovery document names (OpenID Connect Discovery 1.0). A token is verified in
// one of two ways:
//
//   - offline: the signature against the provider's keys (asymmetric algorithms only, so that
//     neither "none" nor an HMAC keyed with a public key passes), fetched from discovery and
//     cached, fetched again on an unknown key id at most once per [Options].MinKeyRefresh;
//     then iss, exp, nbf and iat with a small skew, aud or azp against the configured
//     clients, and acr (eidas1);
//   - by introspection (RFC 7662) with the operator's own client, authenticated by mutual TLS
//     (RFC 8705) with its IGC-Santé certificate; an active answer is cached until its exp.
//
// A provider that cannot be reached is a temporary failure ([ErrUnavailable]), never an
// accept: the listeners answer 454 4.7.0 (SMTP) or NO [UNAVAILABLE] (IMAP). Every other
// refusal is [ErrInvalidToken], and a token for someone who holds no BAL, or who names a BAL
// they do not hold, gets the same answer: the client learns nothing of who holds what.
//
// Specifications (docs/references.md): RFC 7628, RFC 7519, RFC 7515, RFC 7517, RFC 7662,
// RFC 8705, OpenID Connect Discovery, Pro Santé Connect, Ségur REM SC.MSS/CONF.07.
package psc
