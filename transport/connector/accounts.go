package connector

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"strings"

	"github.com/mssante-go/sdk/whitelist"
)

// ErrUnknownAccount is returned by Accounts for a certificate or login bound to no BAL.
var ErrUnknownAccount = errors.New("connector: no BAL for these credentials")

// StaticAccounts is an Accounts from a fixed table (the serve configuration, tests).
type StaticAccounts struct {
	// ByDN maps a client certificate DN to its BAL address. DNs compare as
	// whitelist.CanonicalDN does (case, spaces and attribute order ignored).
	ByDN map[string]string
	// Passwords maps a login to its password and BAL (AUTH PLAIN).
	Passwords map[string]PasswordAccount
}

// PasswordAccount is a PLAIN login of StaticAccounts.
type PasswordAccount struct {
	Password string
	BAL      string
}

// BALForCertificate implements Accounts.
func (a *StaticAccounts) BALForCertificate(_ context.Context, dn string, _ *x509.Certificate) (string, error) {
	c, err := whitelist.CanonicalDN(dn)
	if err != nil {
		return "", ErrUnknownAccount
	}
	for k, bal := range a.ByDN {
		if kc, err := whitelist.CanonicalDN(k); err == nil && kc == c {
			return bal, nil
		}
	}
	return "", ErrUnknownAccount
}

// BALForPassword implements Accounts.
func (a *StaticAccounts) BALForPassword(_ context.Context, user, pass string) (string, error) {
	acc, ok := a.Passwords[strings.ToLower(user)]
	if !ok || subtle.ConstantTimeCompare([]byte(acc.Password), []byte(pass)) != 1 {
		return "", ErrUnknownAccount
	}
	return acc.BAL, nil
}
