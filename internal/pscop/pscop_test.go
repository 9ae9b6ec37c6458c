package pscop_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/pscop"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport/psc"
)

// TestPSCSandboxProvider gets a token with client_credentials from the provider over HTTPS and
// has it checked by psc.Verifier, offline (discovery under the Pro Santé Connect name, keys)
// and by introspection.
func TestPSCSandboxProvider(t *testing.T) {
	pki, err := testpki.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.Server("localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	issuer := "https://localhost:" + port
	p, err := pscop.New(&pscop.Options{Issuer: issuer, Audience: "mssante-dev", AudienceSecret: "rs-secret",
		Practitioners: []pscop.Practitioner{{ClientID: "jean.dupont", Secret: "s3cret", NationalID: "810000000001"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: p, TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}, MinVersion: tls.VersionTLS12}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Roots()}}}

	get := func(user, secret string) (string, int) {
		req, _ := http.NewRequest("POST", issuer+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(user, secret)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&a)
		return a.AccessToken, resp.StatusCode
	}
	tok, code := get("jean.dupont", "s3cret")
	if code != 200 || tok == "" {
		t.Fatalf("token endpoint: %d", code)
	}
	if _, code := get("jean.dupont", "wrong"); code == 200 {
		t.Fatal("wrong secret got a token")
	}
	ctx := context.Background()
	v, err := psc.New(&psc.Options{Issuer: issuer, ClientIDs: []string{"mssante-dev"}, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(ctx, tok)
	if err != nil || id.NationalID != "810000000001" {
		t.Fatalf("offline: %+v %v", id, err)
	}
	if d := time.Until(id.Expiry); d <= 0 || d > 2*time.Minute+5*time.Second {
		t.Fatalf("token lifetime %v, want 2 min", d)
	}
	iv, err := psc.New(&psc.Options{Issuer: issuer, ClientIDs: []string{"mssante-dev"}, HTTPClient: hc,
		Introspection: &psc.Introspection{ClientID: "mssante-dev", ClientSecret: "rs-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := iv.Verify(ctx, tok); err != nil || id.NationalID != "810000000001" {
		t.Fatalf("introspection: %+v %v", id, err)
	}
	if _, err := iv.Verify(ctx, tok[:len(tok)-4]+"AAAA"); !errors.Is(err, psc.ErrInvalidToken) {
		t.Fatalf("introspection of a forged token: %v", err)
	}
}
