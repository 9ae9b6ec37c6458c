package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// PSCToken gets an access token for the practitioner clientID from the sandbox's OpenID
// provider (client_credentials grant, over HTTPS with the sandbox's CA).
func (i *Info) PSCToken(ctx context.Context, clientID string) (string, error) {
	if i.PSC == nil {
		return "", errors.New("sandbox: no Pro Santé Connect provider")
	}
	var secret string
	for _, p := range i.PSC.Practitioners {
		if p.ClientID == clientID {
			secret = p.Secret
		}
	}
	if secret == "" {
		return "", fmt.Errorf("sandbox: no practitioner %q", clientID)
	}
	ca, err := os.ReadFile(i.CAFile)
	if err != nil {
		return "", err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, i.PSC.TokenURL,
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("sandbox: token endpoint: %w", err)
	}
	defer resp.Body.Close()
	var a struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&a); err != nil || a.AccessToken == "" {
		return "", fmt.Errorf("sandbox: token endpoint answered %s", resp.Status)
	}
	return a.AccessToken, nil
}

// PSCLogin opens the BAL bal with token over IMAPS and over submission (STARTTLS), both with
// SASL OAUTHBEARER, as a practitioner's mail client does.
func (i *Info) PSCLogin(ctx context.Context, bal, token string) error {
	op := i.OperatorOf(bal)
	if op == nil {
		return fmt.Errorf("sandbox: %s is not a BAL of the sandbox", bal)
	}
	tcfg, err := i.ClientTLS(nil, "localhost")
	if err != nil {
		return err
	}
	auth := sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: bal, Token: token})
	c, err := imapclient.DialTLS(op.IMAPS, &imapclient.Options{TLSConfig: tcfg})
	if err != nil {
		return fmt.Errorf("sandbox: IMAPS: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.Authenticate(auth); err != nil {
		return fmt.Errorf("sandbox: IMAP AUTHENTICATE OAUTHBEARER: %w", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return fmt.Errorf("sandbox: IMAP SELECT: %w", err)
	}
	c.Logout().Wait()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", op.Submission)
	if err != nil {
		return fmt.Errorf("sandbox: submission: %w", err)
	}
	defer conn.Close()
	s, err := smtp.NewClientStartTLS(conn, tcfg)
	if err != nil {
		return fmt.Errorf("sandbox: submission STARTTLS: %w", err)
	}
	defer s.Close()
	if err := s.Auth(sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: bal, Token: token})); err != nil {
		return fmt.Errorf("sandbox: submission AUTH OAUTHBEARER: %w", err)
	}
	return s.Quit()
}
