// Package testpsc is a Pro Santé Connect stand-in for tests: an HTTPS server (test PKI) that
// serves the discovery document, the key set and token introspection (with a client
// certificate required), and signs access tokens with any claims, algorithm or key, so that
// tests can forge the tokens a real provider would never issue.
package testpsc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport/psc"
)

// ClientID is the client the provider's tokens are issued to.
const ClientID = "mssante-connector"

// KeyID names the provider's signing key in its key set.
const KeyID = "psc-test-1"

// Provider is a running test provider.
type Provider struct {
	// Issuer is the provider's issuer (its https URL on 127.0.0.1).
	Issuer string
	// Key is the RSA key that signs tokens, published under KeyID.
	Key *rsa.PrivateKey
	// PKI issued the server's certificate and the introspection client's.
	PKI *testpki.PKI
	// ClientCert is an IGC-Santé-like ORG certificate accepted by introspection.
	ClientCert tls.Certificate
	// KeyFetches counts the key set requests; Introspections the introspection requests.
	KeyFetches, Introspections atomic.Int64
	// Now is the clock of the tokens issued (default time.Now).
	Now func() time.Time

	srv      *httptest.Server
	mu       sync.Mutex
	inactive map[string]bool
	sessions map[string]string // refresh token -> national id
	down     bool
	t        testing.TB
}

// New starts a provider, stopped at the end of the test.
func New(t testing.TB) *Provider {
	t.Helper()
	pki, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := pki.Org("connecteur-psc", nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Key: key, PKI: pki, ClientCert: client.TLSCertificate(), Now: time.Now, inactive: map[string]bool{},
		sessions: map[string]string{}, t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /realm"+psc.DiscoveryPath, p.discovery)
	mux.HandleFunc("GET /realm/certs", p.certs)
	mux.HandleFunc("POST /realm/introspect", p.introspect)
	mux.HandleFunc("POST /realm/token", p.token)
	p.srv = httptest.NewUnstartedServer(mux)
	p.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{leaf.TLSCertificate()},
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pki.Roots()}
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	p.Issuer = "https://localhost:" + port + "/realm"
	return p
}

// HTTPClient returns a client that trusts the provider and presents ClientCert.
func (p *Provider) HTTPClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: p.PKI.Roots(), Certificates: []tls.Certificate{p.ClientCert}}}}
}

// Options returns verifier options for this provider (offline verification).
func (p *Provider) Options() *psc.Options {
	return &psc.Options{Issuer: p.Issuer, ClientIDs: []string{ClientID}, HTTPClient: p.HTTPClient()}
}

// SetDown makes every request fail with 503 (true) or be served again (false).
func (p *Provider) SetDown(down bool) { p.mu.Lock(); p.down = down; p.mu.Unlock() }

// Revoke makes introspection answer active:false for token.
func (p *Provider) Revoke(token string) { p.mu.Lock(); p.inactive[token] = true; p.mu.Unlock() }

func (p *Provider) isDown(w http.ResponseWriter) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}
	return p.down
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	if p.isDown(w) {
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"issuer": p.Issuer, "jwks_uri": p.Issuer + "/certs",
		"introspection_endpoint": p.Issuer + "/introspect", "token_endpoint": p.Issuer + "/token"})
}

func (p *Provider) certs(w http.ResponseWriter, r *http.Request) {
	p.KeyFetches.Add(1)
	if p.isDown(w) {
		return
	}
	json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &p.Key.PublicKey, KeyID: KeyID, Algorithm: string(jose.RS256), Use: "sig"}}})
}

// introspect answers RFC 7662 for the tokens it signed, to a client with a certificate.
func (p *Provider) introspect(w http.ResponseWriter, r *http.Request) {
	p.Introspections.Add(1)
	if p.isDown(w) {
		return
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	token := r.PostFormValue("token")
	p.mu.Lock()
	revoked := p.inactive[token]
	p.mu.Unlock()
	out := map[string]any{"active": false}
	if tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256}); err == nil && !revoked {
		var c map[string]any
		if tok.Claims(&p.Key.PublicKey, &c) == nil {
			if exp, ok := c["exp"].(float64); ok && float64(p.Now().Unix()) < exp {
				c["active"] = true
				out = c
			}
		}
	}
	json.NewEncoder(w).Encode(out)
}

// Claims returns the claims of a valid access token for nationalID.
func (p *Provider) Claims(nationalID string) map[string]any {
	now := p.Now()
	return map[string]any{"iss": p.Issuer, "sub": "f:550dc1c8:" + nationalID, "aud": "account", "azp": ClientID,
		"acr": "eidas1", "exp": now.Add(2 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"typ": "Bearer", "SubjectNameID": nationalID}
}

// Token returns a valid access token for nationalID.
func (p *Provider) Token(t testing.TB, nationalID string) string {
	return p.Sign(t, p.Claims(nationalID))
}

// Sign signs claims with the provider's key (RS256, KeyID).
func (p *Provider) Sign(t testing.TB, claims map[string]any) string {
	return SignWith(t, jose.RS256, p.Key, KeyID, claims)
}

// SignWith signs claims with any algorithm and key (a []byte for HMAC) under kid.
func SignWith(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// OtherKey returns a fresh ECDSA key, unknown to the provider.
func OtherKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// PublicKeyDER returns the DER of the provider's public key, the bytes an attacker would
// use as an HMAC secret.
func (p *Provider) PublicKeyDER(t testing.TB) []byte {
	der, err := x509.MarshalPKIXPublicKey(&p.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TokenURL is the provider's token endpoint (refresh_token grant only).
func (p *Provider) TokenURL() string { return p.Issuer + "/token" }

// Login opens a session for nationalID and returns its refresh token.
func (p *Provider) Login(nationalID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	rt := fmt.Sprintf("rt-%s-%d", nationalID, len(p.sessions)+1)
	p.sessions[rt] = nationalID
	return rt
}

// EndSessions ends every session: their refresh tokens get invalid_grant.
func (p *Provider) EndSessions() { p.mu.Lock(); clear(p.sessions); p.mu.Unlock() }

// token answers the refresh_token grant (RFC 6749 §6), rotating the refresh token.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if p.isDown(w) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	p.mu.Lock()
	id, ok := p.sessions[r.PostFormValue("refresh_token")]
	if ok && r.PostFormValue("grant_type") == "refresh_token" && r.PostFormValue("client_id") == ClientID {
		delete(p.sessions, r.PostFormValue("refresh_token"))
	} else {
		ok = false
	}
	p.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant"}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"access_token": p.Sign(p.t, p.Claims(id)), "expires_in": 120,
		"refresh_token": p.Login(id), "token_type": "Bearer"})
}
