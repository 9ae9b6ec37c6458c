// Package pscop is the sandbox's stand-in for Pro Santé Connect: a real OpenID provider
// (zitadel/oidc's pkg/op) that serves discovery (also under Pro Santé Connect's
// .well-known/wallet-openid-configuration name), its keys, the token endpoint and token
// introspection. The test practitioners are clients of the client_credentials grant: each gets
// an access token (a JWT signed by the provider) for themselves, with the claims Pro Santé
// Connect puts in its tokens (SubjectNameID, acr eidas1), so that a command line (curl) can get
// one without a browser. It is for the sandbox and tests only.
package pscop

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Practitioner is a test health professional, a client of the provider.
type Practitioner struct {
	// ClientID and Secret get their tokens (client_credentials, HTTP Basic).
	ClientID, Secret string
	// NationalID is their national id (8 + RPPS), the token's sub and SubjectNameID.
	NationalID string
}

// Options configure New.
type Options struct {
	// Issuer is the provider's https URL (required).
	Issuer string
	// Audience is the aud of every token: the client id the connectors accept (required).
	// AudienceSecret, when set, lets the connectors call introspection as that client.
	Audience, AudienceSecret string
	// Practitioners are the test practitioners.
	Practitioners []Practitioner
	// TokenLifetime is an access token's (default 2 min, as at Pro Santé Connect).
	TokenLifetime time.Duration
	// Logger receives the provider's log (nil discards it).
	Logger *slog.Logger
}

// Provider is the running provider's HTTP side.
type Provider struct {
	http.Handler
	st *storage
}

// New builds the provider with a fresh signing key.
func New(opts *Options) (*Provider, error) {
	if opts == nil || opts.Issuer == "" || opts.Audience == "" {
		return nil, errors.New("pscop: Options.Issuer and Audience are required")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	kid := make([]byte, 8)
	rand.Read(kid)
	st := &storage{opts: *opts, key: key, kid: hex.EncodeToString(kid), tokens: map[string]*token{}}
	if st.opts.TokenLifetime <= 0 {
		st.opts.TokenLifetime = 2 * time.Minute
	}
	var cfg op.Config
	rand.Read(cfg.CryptoKey[:])
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := op.NewProvider(&cfg, st, op.StaticIssuer(opts.Issuer), op.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("pscop: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", p)
	// Pro Santé Connect names its discovery document differently: serve it there too.
	mux.HandleFunc("GET /.well-known/wallet-openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = oidc.DiscoveryEndpoint
		p.ServeHTTP(w, r2)
	})
	return &Provider{Handler: mux, st: st}, nil
}

// storage is the provider's state: clients, issued tokens, the signing key.
type storage struct {
	opts Options
	key  *rsa.PrivateKey
	kid  string

	mu     sync.Mutex
	tokens map[string]*token // by token id, for introspection
}

type token struct {
	subject string
	expiry  time.Time
}

var errUnsupported = errors.New("pscop: not supported by the sandbox provider")

func (s *storage) practitioner(clientID string) *Practitioner {
	i := slices.IndexFunc(s.opts.Practitioners, func(p Practitioner) bool { return p.ClientID == clientID })
	if i < 0 {
		return nil
	}
	return &s.opts.Practitioners[i]
}

func (s *storage) byNationalID(id string) *Practitioner {
	i := slices.IndexFunc(s.opts.Practitioners, func(p Practitioner) bool { return p.NationalID == id })
	if i < 0 {
		return nil
	}
	return &s.opts.Practitioners[i]
}

// ---- client_credentials ----

func (s *storage) ClientCredentials(_ context.Context, clientID, secret string) (op.Client, error) {
	p := s.practitioner(clientID)
	if p == nil || subtle.ConstantTimeCompare([]byte(p.Secret), []byte(secret)) != 1 {
		return nil, errors.New("pscop: unknown client or wrong secret")
	}
	return client{id: clientID}, nil
}

func (s *storage) ClientCredentialsTokenRequest(_ context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	p := s.practitioner(clientID)
	if p == nil {
		return nil, errors.New("pscop: unknown client")
	}
	return &oidc.JWTTokenRequest{Subject: p.NationalID, Audience: []string{s.opts.Audience}, Scopes: scopes}, nil
}

// ---- tokens and keys ----

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	id := make([]byte, 16)
	rand.Read(id)
	exp := time.Now().Add(s.opts.TokenLifetime)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.tokens {
		if time.Now().After(t.expiry) {
			delete(s.tokens, k)
		}
	}
	s.tokens[hex.EncodeToString(id)] = &token{subject: req.GetSubject(), expiry: exp}
	return hex.EncodeToString(id), exp, nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return signingKey{s}, nil }
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{publicKey{s}}, nil }

