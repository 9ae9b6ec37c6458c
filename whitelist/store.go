package whitelist

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of StoreOptions. The ANS texts do not say how often the list must be refreshed;
// these are the safe reading, each configurable in StoreOptions.
const (
	DefaultInterval      = time.Hour
	DefaultRetryInterval = 5 * time.Minute
	DefaultMaxAge        = 7 * 24 * time.Hour
	DefaultFetchTimeout  = 2 * time.Minute
	// MaxClockSkew is how far in the future a list's DateDeGeneration may be.
	MaxClockSkew = 24 * time.Hour
)

// StoreOptions configures a Store. The struct is copied by NewStore.
type StoreOptions struct {
	// URL of the list; "" means DefaultURL. Only https is accepted.
	URL string
	// Client fetches the list. Nil means a client with TLS 1.2 at least that trusts only
	// Verify.Roots (the IGC-Santé roots) for the server certificate; NewStore then requires
	// Verify.Roots. Pass the client of the transport package to share its trust store.
	Client *http.Client
	// Verify says how every list (downloaded or loaded from CacheFile) is verified. Its At
	// defaults to Now.
	Verify VerifyOptions
	// CacheFile persists the last good list (the verified bytes), loaded by NewStore. "" means
	// no persistence.
	CacheFile string
	// Interval between refreshes, plus a random delay up to Jitter; 0 means DefaultInterval and
	// Interval/10.
	Interval, Jitter time.Duration
	// RetryInterval after a failed refresh; 0 means DefaultRetryInterval.
	RetryInterval time.Duration
	// FetchTimeout bounds one download; 0 means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// MaxAge is the age of the list (from its DateDeGeneration) past which the store raises an
	// alarm (a warning log and State.TooOld); 0 means DefaultMaxAge.
	MaxAge time.Duration
	// RefuseTooOld makes the policy refuse everything (ErrListTooOld) past MaxAge.
	RefuseTooOld bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives refresh events; nil discards them. No entry content is logged.
	Logger *slog.Logger
}

// State reports what a Store holds and how its refreshes went.
type State struct {
	Generated        time.Time     // DateDeGeneration of the list held; zero when none
	Age              time.Duration // now - Generated
	Entries, Domains int
	TooOld           bool // Age > MaxAge
	LastAttempt      time.Time
	LastSuccess      time.Time // last refresh that ended with a valid list (new or unchanged)
	LastError        error     // error of the last attempt; nil when it succeeded
}

// Store holds the current liste blanche, refreshes it from an HTTPS source, and implements
// Policy with it. The list is swapped atomically and only after it was verified; a failed
// refresh keeps the last good list. Safe for concurrent use.
type Store struct {
	opts   StoreOptions
	client *http.Client
	cur    atomic.Pointer[List]
	wake   chan struct{}

	refreshMu sync.Mutex // one refresh at a time
	mu        sync.Mutex // guards the fields below
	etag      string
	lastMod   string
	state     State
}

