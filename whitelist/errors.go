package whitelist

import "errors"

// Errors of parsing and verification. Each refusal wraps exactly one of them.
var (
	// ErrFormat: the document is not a well-formed liste blanche (wrong root or namespace, an
	// unexpected element or text, a DTD, a truncated document, a bad date or domain).
	ErrFormat = errors.New("whitelist: not a liste blanche document")
	// ErrTooLarge: a size or count limit of the parser was reached.
	ErrTooLarge = errors.New("whitelist: document exceeds a limit")
	// ErrUnsigned: the document has no Signature (the ANS GitHub mirror is such a copy).
	ErrUnsigned = errors.New("whitelist: list is not signed")
	// ErrSignatureProfile: the Signature is not in the profile the ANS uses (algorithms,
	// transforms, reference, position, a second Signature, extra elements).
	ErrSignatureProfile = errors.New("whitelist: signature not in the ANS profile")
	// ErrDigestMismatch: the signed content was changed.
	ErrDigestMismatch = errors.New("whitelist: signed content does not match its digest")
	// ErrBadSignature: the signature value does not verify with the signer's key.
	ErrBadSignature = errors.New("whitelist: signature value does not verify")
	// ErrSignerUntrusted: the signer certificate does not chain to the trusted roots, or no
	// trust anchor (roots or pinned certificate) was configured.
	ErrSignerUntrusted = errors.New("whitelist: signer certificate not trusted")
	// ErrSignerMismatch: the signer's subject is not the expected one, or the certificate is not
	// the pinned one.
	ErrSignerMismatch = errors.New("whitelist: signer is not the expected one")
	// ErrSignerExpired: the signer certificate is not valid at the verification time.
	ErrSignerExpired = errors.New("whitelist: signer certificate not valid at verification time")
	// ErrSignerRevoked: the signer certificate is on a CRL of its issuer.
	ErrSignerRevoked = errors.New("whitelist: signer certificate revoked")
)

// Errors of the policy.
var (
	// ErrDomainNotListed: the domain is not in the liste blanche.
	ErrDomainNotListed = errors.New("whitelist: domain not listed")
	// ErrOperatorNotListed: the DN is not one of the operators listed for the domain.
	ErrOperatorNotListed = errors.New("whitelist: operator not listed for domain")
	// ErrNoList: no valid list is held yet; temporary, everything is refused until one is.
	ErrNoList = errors.New("whitelist: no valid list")
	// ErrListTooOld: the list held is older than the maximum age and the store refuses to use it;
	// temporary.
	ErrListTooOld = errors.New("whitelist: list older than the maximum age")
	// ErrRollback: a fetched list is older than the one held.
	ErrRollback = errors.New("whitelist: list older than the one held (rollback refused)")
	// ErrFutureList: a fetched list is dated more than MaxClockSkew after now; it is refused,
	// as holding it would refuse every later list as a rollback.
	ErrFutureList = errors.New("whitelist: list generated in the future")
)
