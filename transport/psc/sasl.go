package psc

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// SASL mechanism names.
const (
	// XOAUTH2 is Google's mechanism, the one Ségur REM SC.MSS/CONF.07 names.
	XOAUTH2 = "XOAUTH2"
	// OAUTHBEARER is RFC 7628's.
	OAUTHBEARER = sasl.OAuthBearer
)

// MaxResponseBytes bounds a SASL response carrying a token.
const MaxResponseBytes = MaxTokenBytes + 1024

// ErrMalformed is returned for a SASL response that is not what the mechanism defines.
var ErrMalformed = errors.New("psc: malformed SASL response")

func malformed(why string) error { return fmt.Errorf("%w: %s", ErrMalformed, why) }

// ParseXOAUTH2 reads an XOAUTH2 initial response: "user=" user ^A "auth=Bearer " token ^A ^A.
func ParseXOAUTH2(resp []byte) (user, token string, err error) {
	if len(resp) > MaxResponseBytes {
		return "", "", malformed("too long")
	}
	fields, err := kvPairs(resp)
	if err != nil {
		return "", "", err
	}
	user, ok := fields["user"]
	if !ok {
		return "", "", malformed("no user")
	}
	token, err = bearer(fields)
	return user, token, err
}

// ParseOAUTHBEARER reads an OAUTHBEARER initial response (RFC 7628 §3.1): a GS2 header
// without channel binding, then key=value pairs separated by ^A, auth among them.
func ParseOAUTHBEARER(resp []byte) (authzid, token string, err error) {
	if len(resp) > MaxResponseBytes {
		return "", "", malformed("too long")
	}
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","; no channel binding ("p=") is offered.
	flag, rest, ok := bytes.Cut(resp, []byte(","))
	if !ok || (string(flag) != "n" && string(flag) != "y") {
		return "", "", malformed("bad GS2 header")
	}
	az, rest, ok := bytes.Cut(rest, []byte(","))
	if !ok {
		return "", "", malformed("bad GS2 header")
	}
	if len(az) > 0 {
		if !bytes.HasPrefix(az, []byte("a=")) {
			return "", "", malformed("bad GS2 header")
		}
		authzid, err = unescapeSASLName(string(az[2:]))
		if err != nil {
			return "", "", err
		}
	}
	if len(rest) == 0 || rest[0] != 0x01 {
		return "", "", malformed("no separator after the GS2 header")
	}
	fields, err := kvPairs(rest[1:])
	if err != nil {
		return "", "", err
	}
	token, err = bearer(fields)
	return authzid, token, err
}

// kvPairs reads key=value ^A ... ^A ^A (the final ^A ends the list).
func kvPairs(b []byte) (map[string]string, error) {
	if !bytes.HasSuffix(b, []byte{0x01, 0x01}) && !bytes.Equal(b, []byte{0x01}) {
		return nil, malformed("not ended by ^A^A")
	}
	b = bytes.TrimSuffix(b, []byte{0x01})
	fields := map[string]string{}
	for _, kv := range bytes.Split(bytes.TrimSuffix(b, []byte{0x01}), []byte{0x01}) {
		if len(kv) == 0 {
			return nil, malformed("empty field")
		}
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok || len(k) == 0 {
			return nil, malformed("field without =")
		}
		if _, dup := fields[string(k)]; dup {
			return nil, malformed("field repeated")
		}
		if len(fields) >= 16 {
			return nil, malformed("too many fields")
		}
		fields[string(k)] = string(v)
	}
	return fields, nil
}

// bearer reads the auth field: "Bearer" (any case, RFC 6750 §2.1), one space, the token.
func bearer(fields map[string]string) (string, error) {
	auth, ok := fields["auth"]
	if !ok {
		return "", malformed("no auth field")
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", malformed("auth is not a Bearer token")
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", malformed("empty token")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", malformed("token has a character outside RFC 6750's b64token")
		}
	}
	return token, nil
}

// unescapeSASLName undoes the saslname escapes of RFC 5801 §4 ("=2C" for ",", "=3D" for "=").
func unescapeSASLName(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", malformed("bad escape in authzid")
		}
		i += 2
	}
	return b.String(), nil
}

// ErrThrottled is what a CheckFunc returns, wrapped, when the listener's brake on failed
// logins refuses the client before the token is checked, or closes the connection after a
// failure: the exchange ends at once, the connection being closed.
var ErrThrottled = errors.New("psc: too many failed authentications")

// CheckFunc checks a token for the authorization identity authzid (the BAL named, or "").
// An error wrapping ErrUnavailable (temporary failure) or ErrThrottled ends the exchange at
// once; any other error is a refusal, answered with the mechanism's error challenge first.
type CheckFunc func(authzid, token string) error

// NewServer returns the server side of mech (XOAUTH2 or OAUTHBEARER), or nil for another
// mechanism. A refused token gets the mechanism's error challenge (RFC 7628 §3.2.2; XOAUTH2
// does the same); the client's answer to it, whatever it is, ends with the refusal returned
// by check. reply, when not nil, turns every error the exchange ends with (check's, or
// ErrMalformed) into the protocol's reply.
func NewServer(mech string, check CheckFunc, reply func(error) error) sasl.Server {
	var parse func([]byte) (string, string, error)
	var challenge []byte
	switch strings.ToUpper(mech) {
	case XOAUTH2:
		parse, challenge = ParseXOAUTH2, []byte(`{"status":"401","schemes":"bearer"}`)
	case OAUTHBEARER:
		parse, challenge = ParseOAUTHBEARER, []byte(`{"status":"invalid_token","schemes":"bearer"}`)
	default:
		return nil
	}
	if reply == nil {
		reply = func(err error) error { return err }
	}
	return &server{parse: parse, check: check, reply: reply, challenge: challenge}
}

type server struct {
	parse     func([]byte) (string, string, error)
	check     CheckFunc
	reply     func(error) error
	challenge []byte
	step      int
	refusal   error
}

func (s *server) Next(resp []byte) ([]byte, bool, error) {
	ch, done, err := s.next(resp)
	if err != nil {
		err = s.reply(err)
	}
	return ch, done, err
}

func (s *server) next(resp []byte) ([]byte, bool, error) {
	s.step++
	switch {
	case s.refusal != nil:
		return nil, true, s.refusal
	case s.step > 2:
		return nil, true, malformed("too many steps")
	case resp == nil && s.step == 1:
		return []byte{}, false, nil // no initial response: ask for it
	}
	authzid, token, err := s.parse(resp)
	if err != nil {
		return nil, true, err
	}
	if err := s.check(authzid, token); err != nil {
		if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrThrottled) {
			return nil, true, err
		}
		s.refusal = err
		return s.challenge, false, nil
	}
	return nil, true, nil
}