// NewStore returns a store, loading and verifying opts.CacheFile when it exists. A cache that
// does not verify is reported in State and logged, not returned: the store then holds no list
// until a refresh succeeds. An error is returned only for invalid options.
func NewStore(opts *StoreOptions) (*Store, error) {
	s := &Store{wake: make(chan struct{}, 1)}
	if opts != nil {
		s.opts = *opts
	}
	o := &s.opts
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if u, err := url.Parse(o.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("whitelist: source %q is not an https URL", o.URL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Jitter <= 0 {
		o.Jitter = o.Interval / 10
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Verify.At == nil {
		o.Verify.At = o.Now
	}
	s.client = o.Client
	if s.client == nil {
		if o.Verify.Roots == nil {
			return nil, errors.New("whitelist: no Client and no Verify.Roots to check the HTTPS source with")
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.Verify.Roots}
		s.client = &http.Client{Transport: tr}
	}
	if o.CacheFile != "" {
		s.loadCache()
	}
	return s, nil
}

func (s *Store) loadCache() {
	f, err := os.Open(s.opts.CacheFile)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		var l *List
		l, err = Verify(f, &s.opts.Verify)
		f.Close()
		if err == nil {
			s.cur.Store(l)
			s.loadValidators()
			s.opts.Logger.Info("whitelist: loaded the persisted list", "generated", l.Generated())
			return
		}
	}
	err = fmt.Errorf("whitelist: persisted list %s: %w", s.opts.CacheFile, err)
	s.mu.Lock()
	s.state.LastError = err
	s.mu.Unlock()
	s.opts.Logger.Error("whitelist: persisted list refused", "err", err)
}

// List returns the current list, nil when none is held.
func (s *Store) List() *List { return s.cur.Load() }

// State returns the generation date and age of the list held and the outcome of the refreshes.
func (s *Store) State() State {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	if l := s.cur.Load(); l != nil {
		st.Generated = l.Generated()
		st.Age = s.opts.Now().Sub(st.Generated)
		st.Entries, st.Domains = l.Len()
		st.TooOld = st.Age > s.opts.MaxAge
	}
	return st
}

// usable returns the list the policy may use.
func (s *Store) usable() (*List, error) {
	l := s.cur.Load()
	if l == nil {
		return nil, ErrNoList
	}
	if s.opts.RefuseTooOld && s.opts.Now().Sub(l.Generated()) > s.opts.MaxAge {
		return nil, ErrListTooOld
	}
	return l, nil
}

// CheckDomain implements Policy with the current list.
func (s *Store) CheckDomain(domain string) error {
	l, err := s.usable()
	if err != nil {
		return err
	}
	return l.CheckDomain(domain)
}

// CheckOperator implements Policy with the current list.
func (s *Store) CheckOperator(domain, operatorDN string) error {
	l, err := s.usable()
	if err != nil {
		return err
	}
	return l.CheckOperator(domain, operatorDN)
}

// CheckOperatorAny is List.CheckOperatorAny with the current list.
func (s *Store) CheckOperatorAny(operatorDN string) error {
	l, err := s.usable()
	if err != nil {
		return err
	}
	return l.CheckOperatorAny(operatorDN)
}

// Domains calls fn for every domain of the current usable list (none when there is none).
func (s *Store) Domains(fn func(domain string, entries []Entry) bool) {
	if l, err := s.usable(); err == nil {
		l.Domains(fn)
	}
}

// RefreshSoon asks a running Run loop to refresh now, without waiting for it.
func (s *Store) RefreshSoon() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run refreshes the list until ctx is done: at once, then every Interval plus a random jitter
// (RetryInterval after a failure), and whenever RefreshSoon is called. It returns ctx.Err().
func (s *Store) Run(ctx context.Context) error {
	for {
		wait := s.opts.Interval
		if err := s.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			wait = s.opts.RetryInterval
		}
		wait += time.Duration(rand.Int64N(int64(s.opts.Jitter) + 1))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// Refresh downloads the list now (conditionally, when one is held), verifies it, refuses a
// rollback, persists it and swaps it in. Whatever fails, the list held before is kept.
func (s *Store) Refresh(ctx context.Context) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	now := s.opts.Now()
	err := s.fetch(ctx)
	s.mu.Lock()
	s.state.LastAttempt = now
	s.state.LastError = err
	if err == nil {
		s.state.LastSuccess = now
	}
	s.mu.Unlock()
	if err != nil {
		s.opts.Logger.Error("whitelist: refresh failed, keeping the list held", "err", err)
	}
	if st := s.State(); st.TooOld {
		s.opts.Logger.Warn("whitelist: list older than the maximum age", "generated", st.Generated, "age", st.Age, "max_age", s.opts.MaxAge)
	}
	return err
}

func (s *Store) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.opts.URL, nil)
	if err != nil {
		return fmt.Errorf("whitelist: %w", err)
	}
	cur := s.cur.Load()
	s.mu.Lock()
	if cur != nil {
		if s.etag != "" {
			req.Header.Set("If-None-Match", s.etag)
		}
		if s.lastMod != "" {
			req.Header.Set("If-Modified-Since", s.lastMod)
		}
	}
	s.mu.Unlock()
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("whitelist: fetch: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && cur != nil:
		s.opts.Logger.Debug("whitelist: list not modified")
		return nil
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("whitelist: fetch: HTTP status %s", resp.Status)
	}
	l, tmp, err := s.verifyBody(resp.Body)
	if tmp != "" {
		defer os.Remove(tmp) // after a successful rename, there is nothing left to remove
	}
	if err != nil {
		return err
	}
	if l.Generated().After(s.opts.Now().Add(MaxClockSkew)) {
		// Held, such a list would make every later one look like a rollback.
		return fmt.Errorf("%w: generated %s, in the future", ErrFutureList, l.Generated().Format(time.RFC3339))
	}
	if cur != nil {
		switch {
		case l.Generated().Before(cur.Generated()):
			return fmt.Errorf("%w: fetched %s, held %s", ErrRollback, l.Generated().Format(time.RFC3339), cur.Generated().Format(time.RFC3339))
		case l.Generated().Equal(cur.Generated()):
			s.setValidators(resp, true)
			return nil
		}
	}
	var perr error
	if tmp != "" {
		perr = persist(tmp, s.opts.CacheFile)
	}
	s.cur.Store(l)
	s.setValidators(resp, perr == nil)
	e, d := l.Len()
	s.opts.Logger.Info("whitelist: new list", "generated", l.Generated(), "entries", e, "domains", d)
	if perr != nil {
		return fmt.Errorf("whitelist: new list in use but not persisted: %w", perr)
	}
	return nil
}

// setValidators keeps the ETag and Last-Modified of the list held, for the next conditional GET;
// with a CacheFile they are saved beside it (only once the list they describe is persisted, so a
// restart never sends validators of a list it does not hold).
func (s *Store) setValidators(resp *http.Response, persisted bool) {
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	s.mu.Lock()
	s.etag, s.lastMod = etag, lastMod
	s.mu.Unlock()
	if s.opts.CacheFile == "" || !persisted {
		return
	}
	path := s.opts.CacheFile + ".validators"
	tmp := path + ".tmp"
	// Best effort: without them the next start makes one full download.
	if os.WriteFile(tmp, []byte(etag+"\n"+lastMod+"\n"), 0o644) == nil {
		os.Rename(tmp, path)
	}
}

// loadValidators reads the validators saved with the persisted list.
func (s *Store) loadValidators() {
	b, err := os.ReadFile(s.opts.CacheFile + ".validators")
	if err != nil || len(b) > 4096 {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) >= 2 {
		s.etag, s.lastMod = lines[0], lines[1]
	}
}

// verifyBody verifies the body as it streams, copying it to a temporary file beside CacheFile
// when there is one.
func (s *Store) verifyBody(body io.Reader) (*List, string, error) {
	if s.opts.CacheFile == "" {
		l, err := Verify(body, &s.opts.Verify)
		return l, "", err
	}
	f, err := os.CreateTemp(filepath.Dir(s.opts.CacheFile), filepath.Base(s.opts.CacheFile)+".*.tmp")
	if err != nil {
		return nil, "", fmt.Errorf("whitelist: %w", err)
	}
	l, err := Verify(io.TeeReader(body, f), &s.opts.Verify)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return l, f.Name(), err
}

// persist renames tmp over path and syncs the folder, so the last good list survives a crash.
func persist(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
