package psc_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mssante-go/sdk/internal/testpsc"
	"github.com/mssante-go/sdk/transport/psc"
)

const rpps = "810000000001"

func newVerifier(t *testing.T, p *testpsc.Provider, edit func(*psc.Options)) *psc.Verifier {
	t.Helper()
	o := p.Options()
	if edit != nil {
		edit(o)
	}
	v, err := psc.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPSCVerifyOffline(t *testing.T) {
	p := testpsc.New(t)
	v := newVerifier(t, p, nil)
	id, err := v.Verify(context.Background(), p.Token(t, rpps))
	if err != nil {
		t.Fatal(err)
	}
	if id.NationalID != rpps || id.Expiry.IsZero() {
		t.Fatalf("identity = %+v", id)
	}
	// Keys are cached: a second token fetches nothing.
	if _, err := v.Verify(context.Background(), p.Token(t, rpps)); err != nil {
		t.Fatal(err)
	}
	if n := p.KeyFetches.Load(); n != 1 {
		t.Fatalf("%d key fetches, want 1", n)
	}
}

// TestPSCVerifyRefusals drives every refusal of a token: each must be ErrInvalidToken,
// never an accept.
func TestPSCVerifyRefusals(t *testing.T) {
	p := testpsc.New(t)
	v := newVerifier(t, p, nil)
	now := time.Now()
	with := func(k string, val any) string {
		c := p.Claims(rpps)
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return p.Sign(t, c)
	}
	noneToken := func() string {
		// alg "none": header {"alg":"none","typ":"JWT"}, no signature.
		good := p.Token(t, rpps)
		parts := strings.Split(good, ".")
		return "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	}
	cases := []struct {
		name, token string
	}{
		{"expired", with("exp", now.Add(-time.Minute).Unix())},
		{"no exp", with("exp", nil)},
		{"nbf in the future", with("nbf", now.Add(time.Minute).Unix())},
		{"iat in the future", with("iat", now.Add(time.Minute).Unix())},
		{"wrong issuer", with("iss", "https://auth.esw.esante.gouv.fr/auth/realms/other")},
		{"wrong azp", with("azp", "someone-else")},
		{"wrong aud without azp", func() string {
			c := p.Claims(rpps)
			delete(c, "azp")
			c["aud"] = []string{"other"}
			return p.Sign(t, c)
		}()},
		{"acr too low", with("acr", "eidas-substantial-not")},
		{"no acr", with("acr", nil)},
		{"no national id", with("SubjectNameID", nil)},
		{"alg none", noneToken()},
		{"HMAC with the public key", testpsc.SignWith(t, jose.HS256, p.PublicKeyDER(t), testpsc.KeyID, p.Claims(rpps))},
		{"signed by another key, same kid", testpsc.SignWith(t, jose.ES256, testpsc.OtherKey(t), testpsc.KeyID, p.Claims(rpps))},
		{"unknown kid", testpsc.SignWith(t, jose.ES256, testpsc.OtherKey(t), "forged", p.Claims(rpps))},
		{"not a JWT", "abc.def"},
		{"empty", ""},
		{"too long", strings.Repeat("a", psc.MaxTokenBytes+1)},
		{"tampered payload", func() string {
			parts := strings.Split(p.Token(t, rpps), ".")
			other := strings.Split(p.Token(t, "810000000002"), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), c.token)
			if !errors.Is(err, psc.ErrInvalidToken) {
				t.Fatalf("Verify = %+v, %v; want ErrInvalidToken", id, err)
			}
		})
	}
}

func TestPSCVerifySkew(t *testing.T) {
	p := testpsc.New(t)
	v := newVerifier(t, p, func(o *psc.Options) { o.Skew = 10 * time.Second })
	c := p.Claims(rpps)
	c["exp"] = time.Now().Add(-5 * time.Second).Unix() // within the skew
	if _, err := v.Verify(context.Background(), p.Sign(t, c)); err != nil {
		t.Fatalf("token expired within the skew refused: %v", err)
	}
}

// TestPSCUnknownKidBounded checks that tokens with unknown key ids cause at most one key
// fetch per MinKeyRefresh, and that a rotated key is found by that fetch.
func TestPSCUnknownKidBounded(t *testing.T) {
	p := testpsc.New(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	v := newVerifier(t, p, func(o *psc.Options) { o.Now = clock; o.MinKeyRefresh = time.Minute })
	if _, err := v.Verify(context.Background(), p.Token(t, rpps)); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		tok := testpsc.SignWith(t, jose.ES256, testpsc.OtherKey(t), "forged-"+string(rune('a'+i%26)), p.Claims(rpps))
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, psc.ErrInvalidToken) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := p.KeyFetches.Load(); n != 2 {
		t.Fatalf("%d key fetches after 50 unknown kids, want 2 (first + one refresh)", n)
	}
	now.Add(int64(2 * time.Minute))
	tok := testpsc.SignWith(t, jose.ES256, testpsc.OtherKey(t), "forged-later", p.Claims(rpps))
	v.Verify(context.Background(), tok)
	if n := p.KeyFetches.Load(); n != 3 {
		t.Fatalf("%d key fetches after MinKeyRefresh, want 3", n)
	}
}

func TestPSCProviderUnreachable(t *testing.T) {
	p := testpsc.New(t)
	p.SetDown(true)
	v := newVerifier(t, p, nil)
	if _, err := v.Verify(context.Background(), p.Token(t, rpps)); !errors.Is(err, psc.ErrUnavailable) {
		t.Fatalf("provider down: %v, want ErrUnavailable", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	v2 := newVerifier(t, p, func(o *psc.Options) { o.DiscoveryURL = "https://" + addr + "/x" })
	if _, err := v2.Verify(context.Background(), p.Token(t, rpps)); !errors.Is(err, psc.ErrUnavailable) {
		t.Fatalf("provider unreachable: %v, want ErrUnavailable", err)
	}
	// Introspection too.
	v3 := newVerifier(t, p, func(o *psc.Options) { o.Introspection = &psc.Introspection{ClientID: testpsc.ClientID} })
	if _, err := v3.Verify(context.Background(), p.Token(t, rpps)); !errors.Is(err, psc.ErrUnavailable) {
		t.Fatalf("introspection down: %v, want ErrUnavailable", err)
	}
}

func TestPSCIntrospection(t *testing.T) {
	p := testpsc.New(t)
	v := newVerifier(t, p, func(o *psc.Options) { o.Introspection = &psc.Introspection{ClientID: testpsc.ClientID} })
	tok := p.Token(t, rpps)
	for range 3 {
		id, err := v.Verify(context.Background(), tok)
		if err != nil || id.NationalID != rpps {
			t.Fatalf("Verify = %+v, %v", id, err)
		}
	}
	if n := p.Introspections.Load(); n != 1 {
		t.Fatalf("%d introspections for one token, want 1 (cached until exp)", n)
	}
	revoked := p.Token(t, "810000000002")
	p.Revoke(revoked)
	if _, err := v.Verify(context.Background(), revoked); !errors.Is(err, psc.ErrInvalidToken) {
		t.Fatalf("active:false: %v, want ErrInvalidToken", err)
	}
	c := p.Claims(rpps)
	c["acr"] = "eidas0"
	if _, err := v.Verify(context.Background(), p.Sign(t, c)); !errors.Is(err, psc.ErrInvalidToken) {
		t.Fatalf("introspection acr too low: %v", err)
	}
	// Without the client certificate the provider refuses us: a temporary failure on our
	// side (a configuration problem), never an accept.
	noCert := newVerifier(t, p, func(o *psc.Options) {
		o.Introspection = &psc.Introspection{ClientID: testpsc.ClientID}
		o.HTTPClient.Transport.(interface{ CloseIdleConnections() }).CloseIdleConnections()
		o.HTTPClient = p.HTTPClient()
		o.HTTPClient.Transport.(*http.Transport).TLSClientConfig.Certificates = nil
	})
	if _, err := noCert.Verify(context.Background(), p.Token(t, "810000000003")); !errors.Is(err, psc.ErrUnavailable) {
		t.Fatalf("introspection without client certificate: %v, want ErrUnavailable", err)
	}
}

// TestPSCIntrospectionIDClaim reads the national id under another claim name.
func TestPSCIntrospectionIDClaim(t *testing.T) {
	p := testpsc.New(t)
	v := newVerifier(t, p, func(o *psc.Options) {
		o.Introspection = &psc.Introspection{ClientID: testpsc.ClientID}
		o.IDClaim = "preferred_username"
	})
	c := p.Claims(rpps)
	delete(c, "SubjectNameID")
	c["preferred_username"] = rpps
	if id, err := v.Verify(context.Background(), p.Sign(t, c)); err != nil || id.NationalID != rpps {
		t.Fatalf("Verify = %+v, %v", id, err)
	}
}

func TestPSCNewRequiresIssuerAndClients(t *testing.T) {
	if _, err := psc.New(&psc.Options{ClientIDs: []string{"x"}}); err == nil {
		t.Fatal("no issuer accepted")
	}
	if _, err := psc.New(&psc.Options{Issuer: psc.IssuerProduction}); err == nil {
		t.Fatal("no client ids accepted")
	}
}
