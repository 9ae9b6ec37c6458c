package psc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrInvalidToken is wrapped by every refusal of a token: bad signature, expired, wrong issuer
// or audience, acr too low, inactive, malformed. The reason follows the colon; it is for the
// operational log, never for the client.
var ErrInvalidToken = errors.New("psc: invalid token")

// ErrUnavailable is wrapped when the token cannot be checked now (provider unreachable, an
// unreadable answer): a temporary failure, to be tried again later.
var ErrUnavailable = errors.New("psc: provider unavailable")

// Production and test issuers of Pro Santé Connect, and the name of its discovery document
// (not the usual openid-configuration).
const (
	IssuerProduction = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
	IssuerTest       = "https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet"
	DiscoveryPath    = "/.well-known/wallet-openid-configuration"
)

// MaxTokenBytes bounds an access token; a longer one is refused before parsing.
const MaxTokenBytes = 8 << 10

// signatureAlgorithms are the only ones accepted: asymmetric, so that "none" and an HMAC
// token keyed with the provider's public key are refused at parsing (RFC 8725 §3.1).
var signatureAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
}

// Options configure New.
type Options struct {
	// Issuer is the provider's issuer identifier (required; IssuerProduction or IssuerTest
	// for Pro Santé Connect); a token's iss must equal it.
	Issuer string
	// DiscoveryURL is the discovery document (default Issuer + DiscoveryPath).
	DiscoveryURL string
	// JWKSURL, when set, is used instead of the jwks_uri of discovery.
	JWKSURL string
	// ClientIDs are the clients whose tokens are accepted (required): a token's azp, or one
	// of its aud values, must be one of them.
	ClientIDs []string
	// ACR are the accepted authentication context classes (default eidas1, the level
	// Pro Santé Connect requires).
	ACR []string
	// IDClaim names the claim that holds the practitioner's national id (default
	// SubjectNameID: 8 + RPPS, 0 + ADELI), read from the token offline or from the
	// introspection answer.
	IDClaim string
	// Introspection, when set, checks tokens with the provider's introspection endpoint
	// instead of offline.
	Introspection *Introspection
	// HTTPClient fetches discovery and keys and, for introspection, carries the operator's
	// client certificate (mutual TLS). Default: a client with a 10 s timeout, TLS 1.2
	// minimum.
	HTTPClient *http.Client
	// Skew is the clock skew allowed on exp, nbf and iat (default 30 s).
	Skew time.Duration
	// KeyCacheTTL is how long the keys are used before being fetched again (default 1 h);
	// the cached keys stay in use if that fetch fails.
	KeyCacheTTL time.Duration
	// MinKeyRefresh is the least time between two fetches of the keys caused by a token
	// with an unknown key id (default 1 min): forged key ids cannot make us fetch more.
	MinKeyRefresh time.Duration
	// MaxCached bounds the introspection answers kept (default 10000).
	MaxCached int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives key fetches and their failures (nil discards them).
	Logger *slog.Logger
}

// Introspection configures token introspection (RFC 7662).
type Introspection struct {
	// URL is the introspection endpoint (default: introspection_endpoint of discovery).
	URL string
	// ClientID names the operator's client; with mutual TLS it is sent in the form
	// (RFC 8705 §2).
	ClientID string
	// ClientSecret, when set, authenticates the client with HTTP Basic instead.
	ClientSecret string
}

// Identity is who a verified token names.
type Identity struct {
	// NationalID is the practitioner's national id (the IDClaim).
	NationalID string
	// Subject is the token's sub.
	Subject string
	// Expiry is the token's exp.
	Expiry time.Time
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	disc      *discovery
	keys      *jose.JSONWebKeySet
	keysAt    time.Time // last successful fetch
	keysGen   int       // successful fetches
	triedAt   time.Time // last fetch attempt caused by an unknown key id
	fetchMu   sync.Mutex
	cache     map[[32]byte]*Identity // introspection answers by token hash
	cacheKeys [][32]byte             // insertion order, for eviction
}