// GetPrivateClaimsFromScopes adds the claims of a Pro Santé Connect access token.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, userID, _ string, _ []string) (map[string]any, error) {
	return map[string]any{"SubjectNameID": userID, "acr": "eidas1"}, nil
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, r *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expiry) || s.byNationalID(subject) == nil {
		return errors.New("pscop: token not active")
	}
	r.Active, r.Subject, r.ClientID, r.Issuer = true, subject, clientID, s.opts.Issuer
	r.Audience = []string{s.opts.Audience}
	r.Expiration = oidc.FromTime(t.expiry)
	r.Claims = map[string]any{"SubjectNameID": subject, "acr": "eidas1"}
	return nil
}

// ---- clients: the practitioners, and the connectors (introspection) ----

func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	if s.practitioner(clientID) == nil && clientID != s.opts.Audience {
		return nil, errors.New("pscop: unknown client")
	}
	return client{id: clientID}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, secret string) error {
	if clientID == s.opts.Audience && s.opts.AudienceSecret != "" &&
		subtle.ConstantTimeCompare([]byte(s.opts.AudienceSecret), []byte(secret)) == 1 {
		return nil
	}
	p := s.practitioner(clientID)
	if p == nil || subtle.ConstantTimeCompare([]byte(p.Secret), []byte(secret)) != 1 {
		return errors.New("pscop: unknown client or wrong secret")
	}
	return nil
}

// ---- what the sandbox does not offer ----

func (s *storage) CreateAuthRequest(context.Context, *oidc.AuthRequest, string) (op.AuthRequest, error) {
	return nil, errUnsupported
}
func (s *storage) AuthRequestByID(context.Context, string) (op.AuthRequest, error) {
	return nil, errUnsupported
}
func (s *storage) AuthRequestByCode(context.Context, string) (op.AuthRequest, error) {
	return nil, errUnsupported
}
func (s *storage) SaveAuthCode(context.Context, string, string) error { return errUnsupported }
func (s *storage) DeleteAuthRequest(context.Context, string) error    { return errUnsupported }
func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errUnsupported
}
func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}
func (s *storage) TerminateSession(context.Context, string, string) error { return nil }
func (s *storage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrUnsupportedGrantType()
}
func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}
func (s *storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return errUnsupported
}
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errUnsupported
}
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errUnsupported
}
func (s *storage) Health(context.Context) error { return nil }

type signingKey struct{ s *storage }

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.s.key }
func (k signingKey) ID() string                                  { return k.s.kid }

type publicKey struct{ s *storage }

func (k publicKey) ID() string                         { return k.s.kid }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.s.key.PublicKey }

// client is a client of the client_credentials grant, authenticated with HTTP Basic.
type client struct{ id string }

func (c client) GetID() string                       { return c.id }
func (c client) RedirectURIs() []string              { return nil }
func (c client) PostLogoutRedirectURIs() []string    { return nil }
func (c client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c client) ResponseTypes() []oidc.ResponseType  { return nil }
func (c client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (c client) LoginURL(string) string               { return "" }
func (c client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c client) IDTokenLifetime() time.Duration       { return 0 }
func (c client) DevMode() bool                        { return false }
func (c client) IsScopeAllowed(string) bool           { return true }
func (c client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c client) ClockSkew() time.Duration             { return 0 }
func (c client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
