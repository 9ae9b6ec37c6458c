package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ocsp"

	"github.com/mssante-go/sdk/transport"
)

// Refusals of an OCSP answer (RFC 6960); test them with errors.Is. A revoked answer is
// transport.ErrRevoked.
var (
	// ErrOCSPUnavailable: no responder address, or the responder could not be reached, did not
	// answer in time, answered an HTTP error or an OCSP error status (tryLater, unauthorized…).
	ErrOCSPUnavailable = errors.New("revocation: OCSP responder unavailable")
	// ErrOCSPMalformed: the answer does not parse.
	ErrOCSPMalformed = errors.New("revocation: OCSP answer malformed")
	// ErrOCSPWrongCert: the answer is about another certificate.
	ErrOCSPWrongCert = errors.New("revocation: OCSP answer for another certificate")
	// ErrOCSPResponder: the answer is signed neither by the certificate's CA nor by a responder
	// that CA authorised (RFC 6960 §4.2.2.2: issued by it, with the OCSPSigning usage).
	ErrOCSPResponder = errors.New("revocation: OCSP answer signed by an unauthorised responder")
	// ErrOCSPStale: the answer's nextUpdate has passed, or it has none and is older than MaxAge,
	// or its thisUpdate is in the future.
	ErrOCSPStale = errors.New("revocation: OCSP answer stale")
	// ErrOCSPUnknown: the responder does not know the certificate.
	ErrOCSPUnknown = errors.New("revocation: OCSP responder does not know the certificate")
)

// OCSPOptions configures NewOCSP.
type OCSPOptions struct {
	// Client makes the requests (default: an http.Client with Timeout).
	Client *http.Client
	// Timeout bounds one request (default 10 s: it runs within a TLS handshake).
	Timeout time.Duration
	// URL, when set, is asked instead of the certificate's OCSP address (AIA).
	URL string
	// MaxAge bounds the use of an answer without nextUpdate (default 1 h).
	MaxAge time.Duration
	// MaxEntries bounds the cache (default 10000).
	MaxEntries int
	// MaxSize bounds an answer in bytes (default 64 KiB).
	MaxSize int64
	// Logger receives one line per refused answer (nil: discard).
	Logger *slog.Logger
}

// OCSP asks OCSP responders about certificates and caches their answers until the answer's
// nextUpdate. It implements transport.OCSPChecker. The request carries no nonce (RFC 6960
// §4.4.1 makes it optional; IGC-Santé's responders answer from precomputed responses). It is
// safe for concurrent use.
type OCSP struct {
	o OCSPOptions

	mu    sync.Mutex
	cache map[string]*ocspEntry
	stats map[string]float64 // answers by outcome, for metrics
}

type ocspEntry struct {
	err     error // nil (good) or wrapping transport.ErrRevoked
	expires time.Time
}

// NewOCSP returns an OCSP checker.
func NewOCSP(opts *OCSPOptions) *OCSP {
	var o OCSPOptions
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.MaxAge <= 0 {
		o.MaxAge = time.Hour
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 64 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &OCSP{o: o, cache: map[string]*ocspEntry{}, stats: map[string]float64{}}
}

func ocspKey(leaf, issuer *x509.Certificate) string {
	h := sha256.Sum256(issuer.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:12]) + "/" + leaf.SerialNumber.Text(16)
}

// CheckOCSP implements transport.OCSPChecker: nil when good, an error wrapping
// transport.ErrRevoked when revoked, else one of the ErrOCSP* errors.
func (c *OCSP) CheckOCSP(leaf, issuer *x509.Certificate, at time.Time) error {
	key := ocspKey(leaf, issuer)
	c.mu.Lock()
	if e := c.cache[key]; e != nil && at.Before(e.expires) {
		c.mu.Unlock()
		return e.err
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	e, err := c.ask(ctx, leaf, issuer, at)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.stats[ocspReason(err)]++
		c.o.Logger.Warn("revocation: OCSP answer refused", "ca", transport.SubjectDN(issuer), "reason", ocspReason(err), "err", err)
		return err
	}
	c.stats[map[bool]string{true: "good", false: "revoked"}[e.err == nil]]++
	if len(c.cache) >= c.o.MaxEntries {
		for k, old := range c.cache {
			if !at.Before(old.expires) || len(c.cache) >= c.o.MaxEntries {
				delete(c.cache, k)
			}
		}
	}
	c.cache[key] = e
	return e.err
}

func ocspReason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{{ErrOCSPUnavailable, "unavailable"}, {ErrOCSPMalformed, "malformed"}, {ErrOCSPWrongCert, "wrong_cert"},
		{ErrOCSPResponder, "unauthorised_responder"}, {ErrOCSPStale, "stale"}, {ErrOCSPUnknown, "unknown"}} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

