package psc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PSCSessionLength is the length of a Pro Santé Connect session (4 h): no session opened with
// one of its tokens outlives it.
const PSCSessionLength = 4 * time.Hour

// Holdings says which BALs a person holds: the PER BALs whose holder they are and the ORG
// BALs they are a member of. mailbox.SQLite implements it.
type Holdings interface {
	BALsHeldBy(ctx context.Context, nationalID string) ([]string, error)
}

// Authenticator turns a token and the authorization identity of a SASL exchange into the
// BAL opened. It is safe for concurrent use.
type Authenticator struct {
	// Verifier checks the token (required).
	Verifier *Verifier
	// Holdings maps the national id to the BALs held (required).
	Holdings Holdings
	// SessionLength bounds a session opened with a token (IMAP, IDLE included), from the
	// login: the server ends it then, and the client authenticates again with a fresh
	// token. Default and maximum PSCSessionLength.
	SessionLength time.Duration
	// EndWithToken ends a session when its access token expires (exp plus the verifier's
	// skew) rather than at SessionLength: with Pro Santé Connect's 2 min tokens the client
	// reconnects every few minutes.
	EndWithToken bool
}

// Login is a successful authentication.
type Login struct {
	// BAL is the BAL opened.
	BAL string
	// NationalID is the person who opened it (for the audit log, never the operational one).
	NationalID string
	// SessionEnd is when the server ends the session (see Authenticator.SessionLength).
	SessionEnd time.Time
}

// Authenticate verifies token and checks that its holder holds the BAL authzid names; an
// empty authzid opens the person's one BAL (refused when they hold several). A token for
// someone who holds no BAL, or who does not hold the one named, is refused as a bad token is
// (ErrInvalidToken). Holdings failures are ErrUnavailable.
func (a *Authenticator) Authenticate(ctx context.Context, authzid, token string) (*Login, error) {
	id, held, err := a.held(ctx, token)
	if err != nil {
		return nil, err
	}
	bal := ""
	switch {
	case authzid != "":
		i := slices.IndexFunc(held, func(b string) bool { return strings.EqualFold(b, authzid) })
		if i >= 0 {
			bal = held[i]
		}
	case len(held) == 1:
		bal = held[0]
	}
	if bal == "" {
		return nil, invalid("BAL not held by the token's holder")
	}
	now := a.Verifier.opts.Now()
	end := now.Add(min(cmp.Or(a.SessionLength, PSCSessionLength), PSCSessionLength))
	if a.EndWithToken {
		if exp := id.Expiry.Add(a.Verifier.opts.Skew); exp.Before(end) {
			end = exp
		}
	}
	return &Login{BAL: bal, NationalID: id.NationalID, SessionEnd: end}, nil
}

// Held verifies token and returns every BAL its holder holds (the PER BALs and the ORG BALs
// they are a member of), for a caller that names the BAL per request rather than per session
// (the HTTP API). A token for someone who holds no BAL is refused as Authenticate refuses it.
func (a *Authenticator) Held(ctx context.Context, token string) (nationalID string, bals []string, err error) {
	id, held, err := a.held(ctx, token)
	if err != nil {
		return "", nil, err
	}
	if len(held) == 0 {
		return "", nil, invalid("BAL not held by the token's holder")
	}
	return id.NationalID, held, nil
}

// held verifies token and looks up the BALs of its holder.
func (a *Authenticator) held(ctx context.Context, token string) (*Identity, []string, error) {
	id, err := a.Verifier.Verify(ctx, token)
	if err != nil {
		return nil, nil, err
	}
	held, err := a.Holdings.BALsHeldBy(ctx, id.NationalID)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: looking up the BALs held: %v", ErrUnavailable, err)
	}
	return id, held, nil
}

// Temporary reports whether err is a temporary failure (ErrUnavailable), for the listeners'
// replies.
func Temporary(err error) bool { return errors.Is(err, ErrUnavailable) }
