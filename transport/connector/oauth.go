package connector

import (
	"errors"
	"fmt"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/psc"
)

// replyAuthUnavailable answers an AUTH whose token cannot be checked now (RFC 4954 §6).
var replyAuthUnavailable = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
	Message: "Temporary authentication failure, try again later"}

// bearerMechanisms are offered on the submission listener, over TLS, when Options.OAuth is set.
func (ss *session) bearerMechanisms() []string {
	if ss.s.opts.OAuth == nil {
		return nil
	}
	return []string{psc.XOAUTH2, psc.OAUTHBEARER}
}

// bearer returns the server side of XOAUTH2 or OAUTHBEARER, or nil. The caller has checked
// the mode and TLS.
func (ss *session) bearer(mech string) sasl.Server {
	if ss.s.opts.OAuth == nil {
		return nil
	}
	// Failed tokens count in the brake of AUTH PLAIN (ServerOptions.AuthLimiter), on the
	// address and on the BAL named: a braked address gets 421 4.7.0 as for passwords. A token
	// that could not be checked (provider unreachable) is no failed guess and does not count.
	lim := ss.authLimit()
	return psc.NewServer(mech, func(authzid, token string) error {
		if err := lim.Before(ss.s.ctx, authzid); err != nil {
			ss.s.opts.Metrics.Rejected("auth_bearer_locked")
			ss.logAuthFailure(mech, replyAuthTooMany, "auth_bearer_locked", authzid)
			ss.authHangUp()
			return fmt.Errorf("%w: %w", psc.ErrThrottled, err)
		}
		l, err := ss.s.opts.OAuth.Authenticate(ss.s.ctx, authzid, token)
		if err != nil {
			if !psc.Temporary(err) && lim.Failed(authzid) != nil {
				ss.s.opts.Metrics.Rejected("auth_bearer_refused")
				ss.logAuthFailure(mech, replyAuthTooMany, "auth_bearer_refused", authzid)
				ss.authHangUp()
				return fmt.Errorf("%w: %w", psc.ErrThrottled, err)
			}
			return err
		}
		lim.Succeeded(authzid)
		ss.bal, ss.person = l.BAL, l.NationalID
		ss.s.audit(&audit.Record{Event: audit.EventLogin, BAL: l.BAL, Person: l.NationalID, PeerAddr: ss.peerAddr,
			TLS: ss.tlsVersion(), Mech: mech})
		return nil
	}, func(err error) error {
		if errors.Is(err, psc.ErrThrottled) {
			return replyAuthTooMany // sent, and the connection closed, by authHangUp
		}
		if psc.Temporary(err) {
			ss.s.logger.Warn("connector: token not checked", "listener", ss.s.name(), "peer", ss.peerAddr, "mech", mech, "err", err)
			return ss.refuse(replyAuthUnavailable, "auth_bearer_unavailable")
		}
		ss.s.logger.Info("connector: token refused", "listener", ss.s.name(), "peer", ss.peerAddr, "mech", mech, "err", err)
		return ss.refuse(smtp.ErrAuthFailed, "auth_bearer_refused")
	})
}

// authLineLength is the AUTH line a submission listener with tokens must read: RFC 4954 §4
// allows 12288 octets, and an XOAUTH2 response with a Pro Santé Connect access token (a
// Keycloak JWT that lists the practitioner's roles) passes the default 2000. go-smtp has one
// limit for every line, so DATA lines get it too there.
const authLineLength = 12288

// maxLineLength is the line limit of the server o describes.
func maxLineLength(o *ServerOptions) int {
	if o.OAuth != nil && o.Mode == ModeSubmission {
		return max(o.MaxLineLength, authLineLength)
	}
	return o.MaxLineLength
}
