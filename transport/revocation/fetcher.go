package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/transport"
)

// Defaults of Options.
const (
	DefaultInterval      = 24 * time.Hour
	DefaultRetryInterval = 5 * time.Minute
	DefaultTimeout       = 30 * time.Second
	// DefaultMaxSize bounds a CRL (the IGC-Santé ORGANISATIONS CRL is a few hundred kilobytes).
	DefaultMaxSize = 16 << 20
)

// Options configures New.
type Options struct {
	// Stores receive every CRL accepted. The CAs of the first are those whose distribution
	// points are fetched and that CRLs are verified against. At least one is required.
	Stores []*transport.TrustStore
	// Certificates whose distribution points are fetched besides those of the CAs: our own
	// certificate, whose points publish the CRL of the CA that issued it.
	Certificates []*x509.Certificate
	// URLs are CRL addresses fetched besides the distribution points.
	URLs []string
	// BundleURLs are CA bundles (the ANS's Chaine_de_certification-IGC-Sante.p7b) fetched at
	// each pass before the CRLs: their intermediates that chain to a trusted root are added
	// to the stores (and kept in Dir); roots are never added, nothing is removed.
	BundleURLs []string
	// Dir, when not empty, keeps the last good CRL of each CA (created 0700, files 0600), read
	// again by New.
	Dir string
	// Client makes the requests (default: an http.Client with Timeout).
	Client *http.Client
	// Timeout bounds one download (default DefaultTimeout).
	Timeout time.Duration
	// MaxSize bounds a CRL in bytes (default DefaultMaxSize).
	MaxSize int64
	// Interval is the time between two passes of Run, jittered by ±10% (default
	// DefaultInterval); a pass comes earlier when a CRL held reaches half of its remaining
	// time to nextUpdate.
	Interval time.Duration
	// RetryInterval is the time before the next pass after a failed one or while a CRL held is
	// past its nextUpdate (default DefaultRetryInterval, at most Interval).
	RetryInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives one line per CRL updated or refused (nil: discard).
	Logger *slog.Logger
}

// Fetcher fetches and applies CRLs. It is safe for concurrent use.
type Fetcher struct {
	o       Options
	trigger chan struct{}

	refreshMu sync.Mutex // one pass at a time

	mu      sync.Mutex
	held    map[string]*held   // by caKey
	sources map[string]*source // by URL
	failed  bool               // the last pass had an error
	// learned are distribution points of verified peer certificates whose CA had no CRL.
	learned []string
	// fromBundle are the intermediates added from BundleURLs.
	fromBundle []*x509.Certificate
}

// held is the CRL in use for one CA.
type held struct {
	ca  *x509.Certificate
	crl *x509.RevocationList
}

// source is what is known of one URL.
type source struct {
	etag, lastModified  string
	lastFetch, lastFail time.Time
	errs                map[string]float64 // by reason
}

// New returns a fetcher for opts, with the CRLs of opts.Dir added to the stores. It fetches
// nothing yet: call Refresh or Run.
func New(opts *Options) (*Fetcher, error) {
	if opts == nil || len(opts.Stores) == 0 {
		return nil, errors.New("revocation: a trust store is required")
	}
	o := *opts
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	o.RetryInterval = min(o.RetryInterval, o.Interval)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, u := range o.URLs {
		if _, err := url.Parse(u); err != nil {
			return nil, fmt.Errorf("revocation: URL: %w", err)
		}
	}
	f := &Fetcher{o: o, trigger: make(chan struct{}, 1), held: map[string]*held{}, sources: map[string]*source{}}
	for _, crl := range o.Stores[0].CRLs() {
		if ca, err := f.issuer(crl); err == nil {
			f.held[caKey(ca)] = &held{ca: ca, crl: crl}
		}
	}
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("revocation: %w", err)
		}
		f.loadBundleCAs()
		f.loadDir()
	}
	return f, nil
}

// loadDir applies the CRLs persisted in Dir. A file that no longer applies (older than a
// CRL file of the configuration, CA removed) is logged and left.
func (f *Fetcher) loadDir() {
	names, _ := filepath.Glob(filepath.Join(f.o.Dir, "*.crl"))
	for _, name := range names {
		data, err := readLimited(name, f.o.MaxSize)
		if err == nil {
			_, err = f.apply("file://"+name, data, false)
		}
		if err != nil && !errors.Is(err, ErrRollback) {
			f.o.Logger.Warn("revocation: persisted CRL not loaded", "file", name, "err", err)
		}
	}
}

