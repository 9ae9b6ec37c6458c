package psc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// maxDocBytes bounds a discovery document, a key set or an introspection answer.
const maxDocBytes = 1 << 20

// discovery holds the fields of the provider's discovery document we use.
type discovery struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return &http.Client{Timeout: 10 * time.Second, Transport: t}
}

// getJSON fetches a JSON document; any failure is ErrUnavailable.
func (v *Verifier) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %s", ErrUnavailable, url, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDocBytes)).Decode(out); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, url, err)
	}
	return nil
}

// discover returns the discovery document, fetched once.
func (v *Verifier) discover(ctx context.Context) (*discovery, error) {
	v.mu.Lock()
	d := v.disc
	v.mu.Unlock()
	if d != nil {
		return d, nil
	}
	d = new(discovery)
	if err := v.getJSON(ctx, v.opts.DiscoveryURL, d); err != nil {
		return nil, err
	}
	if d.Issuer != v.opts.Issuer {
		return nil, fmt.Errorf("%w: discovery names issuer %q, not %q", ErrUnavailable, d.Issuer, v.opts.Issuer)
	}
	v.mu.Lock()
	v.disc = d
	v.mu.Unlock()
	return d, nil
}

// key returns the provider's key kid for alg. The key set is fetched when there is none yet,
// when it is older than KeyCacheTTL, and when kid is unknown, but then at most once per
// MinKeyRefresh: an unknown key id after that is refused, not fetched for.
func (v *Verifier) key(ctx context.Context, kid, alg string) (*jose.JSONWebKey, error) {
	now := v.opts.Now()
	v.mu.Lock()
	keys, age := v.keys, now.Sub(v.keysAt)
	v.mu.Unlock()
	if keys == nil || age > v.opts.KeyCacheTTL {
		if err := v.fetchKeys(ctx, false); err != nil && keys == nil {
			return nil, err
		}
	}
	if k := v.find(kid, alg); k != nil {
		return k, nil
	}
	if err := v.fetchKeys(ctx, true); err != nil {
		if errors.Is(err, errRefreshTooSoon) {
			return nil, invalid("unknown key id")
		}
		return nil, err
	}
	if k := v.find(kid, alg); k != nil {
		return k, nil
	}
	return nil, invalid("unknown key id")
}

var errRefreshTooSoon = errors.New("psc: key set fetched too recently")

func (v *Verifier) find(kid, alg string) *jose.JSONWebKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys == nil {
		return nil
	}
	for _, k := range v.keys.Keys {
		if k.KeyID != kid || k.Use == "enc" || !k.IsPublic() {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		return &k
	}
	return nil
}

// fetchKeys fetches the key set; forced (an unknown key id) is refused within MinKeyRefresh
// of the previous forced fetch. One fetch runs at a time; the others wait for it.
func (v *Verifier) fetchKeys(ctx context.Context, forced bool) error {
	v.mu.Lock()
	gen := v.keysGen
	v.mu.Unlock()
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	now := v.opts.Now()
	v.mu.Lock()
	if v.keysGen != gen { // another caller fetched while we waited
		v.mu.Unlock()
		return nil
	}
	if forced {
		if !v.triedAt.IsZero() && now.Sub(v.triedAt) < v.opts.MinKeyRefresh {
			v.mu.Unlock()
			return errRefreshTooSoon
		}
		v.triedAt = now
	}
	v.mu.Unlock()
	url := v.opts.JWKSURL
	if url == "" {
		d, err := v.discover(ctx)
		if err != nil {
			return err
		}
		if d.JWKSURI == "" {
			return fmt.Errorf("%w: discovery has no jwks_uri", ErrUnavailable)
		}
		url = d.JWKSURI
	}
	ks := new(jose.JSONWebKeySet)
	if err := v.getJSON(ctx, url, ks); err != nil {
		v.log.Warn("psc: fetching the provider's keys failed", "err", err)
		return err
	}
	v.mu.Lock()
	v.keys, v.keysAt = ks, v.opts.Now()
	v.keysGen++
	v.mu.Unlock()
	v.log.Info("psc: provider's keys fetched", "keys", len(ks.Keys))
	return nil
}
