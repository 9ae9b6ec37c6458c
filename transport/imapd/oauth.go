package imapd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/psc"
)

// errUnavailable answers a login whose token could not be checked now (RFC 5530 §3).
var errUnavailable = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
	Text: "Authentication service unavailable, try again later"}

// bearerMechanisms are offered when Options.OAuth is set, and only over TLS.
func (s *session) bearerMechanisms() []string {
	if s.srv.opts.OAuth == nil {
		return nil
	}
	if _, ok := s.conn.NetConn().(*tls.Conn); !ok {
		return nil
	}
	return []string{psc.XOAUTH2, psc.OAUTHBEARER}
}

// bearer returns the server side of XOAUTH2 or OAUTHBEARER, or nil.
func (s *session) bearer(mech string) sasl.Server {
	if s.srv.opts.OAuth == nil {
		return nil
	}
	if _, ok := s.conn.NetConn().(*tls.Conn); !ok {
		return nil // the mechanism is not offered without TLS (STARTTLS first)
	}
	return psc.NewServer(mech, func(authzid, token string) error { return s.bearerLogin(mech, authzid, token) }, func(err error) error {
		if psc.Temporary(err) {
			s.authFailed(mech, "auth_bearer_unavailable", "", slog.Any("err", err))
			return errUnavailable
		}
		if errors.Is(err, psc.ErrThrottled) {
			return imapserver.ErrAuthFailed // logged, and the connection closed, by bearerLogin
		}
		s.authFailed(mech, "auth_bearer_refused", "", slog.Any("err", err))
		return imapserver.ErrAuthFailed
	})
}

// bearerLogin opens the BAL authzid names (or the person's one BAL) with a token, and arms
// the end of the session (psc.Authenticator.SessionLength: IDLE included, the session ends
// then with BYE, and the client logs in again with a fresh token).
//
// Failed tokens count in the brake passwords go through (Options.AuthLimiter), on the
// address and on the BAL named: a braked address gets BYE as for passwords. A token that
// could not be checked (provider unreachable) is no failed guess and does not count.
func (s *session) bearerLogin(mech, authzid, token string) error {
	if err := s.auth.Before(s.ctx, authzid); err != nil {
		s.authFailed(mech, "auth_bearer_locked", authzid, slog.Any("err", err))
		s.hangUp()
		return fmt.Errorf("%w: %w", psc.ErrThrottled, err)
	}
	l, err := s.srv.opts.OAuth.Authenticate(s.ctx, authzid, token)
	if err != nil {
		if !psc.Temporary(err) && s.auth.Failed(authzid) != nil {
			s.authFailed(mech, "auth_bearer_refused", authzid, slog.Any("err", err))
			s.hangUp()
			return fmt.Errorf("%w: %w", psc.ErrThrottled, err)
		}
		return err
	}
	s.auth.Succeeded(authzid)
	s.bal = l.BAL
	s.loggedIn()
	s.sessionEnd = time.AfterFunc(time.Until(l.SessionEnd), func() {
		s.conn.Bye("Session expired, authenticate again")
	})
	s.srv.logger().Info("imapd: login", "listener", s.listener, "peer", s.peer, "bal", s.bal, "mech", mech)
	if a := s.srv.opts.Audit; a != nil {
		a.Log(&audit.Record{Event: audit.EventLogin, Source: s.listener, BAL: l.BAL,
			Person: l.NationalID, PeerAddr: s.peer, Mech: mech})
	}
	return nil
}

// endBearer stops the session-end timer of a bearer login.
func (s *session) endBearer() {
	if s.sessionEnd != nil {
		s.sessionEnd.Stop()
	}
}

// errPasswordsOff answers LOGIN and AUTHENTICATE PLAIN when Options.NoPasswords is set.
var errPasswordsOff = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed,
	Text: "Passwords are not accepted: log in with a Pro Santé Connect token or a client certificate"}

// refusePassword refuses a password login when passwords are off, before any check.
func (s *session) refusePassword(login string) error {
	if !s.srv.opts.NoPasswords {
		return nil
	}
	s.authFailed(sasl.Plain, "auth_password_off", login)
	return errPasswordsOff
}

// passwordMechanisms is PLAIN unless passwords are off.
func (s *session) passwordMechanisms() []string {
	if s.srv.opts.NoPasswords {
		return nil
	}
	return []string{sasl.Plain}
}