func readLimited(name string, limit int64) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, ErrTooLarge
	}
	return data, nil
}

// caKey names a CA by name and key (a CA re-issued with the same key signs the same CRLs).
func caKey(ca *x509.Certificate) string {
	h := sha256.Sum256(append(slices.Clip(ca.RawSubject), ca.RawSubjectPublicKeyInfo...))
	return hex.EncodeToString(h[:12])
}

// URLsToFetch returns the addresses a pass fetches: the http and https distribution points of
// the CAs and certificates, then Options.URLs, without duplicates. A certificate whose only
// points are ldap ones gives those, refused when fetched.
func (f *Fetcher) URLsToFetch() []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	f.mu.Lock()
	certs := append(f.o.Stores[0].CAs(), f.o.Certificates...)
	f.mu.Unlock()
	slices.SortFunc(certs, func(a, b *x509.Certificate) int { return bytes.Compare(a.Raw, b.Raw) })
	for _, c := range certs {
		var web []string
		for _, u := range c.CRLDistributionPoints {
			if s := scheme(u); s == "http" || s == "https" {
				web = append(web, u)
			}
		}
		if len(web) == 0 {
			web = c.CRLDistributionPoints
		}
		for _, u := range web {
			add(u)
		}
	}
	for _, u := range f.o.URLs {
		add(u)
	}
	f.mu.Lock()
	learned := f.learned
	f.mu.Unlock()
	for _, u := range learned {
		add(u)
	}
	return out
}

// maxLearned bounds the distribution points learned from peer certificates.
const maxLearned = 64

// Learn notes the http distribution points of leaf, a verified certificate whose CA has no
// valid CRL (transport.TrustStore.OnNoCRL), and asks Run for a pass when one is new: the CRL
// of a CA that neither the CA certificates nor the configuration point at is fetched once a
// peer of that CA shows up. A point is signed by the CA with the certificate, so an
// unverified peer cannot send the fetcher elsewhere.
func (f *Fetcher) Learn(leaf *x509.Certificate) {
	f.mu.Lock()
	added := false
	for _, u := range leaf.CRLDistributionPoints {
		if s := scheme(u); (s == "http" || s == "https") && !slices.Contains(f.learned, u) && len(f.learned) < maxLearned {
			f.learned = append(f.learned, u)
			added = true
		}
	}
	f.mu.Unlock()
	if added {
		f.Trigger()
	}
}

func scheme(u string) string {
	s, _, _ := strings.Cut(u, ":")
	return strings.ToLower(s)
}

// Refresh fetches every CRL now and applies those that pass the checks. It returns the
// refusals joined (each wraps one of the package's errors and names the URL); the CRLs held
// stay in use for the CAs whose fetch failed.
func (f *Fetcher) Refresh(ctx context.Context) error {
	f.refreshMu.Lock()
	defer f.refreshMu.Unlock()
	var errs []error
	for _, u := range f.o.BundleURLs {
		added, err := f.refreshBundle(ctx, u)
		f.record(u, err)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", redact(u), err))
			f.o.Logger.Warn("revocation: CA bundle refused", "url", redact(u), "reason", reason(err), "err", err)
		}
		for _, dn := range added {
			f.o.Logger.Info("revocation: CA added from the bundle", "url", redact(u), "ca", dn)
		}
	}
	for _, u := range f.URLsToFetch() {
		if err := f.fetch(ctx, u); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", redact(u), err))
		}
	}
	now := f.o.Now()
	grace := f.o.Stores[0].CRLGrace()
	for _, h := range f.Held() {
		if !h.NextUpdate.IsZero() && now.After(h.NextUpdate.Add(grace)) {
			f.o.Logger.Error("revocation: CRL past its next update and grace: certificates of this CA are refused",
				"ca", h.CA, "next_update", h.NextUpdate.UTC())
		}
	}
	f.mu.Lock()
	f.failed = len(errs) > 0
	f.mu.Unlock()
	return errors.Join(errs...)
}

// RefreshURL fetches the CRL at one address now (one of URLsToFetch, or another) and applies
// it when it passes the checks.
func (f *Fetcher) RefreshURL(ctx context.Context, u string) error {
	f.refreshMu.Lock()
	defer f.refreshMu.Unlock()
	return f.fetch(ctx, u)
}

