package webhook

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The event types. Receipts give one event per recipient and status change.
const (
	EventAccepted  = "message.accepted"  // the submission server queued it for a recipient
	EventDelivered = "message.delivered" // a DSN said it reached the recipient's BAL
	EventDelayed   = "message.delayed"   // a DSN said delivery is delayed (not final)
	EventFailed    = "message.failed"    // refused for good (submission or failure DSN)
	EventProcessed = "message.processed" // the recipient's software integrated it (MDN)
	EventDisplayed = "message.displayed" // a person's mail client showed it (MDN)
	EventError     = "message.error"     // the recipient's software refused it (MDN 90x)
	EventReceived  = "message.received"  // a message arrived in the BAL
	EventHandled   = "message.handled"   // a received message was marked handled, answer sent
)

// Event is one thing that happened to a BAL's mail: the JSON body of a webhook request. It
// holds identifiers and statuses, never health data (no subject, name or INS).
type Event struct {
	// ID is unique per event and stable across retries: the receiver deduplicates on it.
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	BAL       string    `json:"bal"`
	MessageID string    `json:"message_id"`
	Recipient string    `json:"recipient,omitempty"`
	Status    string    `json:"status,omitempty"`
	SMTPCode  int       `json:"smtp_code,omitempty"`
	MDNCode   int       `json:"mdn_code,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// Endpoint is where the events of one BAL go.
type Endpoint struct {
	// BAL is the address whose events are sent.
	BAL string
	// URL receives the POSTs: https, see the package documentation.
	URL string
	// Secret signs the requests (at least 16 bytes).
	Secret []byte
}

// Options configure New.
type Options struct {
	// Dir holds the pending events and the delivery logs (required).
	Dir string
	// Endpoints are the configured endpoints; a BAL may have several.
	Endpoints []Endpoint
	// AllowInsecure accepts http and loopback or private addresses: for a sandbox only.
	AllowInsecure bool
	// Timeout bounds one attempt (connect, TLS, answer); default 10 s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the delay between attempts (doubled each time, with
	// jitter); defaults 1 s and 1 h. MaxAge is how long an event is retried; default 5 days.
	MinBackoff, MaxBackoff, MaxAge time.Duration
	// MaxLogSize bounds a delivery log file; the older half is dropped beyond it. Default 1 MiB.
	MaxLogSize int64
	// Client replaces the HTTP client (tests); its transport then bears the address checks.
	Client *http.Client
	// Logger receives operational events (event ids and types, never bodies); nil discards.
	Logger *slog.Logger
	// Now is the clock of the signatures and the log; default time.Now.
	Now func() time.Time
}

// ErrConfig reports invalid Options.
var ErrConfig = errors.New("webhook: invalid configuration")

// Delivery is one line of an endpoint's delivery log.
type Delivery struct {
	EventID string    `json:"event_id"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Attempt int       `json:"attempt"`
	// Status is the HTTP status answered, 0 when none came.
	Status int `json:"status,omitempty"`
	// Error says why an attempt failed without an answer.
	Error string `json:"error,omitempty"`
	// Outcome is "delivered", "retry" or "abandoned".
	Outcome string `json:"outcome"`
}

// pending is an event on disk with its delivery state.
type pending struct {
	Event    Event     `json:"event"`
	Attempts int       `json:"attempts"`
	First    time.Time `json:"first"`
	Next     time.Time `json:"next,omitzero"`
}

// Dispatcher persists events and delivers them. It is safe for concurrent use.
type Dispatcher struct {
	o      Options
	client *http.Client
	log    *slog.Logger
	eps    []*endpoint
	byBAL  map[string][]*endpoint
}

type endpoint struct {
	Endpoint
	dir  string
	wake chan struct{}

	mu    sync.Mutex
	seq   uint64
	logMu sync.Mutex
}

