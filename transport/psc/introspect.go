package psc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"
)

// introspectionAnswer is an RFC 7662 §2.2 answer, with the claims Pro Santé Connect adds.
type introspectionAnswer struct {
	Active    bool             `json:"active"`
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	AZP       string           `json:"azp"`
	ClientID  string           `json:"client_id"`
	ACR       string           `json:"acr"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
}

// introspect asks the provider about token (RFC 7662 §2.1); an active answer is cached until
// its exp.
func (v *Verifier) introspect(ctx context.Context, token string) (*Identity, error) {
	h := tokenHash(token)
	now := v.opts.Now()
	v.mu.Lock()
	id, ok := v.cache[h]
	v.mu.Unlock()
	if ok && now.Before(id.Expiry.Add(v.opts.Skew)) {
		return id, nil
	}
	in := v.opts.Introspection
	endpoint := in.URL
	if endpoint == "" {
		d, err := v.discover(ctx)
		if err != nil {
			return nil, err
		}
		if d.IntrospectionEndpoint == "" {
			return nil, fmt.Errorf("%w: discovery has no introspection_endpoint", ErrUnavailable)
		}
		endpoint = d.IntrospectionEndpoint
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	if in.ClientSecret == "" {
		form.Set("client_id", in.ClientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if in.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(in.ClientID), url.QueryEscape(in.ClientSecret))
	}
	resp, err := v.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: introspection answered %s", ErrUnavailable, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %v", ErrUnavailable, err)
	}
	var a introspectionAnswer
	var extra map[string]any
	if json.Unmarshal(body, &a) != nil || json.Unmarshal(body, &extra) != nil {
		return nil, fmt.Errorf("%w: introspection answer is not JSON", ErrUnavailable)
	}
	if !a.Active {
		return nil, invalid("inactive (introspection)")
	}
	c := claims{Issuer: a.Issuer, Subject: a.Subject, Audience: a.Audience, AZP: a.AZP, ACR: a.ACR,
		Expiry: a.Expiry, NotBefore: a.NotBefore, IssuedAt: a.IssuedAt}
	if c.AZP == "" {
		c.AZP = a.ClientID
	}
	c.NationalID, _ = extra[v.opts.IDClaim].(string)
	id, err = v.check(&c)
	if err != nil {
		return nil, err
	}
	v.remember(h, id)
	return id, nil
}

// remember caches an introspection answer, dropping expired ones, then the oldest, beyond
// MaxCached.
func (v *Verifier) remember(h [32]byte, id *Identity) {
	now := v.opts.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.opts.MaxCached {
		kept := v.cacheKeys[:0]
		for _, k := range v.cacheKeys {
			if e, ok := v.cache[k]; ok && now.Before(e.Expiry.Add(v.opts.Skew)) {
				kept = append(kept, k)
			} else {
				delete(v.cache, k)
			}
		}
		v.cacheKeys = kept
		for len(v.cache) >= v.opts.MaxCached && len(v.cacheKeys) > 0 {
			delete(v.cache, v.cacheKeys[0])
			v.cacheKeys = v.cacheKeys[1:]
		}
	}
	if _, ok := v.cache[h]; !ok {
		v.cacheKeys = append(v.cacheKeys, h)
	}
	v.cache[h] = id
}