// redact removes a password from a URL for logs and errors.
func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return u
}

func (f *Fetcher) src(u string) *source {
	s := f.sources[u]
	if s == nil {
		s = &source{errs: map[string]float64{}}
		f.sources[u] = s
	}
	return s
}

// fetch downloads and applies the CRL at u, and records the outcome.
func (f *Fetcher) fetch(ctx context.Context, u string) error {
	updated, err := f.download(ctx, u)
	f.record(u, err)
	switch {
	case err != nil:
		f.o.Logger.Warn("revocation: CRL refused", "url", redact(u), "reason", reason(err), "err", err)
	case updated != nil:
		f.o.Logger.Info("revocation: CRL updated", "url", redact(u), "ca", transport.SubjectDN(updated.ca),
			"next_update", updated.crl.NextUpdate.UTC())
	}
	return err
}

// record notes the outcome of a fetch of u for the metrics.
func (f *Fetcher) record(u string, err error) {
	now := f.o.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.src(u)
	if err != nil {
		s.lastFail = now
		s.errs[reason(err)]++
	} else {
		s.lastFetch = now
	}
}

// download fetches u conditionally and applies the body; it returns the new CRL held, nil
// when unchanged.
func (f *Fetcher) download(ctx context.Context, u string) (*held, error) {
	data, v, err := f.get(ctx, u)
	if err != nil || data == nil {
		return nil, err
	}
	h, err := f.apply(u, data, true)
	if err == nil {
		f.keep(u, v)
	}
	return h, err
}

// validators are the ETag and Last-Modified of an answer.
type validators struct{ etag, lastModified string }

// keep stores the validators of u's last good answer for the next conditional GET.
func (f *Fetcher) keep(u string, v validators) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.src(u)
	s.etag, s.lastModified = v.etag, v.lastModified
}

