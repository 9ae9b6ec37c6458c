package annuaire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultExtractionURL publishes Extraction_Correspondance_MSSante, every day. Its
// server certificate is issued by an IGC-Santé CA: give FetchOptions.HTTPClient a TLS
// configuration that trusts the IGC-Santé roots (package transport has them).
const DefaultExtractionURL = "https://service.annuaire.sante.fr/annuaire-sante-webservices/V300/services/extraction/Extraction_Correspondance_MSSante"

// extractionName is the name of a published file; its digits are the generation time.
var extractionName = regexp.MustCompile(`^Extraction_Correspondance_MSSante_(\d{12})\.(zip|txt)$`)

// ExtractionTime returns the generation time a published file's name carries
// (Extraction_Correspondance_MSSante_yyyyMMddHHmm.zip, French time), and whether it has one.
func ExtractionTime(name string) (time.Time, bool) {
	m := extractionName.FindStringSubmatch(filepath.Base(name))
	if m == nil {
		return time.Time{}, false
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.UTC
	}
	t, err := time.ParseInLocation("200601021504", m[1], paris)
	return t, err == nil
}

// FetchOptions tune [Fetch] and the [Refresher].
type FetchOptions struct {
	// URL is where the file is published (empty = DefaultExtractionURL). https only.
	URL string
	// HTTPClient makes the requests (nil = TLS 1.2 minimum, system roots, 10 min timeout).
	HTTPClient *http.Client
	// Progress, when set, is called as the download proceeds (total is -1 when unknown).
	Progress func(done, total int64)
	// MaxSize bounds the download (0 = 512 MiB; the ZIP is about 20 MB).
	MaxSize int64
	// Load tunes the loading of the downloaded file by the Refresher.
	Load *LoadOptions
	// MaxShrink is the largest drop of the number of lines from the extraction in use to a new
	// one that the Refresher accepts: a file that lost more is taken for a partial one and
	// refused with ErrPartial (0 = DefaultMaxShrink; negative = no check).
	MaxShrink float64
	// Logger receives download events (nil = discard).
	Logger *slog.Logger
}

func (o *FetchOptions) client() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment}}
}

func (o *FetchOptions) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ErrNoFileName reports an answer whose Content-Disposition does not name an extraction file.
var ErrNoFileName = errors.New("annuaire: the server did not name the extraction file")

