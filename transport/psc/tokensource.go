package psc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ErrSessionEnded is returned by TokenSource.Token when the refresh token is no longer valid
// (the provider answers invalid_grant, or it has expired): the client closes its session and
// the practitioner logs in to Pro Santé Connect again (Ségur REM SC.MSS/CONF.10).
var ErrSessionEnded = errors.New("psc: Pro Santé Connect session ended, log in again")

// TokenSourceOptions configure NewTokenSource.
type TokenSourceOptions struct {
	// TokenURL is the provider's token endpoint (required; at Pro Santé Connect the issuer
	// + /protocol/openid-connect/token).
	TokenURL string
	// ClientID and ClientSecret authenticate the client (the secret may be empty for a
	// client authenticated by mutual TLS through HTTPClient).
	ClientID, ClientSecret string
	// RefreshToken is the refresh token of the practitioner's session (required).
	RefreshToken string
	// AccessToken and Expiry, when set, are used until Expiry before the first refresh.
	AccessToken string
	Expiry      time.Time
	// Margin is how long before its expiry an access token is renewed (default 20 s).
	Margin time.Duration
	// HTTPClient calls the token endpoint (default: 10 s timeout, TLS 1.2 minimum).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// TokenSource gives access tokens for XOAUTH2 and OAUTHBEARER, renewing them with the
// refresh token (RFC 6749 §6) while the Pro Santé Connect session lasts (SC.MSS/CONF.11).
// Tokens are held in memory only, never written anywhere (SC.MSS/CONF.28). It is safe for
// concurrent use.
type TokenSource struct {
	opts TokenSourceOptions

	mu      sync.Mutex
	access  string
	expiry  time.Time
	refresh string
	ended   bool
}

// NewTokenSource returns a TokenSource.
func NewTokenSource(opts *TokenSourceOptions) (*TokenSource, error) {
	if opts == nil || opts.TokenURL == "" || opts.RefreshToken == "" {
		return nil, errors.New("psc: TokenSourceOptions.TokenURL and RefreshToken are required")
	}
	s := &TokenSource{opts: *opts, access: opts.AccessToken, expiry: opts.Expiry, refresh: opts.RefreshToken}
	s.opts.Margin = cmp.Or(s.opts.Margin, 20*time.Second)
	if s.opts.Now == nil {
		s.opts.Now = time.Now
	}
	if s.opts.HTTPClient == nil {
		s.opts.HTTPClient = defaultHTTPClient()
	}
	s.opts.AccessToken, s.opts.RefreshToken = "", ""
	return s, nil
}

// Token returns a valid access token, refreshed when the current one is about to expire.
// ErrSessionEnded means the session is over; any other error is temporary.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return "", ErrSessionEnded
	}
	if s.access != "" && s.opts.Now().Add(s.opts.Margin).Before(s.expiry) {
		return s.access, nil
	}
	if err := s.renew(ctx); err != nil {
		return "", err
	}
	return s.access, nil
}

// tokenAnswer is the token endpoint's answer (RFC 6749 §5.1, §5.2).
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

func (s *TokenSource) renew(ctx context.Context) error {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.refresh}, "client_id": {s.opts.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("psc: token endpoint: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if s.opts.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(s.opts.ClientID), url.QueryEscape(s.opts.ClientSecret))
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("psc: token endpoint: %w", err)
	}
	defer resp.Body.Close()
	var a tokenAnswer
	derr := json.NewDecoder(io.LimitReader(resp.Body, maxDocBytes)).Decode(&a)
	if resp.StatusCode == http.StatusBadRequest && a.Error == "invalid_grant" {
		s.ended, s.access, s.refresh = true, "", ""
		return ErrSessionEnded
	}
	if resp.StatusCode != http.StatusOK || derr != nil || a.AccessToken == "" || a.ExpiresIn <= 0 {
		return fmt.Errorf("psc: token endpoint answered %s (%s)", resp.Status, a.Error)
	}
	s.access, s.expiry = a.AccessToken, s.opts.Now().Add(time.Duration(a.ExpiresIn)*time.Second)
	if a.RefreshToken != "" { // rotated
		s.refresh = a.RefreshToken
	}
	return nil
}
