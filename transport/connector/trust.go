package connector

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"

	"github.com/emersion/go-smtp"

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

// DN renders the subject of cert as RFC 4514 writes it (last RDN first, so CN first for an
// IGC-Santé certificate), which is how the liste blanche writes DNCertificatOperateur; the
// whitelist compares DNs with whitelist.CanonicalDN.
func DN(cert *x509.Certificate) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(cert.RawSubject, &seq); err != nil || len(rest) != 0 {
		return cert.Subject.String()
	}
	return seq.String()
}

// domainLister is implemented by *whitelist.List.
type domainLister interface {
	Domains(fn func(domain string, entries []whitelist.Entry) bool)
}

// ListedOperator wraps a *whitelist.List (or any Policy that can enumerate its domains) into a
// Policy that also implements OperatorPolicy, so that the relay can accept null-sender mail
// (DSNs) from a client whose certificate DN is listed for at least one domain.
func ListedOperator(p interface {
	Policy
	domainLister
}) Policy {
	return listedOperator{p}
}

type listedOperator struct {
	p interface {
		Policy
		domainLister
	}
}

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