// Fetch downloads the published extraction into dir, under the name its Content-Disposition
// gives, unless that file (or a file of that name marked bad) is there already: a HEAD request
// is enough to know. It returns the file's path and whether it was downloaded now. The file is
// written to a temporary name, synced, then renamed: dir never holds a partial file.
func Fetch(ctx context.Context, dir string, opts *FetchOptions) (path string, fresh bool, err error) {
	if opts == nil {
		opts = &FetchOptions{}
	}
	u := opts.URL
	if u == "" {
		u = DefaultExtractionURL
	}
	if !strings.HasPrefix(u, "https://") {
		return "", false, fmt.Errorf("annuaire: the extraction URL must be https")
	}
	c := opts.client()
	name := ""
	if req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil); err == nil {
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				name, _ = fileName(resp.Header.Get("Content-Disposition"))
			}
		} else if ctx.Err() != nil || isTLSError(err) {
			return "", false, fmt.Errorf("annuaire: fetching the extraction: %w", err)
		}
	}
	if name != "" {
		if p, ok := present(dir, name); ok {
			return p, false, nil
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", false, fmt.Errorf("annuaire: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("annuaire: fetching the extraction: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", false, fmt.Errorf("annuaire: fetching the extraction: HTTP %d", resp.StatusCode)
	}
	name, err = fileName(resp.Header.Get("Content-Disposition"))
	if err != nil {
		return "", false, err
	}
	if p, ok := present(dir, name); ok {
		return p, false, nil
	}
	max := opts.MaxSize
	if max <= 0 {
		max = 512 << 20
	}
	if resp.ContentLength > max {
		return "", false, ErrTooLarge
	}
	tmp, err := os.CreateTemp(dir, ".download-*")
	if err != nil {
		return "", false, fmt.Errorf("annuaire: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	w := io.Writer(tmp)
	if opts.Progress != nil {
		w = &progressWriter{w: tmp, total: resp.ContentLength, f: opts.Progress}
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, max+1))
	if err == nil && n > max {
		err = ErrTooLarge
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("annuaire: download truncated: %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("annuaire: downloading the extraction: %w", err)
	}
	path = filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", false, fmt.Errorf("annuaire: %w", err)
	}
	opts.logger().Info("annuaire: extraction downloaded", "file", name, "bytes", n)
	return path, true, nil
}

func isTLSError(err error) bool {
	var cv *tls.CertificateVerificationError
	return errors.As(err, &cv)
}

// present reports whether dir holds name already, good or marked bad.
func present(dir, name string) (string, bool) {
	p := filepath.Join(dir, name)
	for _, q := range []string{p, p + ".bad"} {
		if _, err := os.Stat(q); err == nil {
			return p, true
		}
	}
	return p, false
}

// fileName takes the file name out of a Content-Disposition header and checks it is an
// extraction's (no path, the published pattern).
func fileName(cd string) (string, error) {
	_, params, err := mime.ParseMediaType(cd)
	if err != nil {
		return "", ErrNoFileName
	}
	name := params["filename"]
	if !extractionName.MatchString(name) {
		return "", fmt.Errorf("%w: %q", ErrNoFileName, truncate(name, 80))
	}
	return name, nil
}

type progressWriter struct {
	w           io.Writer
	done, total int64
	f           func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.f(p.done, p.total)
	return n, err
}

// Refresher keeps an [Extraction] fresh from the published file: Refresh downloads the file
// when its name (its generation time) changes, loads it, and swaps it in atomically. A file
// that fails to load is renamed *.bad and the previous one stays in use; a file older than
// the one in use is never swapped in. It implements [Directory] over the current extraction.
type Refresher struct {
	dir  string
	opts FetchOptions
	cur  atomic.Pointer[loaded]
}

type loaded struct {
	x    *Extraction
	path string
	at   time.Time
}

// ErrNotLoaded reports a search before any extraction was loaded.
var ErrNotLoaded = errors.New("annuaire: no extraction loaded yet")

// NewRefresher returns a refresher that keeps its files in dir. It loads the newest good
// extraction already there, if any (the last good file survives restarts).
func NewRefresher(dir string, opts *FetchOptions) (*Refresher, error) {
	r := &Refresher{dir: dir}
	if opts != nil {
		r.opts = *opts
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("annuaire: %w", err)
	}
	var names []string
	for _, e := range entries {
		if extractionName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.SortFunc(names, func(a, b string) int { // by generation time, newest first
		ta, _ := ExtractionTime(a)
		tb, _ := ExtractionTime(b)
		return tb.Compare(ta)
	})
	for _, n := range names {
		if r.load(filepath.Join(dir, n)) == nil {
			break
		}
	}
	return r, nil
}

func (r *Refresher) load(path string) error {
	x, err := LoadFile(path, r.opts.Load)
	if err == nil {
		err = r.checkShrink(x)
	}
	if err != nil {
		r.opts.logger().Warn("annuaire: extraction refused", "file", filepath.Base(path), "err", err)
		os.Rename(path, path+".bad")
		return err
	}
	if rep := x.Report(); rep.Skipped > 0 {
		first := rep.BadLines[0]
		r.opts.logger().Warn("annuaire: malformed lines skipped", "file", filepath.Base(path),
			"skipped", rep.Skipped, "lines", rep.Lines, "first_line", first.Line, "first_reason", first.Reason)
	}
	at, _ := ExtractionTime(path)
	r.cur.Store(&loaded{x: x, path: path, at: at})
	return nil
}

// DefaultMaxShrink is FetchOptions.MaxShrink's default: a day's file never loses a tenth of
// the BALs.
const DefaultMaxShrink = 0.1

// checkShrink refuses x when it has far fewer lines than the extraction in use.
func (r *Refresher) checkShrink(x *Extraction) error {
	cur := r.cur.Load()
	shrink := r.opts.MaxShrink
	if shrink == 0 {
		shrink = DefaultMaxShrink
	}
	if cur == nil || shrink < 0 {
		return nil
	}
	if float64(x.Len()) < (1-shrink)*float64(cur.x.Len()) {
		return fmt.Errorf("%w: %d lines where the extraction in use has %d", ErrPartial, x.Len(), cur.x.Len())
	}
	return nil
}

// Refresh checks the published file and swaps in a newer one; changed reports a swap.
func (r *Refresher) Refresh(ctx context.Context) (changed bool, err error) {
	path, fresh, err := Fetch(ctx, r.dir, &r.opts)
	if err != nil || !fresh {
		return false, err
	}
	at, _ := ExtractionTime(path)
	if cur := r.cur.Load(); cur != nil && !at.After(cur.at) {
		os.Rename(path, path+".bad")
		return false, fmt.Errorf("annuaire: the published extraction (%s) is not newer than the one in use: kept", filepath.Base(path))
	}
	prev := r.cur.Load()
	if err := r.load(path); err != nil {
		return false, err
	}
	if prev != nil && prev.path != path {
		os.Remove(prev.path) // the new file is the last good one now
	}
	return true, nil
}

// Run refreshes every interval until ctx ends, logging failures; it returns ctx's error.
func (r *Refresher) Run(ctx context.Context, every time.Duration) error {
	for {
		if _, err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.opts.logger().Warn("annuaire: refreshing the extraction", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// Current returns the extraction in use and its generation time (nil before the first load).
func (r *Refresher) Current() (*Extraction, time.Time) {
	if c := r.cur.Load(); c != nil {
		return c.x, c.at
	}
	return nil, time.Time{}
}

// Search implements [Directory] over the current extraction.
func (r *Refresher) Search(ctx context.Context, q Query) (*Result, error) {
	x, _ := r.Current()
	if x == nil {
		return nil, ErrNotLoaded
	}
	return x.Search(ctx, q)
}