// get fetches u conditionally (If-None-Match, If-Modified-Since) within Timeout and MaxSize; it
// returns the body of a 200 with its validators, nil for a 304. The caller keeps the
// validators once the body passed its checks, so a refused answer is fetched again.
func (f *Fetcher) get(ctx context.Context, u string) ([]byte, validators, error) {
	if s := scheme(u); s != "http" && s != "https" {
		return nil, validators{}, fmt.Errorf("%w: %s", ErrUnsupportedScheme, s)
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, validators{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	f.mu.Lock()
	s := f.src(u)
	if s.etag != "" {
		req.Header.Set("If-None-Match", s.etag)
	}
	if s.lastModified != "" {
		req.Header.Set("If-Modified-Since", s.lastModified)
	}
	f.mu.Unlock()
	resp, err := f.o.Client.Do(req)
	if err != nil {
		return nil, validators{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, validators{}, nil
	default:
		return nil, validators{}, fmt.Errorf("%w: %s", ErrHTTPStatus, resp.Status)
	}
	if resp.ContentLength > f.o.MaxSize {
		return nil, validators{}, fmt.Errorf("%w: %d bytes announced", ErrTooLarge, resp.ContentLength)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, f.o.MaxSize+1))
	if err != nil {
		return nil, validators{}, fmt.Errorf("%w: %v", ErrFetch, err)
	}
	if int64(len(data)) > f.o.MaxSize {
		return nil, validators{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, f.o.MaxSize)
	}
	return data, validators{resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")}, nil
}

// parseCRL reads a DER or PEM CRL.
func parseCRL(data []byte) (*x509.RevocationList, []byte, error) {
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "X509 CRL" {
			return nil, nil, fmt.Errorf("%w: PEM block %q", ErrMalformed, b.Type)
		}
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return crl, data, nil
}

// issuer returns the CA of the first store that signed crl.
func (f *Fetcher) issuer(crl *x509.RevocationList) (*x509.Certificate, error) {
	var named bool
	for _, ca := range f.o.Stores[0].CAs() {
		if !bytes.Equal(ca.RawSubject, crl.RawIssuer) {
			continue
		}
		named = true
		if crl.CheckSignatureFrom(ca) == nil {
			return ca, nil
		}
	}
	if named {
		return nil, ErrBadSignature
	}
	return nil, ErrUnknownIssuer
}

// apply checks a CRL (signature, rollback, and nextUpdate when fresh is set), adds it to the
// stores and persists it. It returns nil, nil when the CRL is the one held.
func (f *Fetcher) apply(u string, data []byte, fresh bool) (*held, error) {
	crl, der, err := parseCRL(data)
	if err != nil {
		return nil, err
	}
	ca, err := f.issuer(crl)
	if err != nil {
		return nil, err
	}
	if fresh && !crl.NextUpdate.IsZero() && f.o.Now().After(crl.NextUpdate) {
		return nil, fmt.Errorf("%w (%s)", ErrStale, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	key := caKey(ca)
	f.mu.Lock()
	old := f.held[key]
	f.mu.Unlock()
	if old != nil {
		switch c := compare(crl, old.crl); {
		case c < 0:
			return nil, ErrRollback
		case c == 0:
			return nil, nil
		}
	}
	for _, st := range f.o.Stores {
		if err := st.AddCRL(der); errors.Is(err, transport.ErrOlderCRL) {
			return nil, fmt.Errorf("%w: %v", ErrRollback, err)
		} else if err != nil {
			return nil, fmt.Errorf("revocation: %s: %w", redact(u), err)
		}
	}
	h := &held{ca: ca, crl: crl}
	f.mu.Lock()
	f.held[key] = h
	f.mu.Unlock()
	if fresh && f.o.Dir != "" {
		if err := writeFile(filepath.Join(f.o.Dir, key+".crl"), der); err != nil {
			f.o.Logger.Warn("revocation: CRL not persisted", "ca", transport.SubjectDN(ca), "err", err)
		}
	}
	return h, nil
}

// compare orders two CRLs of one CA by CRL number, else by thisUpdate.
func compare(a, b *x509.RevocationList) int {
	if a.Number != nil && b.Number != nil {
		return a.Number.Cmp(b.Number)
	}
	return a.ThisUpdate.Compare(b.ThisUpdate)
}

// writeFile replaces path atomically with a 0600 file.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".crl-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Held describes the CRL in use for one CA.
type Held struct {
	CA                     string // DN in whitelist form
	Number                 string // CRL number, empty when absent
	ThisUpdate, NextUpdate time.Time
	Revoked                int
}

// Held returns the CRLs in use, by CA DN.
func (f *Fetcher) Held() []Held {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Held, 0, len(f.held))
	for _, h := range f.held {
		x := Held{CA: transport.SubjectDN(h.ca), ThisUpdate: h.crl.ThisUpdate, NextUpdate: h.crl.NextUpdate,
			Revoked: len(h.crl.RevokedCertificateEntries)}
		if h.crl.Number != nil {
			x.Number = h.crl.Number.String()
		}
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b Held) int { return strings.Compare(a.CA, b.CA) })
	return out
}

// SetCertificates replaces Options.Certificates (our certificate was renewed: its
// distribution points may differ).
func (f *Fetcher) SetCertificates(certs []*x509.Certificate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.o.Certificates = append([]*x509.Certificate(nil), certs...)
}

// Trigger asks Run for a pass now (SIGHUP); it does not wait.
func (f *Fetcher) Trigger() {
	select {
	case f.trigger <- struct{}{}:
	default:
	}
}

// Run refreshes at start, then on the schedule and on Trigger, until ctx ends.
func (f *Fetcher) Run(ctx context.Context) {
	for {
		_ = f.Refresh(ctx) // logged and counted by Refresh
		t := time.NewTimer(f.NextDelay())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-f.trigger:
			t.Stop()
		}
	}
}

// NextDelay is the time Run waits before its next pass: Interval ±10%, RetryInterval after a
// failed pass or while a CRL held is past its nextUpdate, and at most half the time left
// before the nearest nextUpdate.
func (f *Fetcher) NextDelay() time.Duration {
	d := time.Duration(float64(f.o.Interval) * (0.9 + 0.2*rand.Float64()))
	now := f.o.Now()
	f.mu.Lock()
	failed := f.failed
	f.mu.Unlock()
	if failed {
		d = min(d, f.o.RetryInterval)
	}
	for _, h := range f.Held() {
		if h.NextUpdate.IsZero() {
			continue
		}
		if left := h.NextUpdate.Sub(now); left <= 0 {
			d = min(d, f.o.RetryInterval)
		} else {
			d = min(d, left/2)
		}
	}
	return max(d, time.Second)
}