// New checks the endpoints and opens their queues; Run delivers.
func New(opts *Options) (*Dispatcher, error) {
	if opts == nil || opts.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrConfig)
	}
	o := *opts
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 5 * 24 * time.Hour
	}
	if o.MaxLogSize <= 0 {
		o.MaxLogSize = 1 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Dispatcher{o: o, client: o.Client, log: o.Logger, byBAL: map[string][]*endpoint{}}
	if d.client == nil {
		d.client = newClient(o.Timeout, o.AllowInsecure)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for _, e := range o.Endpoints {
		if e.BAL == "" {
			return nil, fmt.Errorf("%w: an endpoint without BAL", ErrConfig)
		}
		if err := CheckURL(e.URL, o.AllowInsecure); err != nil {
			return nil, fmt.Errorf("%w: endpoint of %s: %w", ErrConfig, e.BAL, err)
		}
		if len(e.Secret) < 16 {
			return nil, fmt.Errorf("%w: endpoint of %s: the secret must be at least 16 bytes", ErrConfig, e.BAL)
		}
		sum := sha256.Sum256([]byte(strings.ToLower(e.BAL) + "\n" + e.URL))
		ep := &endpoint{Endpoint: e, dir: filepath.Join(o.Dir, hex.EncodeToString(sum[:8])), wake: make(chan struct{}, 1)}
		if err := os.MkdirAll(ep.dir, 0o700); err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		seqs, err := ep.list()
		if err != nil {
			return nil, err
		}
		if len(seqs) > 0 {
			ep.seq = seqs[len(seqs)-1]
		}
		d.eps = append(d.eps, ep)
		key := strings.ToLower(e.BAL)
		d.byBAL[key] = append(d.byBAL[key], ep)
	}
	return d, nil
}

// Endpoints reports whether bal has at least one endpoint.
func (d *Dispatcher) Endpoints(bal string) bool { return len(d.byBAL[strings.ToLower(bal)]) > 0 }

// Publish writes e for each endpoint of its BAL, fsynced, and wakes their delivery. It fills
// ID and Time when empty. A BAL without endpoint is a no-op.
func (d *Dispatcher) Publish(_ context.Context, e Event) error {
	eps := d.byBAL[strings.ToLower(e.BAL)]
	if len(eps) == 0 {
		return nil
	}
	if e.ID == "" {
		var b [16]byte
		rand.Read(b[:])
		e.ID = "evt_" + hex.EncodeToString(b[:])
	}
	if e.Time.IsZero() {
		e.Time = d.o.Now().UTC()
	}
	for _, ep := range eps {
		if err := ep.add(pending{Event: e, First: d.o.Now()}); err != nil {
			return err
		}
		select {
		case ep.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Run delivers the pending events of every endpoint until ctx ends, and returns ctx's error.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ep := range d.eps {
		wg.Go(func() { d.loop(ctx, ep) })
	}
	wg.Wait()
	return ctx.Err()
}

// Log returns the last n deliveries (attempts) recorded for the endpoints of bal, oldest first.
func (d *Dispatcher) Log(bal string, n int) ([]Delivery, error) {
	var all []Delivery
	for _, ep := range d.byBAL[strings.ToLower(bal)] {
		ep.logMu.Lock()
		b, err := os.ReadFile(filepath.Join(ep.dir, "deliveries.jsonl"))
		ep.logMu.Unlock()
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var r Delivery
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				all = append(all, r)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b Delivery) int { return a.Time.Compare(b.Time) })
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all, nil
}

func (d *Dispatcher) loop(ctx context.Context, ep *endpoint) {
	for {
		seqs, err := ep.list()
		if err != nil {
			d.log.Error("webhook: reading the queue", "err", err)
		}
		if len(seqs) == 0 || err != nil {
			select {
			case <-ctx.Done():
				return
			case <-ep.wake:
				continue
			}
		}
		p, err := ep.read(seqs[0])
		if err != nil {
			// An unreadable file (disk damage) would stall the queue for ever: set it aside.
			d.log.Error("webhook: unreadable pending event, set aside", "file", seqs[0], "err", err)
			os.Rename(ep.file(seqs[0]), ep.file(seqs[0])+".bad")
			continue
		}
		if wait := time.Until(p.Next); !p.Next.IsZero() && wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		d.attempt(ctx, ep, seqs[0], p)
	}
}

func (d *Dispatcher) attempt(ctx context.Context, ep *endpoint, seq uint64, p *pending) {
	p.Attempts++
	rec := Delivery{EventID: p.Event.ID, Type: p.Event.Type, Attempt: p.Attempts}
	status, err := d.post(ctx, ep, &p.Event)
	rec.Time, rec.Status = d.o.Now().UTC(), status
	if ctx.Err() != nil && err != nil {
		return // stopping: the attempt does not count
	}
	switch {
	case err == nil:
		rec.Outcome = "delivered"
		if err := os.Remove(ep.file(seq)); err != nil {
			d.log.Error("webhook: removing a delivered event", "event_id", p.Event.ID, "err", err)
		}
	case d.o.Now().Sub(p.First) >= d.o.MaxAge:
		rec.Outcome, rec.Error = "abandoned", err.Error()
		d.log.Error("webhook: event abandoned after retrying", "event_id", p.Event.ID, "type", p.Event.Type, "attempts", p.Attempts)
		os.Remove(ep.file(seq))
	default:
		rec.Outcome, rec.Error = "retry", err.Error()
		p.Next = d.o.Now().Add(d.backoff(p.Attempts))
		if err := ep.write(seq, p); err != nil {
			d.log.Error("webhook: saving the retry state", "event_id", p.Event.ID, "err", err)
		}
		d.log.Warn("webhook: delivery failed, will retry", "event_id", p.Event.ID, "type", p.Event.Type, "attempt", p.Attempts, "err", err)
	}
	ep.appendLog(rec, d.o.MaxLogSize)
}

func (d *Dispatcher) backoff(attempts int) time.Duration {
	b := float64(d.o.MinBackoff) * math.Pow(2, float64(min(attempts-1, 40)))
	b = min(b, float64(d.o.MaxBackoff))
	return time.Duration(b/2 + mrand.Float64()*b/2)
}

// post sends one event and returns the HTTP status; an error for anything but 2xx.
func (d *Dispatcher) post(ctx context.Context, ep *endpoint, e *Event) (int, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mssante-go-webhook")
	req.Header.Set("Webhook-Id", e.ID)
	req.Header.Set("Webhook-Signature", Sign(ep.Secret, d.o.Now(), body))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("webhook: endpoint answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

func (ep *endpoint) file(seq uint64) string {
	return filepath.Join(ep.dir, fmt.Sprintf("%020d.json", seq))
}

func (ep *endpoint) list() ([]uint64, error) {
	ents, err := os.ReadDir(ep.dir)
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	var seqs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

func (ep *endpoint) read(seq uint64) (*pending, error) {
	b, err := os.ReadFile(ep.file(seq))
	if err != nil {
		return nil, err
	}
	var p pending
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (ep *endpoint) add(p pending) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.seq++
	return ep.write(ep.seq, &p)
}

// write replaces the file of seq atomically and durably: temporary file, fsync, rename, fsync
// of the folder.
func (ep *endpoint) write(seq uint64, p *pending) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(ep.dir, "tmp-*")
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), ep.file(seq))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("webhook: %w", err)
	}
	return syncDir(ep.dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return nil
}

func (ep *endpoint) appendLog(r Delivery, max int64) {
	b, _ := json.Marshal(r)
	ep.logMu.Lock()
	defer ep.logMu.Unlock()
	path := filepath.Join(ep.dir, "deliveries.jsonl")
	if st, err := os.Stat(path); err == nil && st.Size() > max {
		if old, err := os.ReadFile(path); err == nil {
			old = old[len(old)/2:]
			if i := bytes.IndexByte(old, '\n'); i >= 0 {
				old = old[i+1:]
			}
			os.WriteFile(path, old, 0o600)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	f.Write(append(b, '\n'))
	f.Close()
}