// New returns a Verifier. It fetches nothing until the first token.
func New(opts *Options) (*Verifier, error) {
	if opts == nil || opts.Issuer == "" {
		return nil, errors.New("psc: Options.Issuer is required")
	}
	if len(opts.ClientIDs) == 0 {
		return nil, errors.New("psc: Options.ClientIDs is required (the clients whose tokens are accepted)")
	}
	v := &Verifier{opts: *opts, cache: map[[32]byte]*Identity{}}
	o := &v.opts
	o.DiscoveryURL = cmp.Or(o.DiscoveryURL, strings.TrimSuffix(o.Issuer, "/")+DiscoveryPath)
	if len(o.ACR) == 0 {
		o.ACR = []string{"eidas1"}
	}
	o.IDClaim = cmp.Or(o.IDClaim, "SubjectNameID")
	o.Skew = cmp.Or(o.Skew, 30*time.Second)
	o.KeyCacheTTL = cmp.Or(o.KeyCacheTTL, time.Hour)
	o.MinKeyRefresh = cmp.Or(o.MinKeyRefresh, time.Minute)
	o.MaxCached = cmp.Or(o.MaxCached, 10000)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient()
	}
	v.log = cmp.Or(o.Logger, slog.New(slog.DiscardHandler))
	return v, nil
}

func invalid(reason string) error { return fmt.Errorf("%w: %s", ErrInvalidToken, reason) }

// Verify checks token and returns whom it names. The error wraps ErrInvalidToken or
// ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	if token == "" {
		return nil, invalid("empty")
	}
	if len(token) > MaxTokenBytes {
		return nil, invalid("too long")
	}
	if v.opts.Introspection != nil {
		return v.introspect(ctx, token)
	}
	tok, err := jwt.ParseSigned(token, signatureAlgorithms)
	if err != nil {
		return nil, invalid("not a JWS with an accepted algorithm")
	}
	h := tok.Headers[0]
	key, err := v.key(ctx, h.KeyID, h.Algorithm)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var extra map[string]any
	if err := tok.Claims(key.Key, &std, &extra); err != nil {
		return nil, invalid("bad signature")
	}
	c := claims{Issuer: std.Issuer, Subject: std.Subject, Audience: std.Audience,
		Expiry: std.Expiry, NotBefore: std.NotBefore, IssuedAt: std.IssuedAt}
	c.AZP, _ = extra["azp"].(string)
	c.ACR, _ = extra["acr"].(string)
	c.NationalID, _ = extra[v.opts.IDClaim].(string)
	return v.check(&c)
}

// claims are what a token or an introspection answer says, checked by check.
type claims struct {
	Issuer, Subject, AZP, ACR, NationalID string
	Audience                              jwt.Audience
	Expiry, NotBefore, IssuedAt           *jwt.NumericDate
}

func (v *Verifier) check(c *claims) (*Identity, error) {
	now := v.opts.Now()
	skew := v.opts.Skew
	switch {
	case c.Issuer != v.opts.Issuer:
		return nil, invalid("wrong issuer")
	case c.Expiry == nil:
		return nil, invalid("no exp")
	case now.After(c.Expiry.Time().Add(skew)):
		return nil, invalid("expired")
	case c.NotBefore != nil && now.Add(skew).Before(c.NotBefore.Time()):
		return nil, invalid("not yet valid (nbf)")
	case c.IssuedAt != nil && now.Add(skew).Before(c.IssuedAt.Time()):
		return nil, invalid("issued in the future (iat)")
	case !v.forUs(c):
		return nil, invalid("wrong audience")
	case !slices.Contains(v.opts.ACR, c.ACR):
		return nil, invalid("acr too low")
	case c.NationalID == "" || len(c.NationalID) > 64:
		return nil, invalid("no national id")
	}
	return &Identity{NationalID: c.NationalID, Subject: c.Subject, Expiry: c.Expiry.Time()}, nil
}

// forUs reports whether the token was issued to one of our clients: azp when present (the
// party the token was issued to, OpenID Connect Core §2), else one of aud.
func (v *Verifier) forUs(c *claims) bool {
	if c.AZP != "" {
		return slices.Contains(v.opts.ClientIDs, c.AZP)
	}
	for _, a := range c.Audience {
		if slices.Contains(v.opts.ClientIDs, a) {
			return true
		}
	}
	return false
}

func tokenHash(token string) [32]byte { return sha256.Sum256([]byte(token)) }