// ask posts the request and checks the answer.
func (c *OCSP) ask(ctx context.Context, leaf, issuer *x509.Certificate, at time.Time) (*ocspEntry, error) {
	url := c.o.URL
	if url == "" && len(leaf.OCSPServer) > 0 {
		url = leaf.OCSPServer[0]
	}
	if s := scheme(url); s != "http" && s != "https" {
		return nil, fmt.Errorf("%w: no http OCSP address", ErrOCSPUnavailable)
	}
	reqDER, err := OCSPRequest(leaf, issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOCSPUnavailable, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(reqDER))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOCSPUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := c.o.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOCSPUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s", ErrOCSPUnavailable, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.o.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOCSPUnavailable, err)
	}
	if int64(len(body)) > c.o.MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrOCSPMalformed, c.o.MaxSize)
	}
	return c.check(body, leaf, issuer, at)
}

// check verifies an answer: about leaf, signed by issuer or a responder it authorised, fresh.
func (c *OCSP) check(body []byte, leaf, issuer *x509.Certificate, at time.Time) (*ocspEntry, error) {
	// Parsed without issuer: the signer is checked below, which also accepts an answer
	// signed by the CA that embeds the CA's own certificate (as openssl ocsp sends).
	r, err := ocsp.ParseResponseForCert(body, leaf, nil)
	var re ocsp.ResponseError
	switch {
	case errors.As(err, &re):
		return nil, fmt.Errorf("%w: %s", ErrOCSPUnavailable, re.Status)
	case err != nil && err.Error() == "no response matching the supplied certificate":
		return nil, ErrOCSPWrongCert
	case err != nil && bytes.Contains([]byte(err.Error()), []byte("signature")):
		return nil, fmt.Errorf("%w: %v", ErrOCSPResponder, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrOCSPMalformed, err)
	}
	if err := authorised(r, issuer); err != nil {
		return nil, err
	}
	if r.IssuerHash != 0 && r.IssuerHash.Available() {
		// The serial matched: the CA must match too (same serial at another CA).
		want, _ := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: r.IssuerHash})
		if req, err := ocsp.ParseRequest(want); err != nil || !matchesCA(body, req) {
			return nil, ErrOCSPWrongCert
		}
	}
	if r.ThisUpdate.After(at.Add(5 * time.Minute)) {
		return nil, fmt.Errorf("%w: thisUpdate in the future", ErrOCSPStale)
	}
	expires := r.NextUpdate
	if expires.IsZero() {
		expires = r.ThisUpdate.Add(c.o.MaxAge)
	}
	if !at.Before(expires) {
		return nil, fmt.Errorf("%w: valid until %s", ErrOCSPStale, expires.UTC().Format(time.RFC3339))
	}
	switch r.Status {
	case ocsp.Good:
		return &ocspEntry{expires: expires}, nil
	case ocsp.Revoked:
		return &ocspEntry{err: fmt.Errorf("%w: OCSP, since %s", transport.ErrRevoked, r.RevokedAt.UTC().Format(time.RFC3339)),
			expires: expires}, nil
	}
	return nil, ErrOCSPUnknown
}

// matchesCA reports whether the answer carries the issuer name and key hashes of req: the
// raw answer holds them as they are in the request's CertID.
func matchesCA(body []byte, req *ocsp.Request) bool {
	return bytes.Contains(body, req.IssuerKeyHash) && bytes.Contains(body, req.IssuerNameHash)
}

// authorised checks the signer of r: issuer itself, or a responder certificate issued by
// issuer with the OCSPSigning extended key usage.
func authorised(r *ocsp.Response, issuer *x509.Certificate) error {
	if r.Certificate == nil {
		if err := r.CheckSignatureFrom(issuer); err != nil {
			return fmt.Errorf("%w: %v", ErrOCSPResponder, err)
		}
		return nil
	}
	if r.Certificate.Equal(issuer) {
		return nil // signature by the embedded certificate checked when parsing
	}
	if err := r.Certificate.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: responder certificate not issued by the CA", ErrOCSPResponder)
	}
	for _, u := range r.Certificate.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			return nil
		}
	}
	return fmt.Errorf("%w: responder certificate without the OCSPSigning usage", ErrOCSPResponder)
}

// OCSPRequest returns the DER OCSP request CheckOCSP sends for leaf (SHA-1 CertID, no nonce),
// for tools and tests that talk to a responder themselves.
func OCSPRequest(leaf, issuer *x509.Certificate) ([]byte, error) {
	return ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
}

var descOCSP = prometheus.NewDesc("mssante_ocsp_answers_total",
	"OCSP answers asked (cache misses), by outcome: good, revoked, or the reason of a refusal.", []string{"outcome"}, nil)

// Describe implements prometheus.Collector.
func (c *OCSP) Describe(ch chan<- *prometheus.Desc) { ch <- descOCSP }

// Collect implements prometheus.Collector.
func (c *OCSP) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for outcome, n := range c.stats {
		ch <- prometheus.MustNewConstMetric(descOCSP, prometheus.CounterValue, n, outcome)
	}
}
