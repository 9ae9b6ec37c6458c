package connector

import (
	"errors"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

var (
	errDomainNotListed   = whitelist.ErrDomainNotListed
	errOperatorNotListed = whitelist.ErrOperatorNotListed
)

// trustErr maps a Policy error to a reply: the two not-listed errors are permanent (notListed),
// anything else (no list, a list too old, an internal error) is temporary 4.7.1: fail closed,
// and let the peer retry once a list is there.
func trustErr(err error, notListed *smtp.SMTPError) *smtp.SMTPError {
	if errors.Is(err, errDomainNotListed) || errors.Is(err, errOperatorNotListed) {
		return notListed
	}
	return replyTrustTemp
}

// certReason names the reason of a certificate refusal for the audit log.
func certReason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{transport.ErrUnknownAuthority, "unknown_authority"}, {transport.ErrBadSignature, "bad_signature"},
		{transport.ErrExpired, "expired"}, {transport.ErrNotYetValid, "not_yet_valid"},
		{transport.ErrWrongEKU, "wrong_eku"}, {transport.ErrRevoked, "revoked"},
		{transport.ErrNoValidCRL, "no_valid_crl"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "invalid"
}

// ListPolicy is a Policy that can also enumerate the domains of its list, as *whitelist.List
// and *whitelist.Store do: what ListedOperator needs to find a DN listed for any domain.
type ListPolicy interface {
	Policy
	// Domains calls fn for each listed domain with its entries, until fn returns false.
	Domains(fn func(domain string, entries []whitelist.Entry) bool)
}

// ListedOperator wraps a ListPolicy into a Policy that also implements OperatorPolicy, so that
// the relay can accept null-sender mail (DSNs, RFC 3464) from a client whose certificate DN is
// listed for at least one domain.
func ListedOperator(p ListPolicy) Policy {
	return listedOperator{p}
}

var (
	_ ListPolicy = (*whitelist.List)(nil)
	_ ListPolicy = (*whitelist.Store)(nil)
)

type listedOperator struct{ p ListPolicy }

func (l listedOperator) CheckDomain(d string) error       { return l.p.CheckDomain(d) }
func (l listedOperator) CheckOperator(d, dn string) error { return l.p.CheckOperator(d, dn) }
func (l listedOperator) CheckOperatorAny(dn string) error {
	var found error = errOperatorNotListed
	l.p.Domains(func(d string, _ []whitelist.Entry) bool {
		if l.p.CheckOperator(d, dn) == nil {
			found = nil
			return false
		}
		return true
	})
	return found
}
