package webhook

import (
	"bufio"
	"bytes"
	"cmp"
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
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/internal/journal"
	"github.com/mssante-go/sdk/internal/statelock"
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
	// Dir holds the journal of the pending events and the delivery logs (required), for one
	// Dispatcher at a time: New fails while another holds it, until that one's Close.
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
	// CompactSize is the journal size past which it is rewritten with the events not yet
	// delivered, when they fill less than a quarter of it; default 4 MiB. The events not yet
	// delivered are also held in memory, a few hundred bytes each.
	CompactSize int64
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

// pending is an event waiting for an endpoint, with its delivery state.
type pending struct {
	Event    Event     `json:"event"`
	Attempts int       `json:"attempts"`
	First    time.Time `json:"first"`
	Next     time.Time `json:"next,omitzero"`

	seq  uint64
	mark int64 // the journal is durable up to its add record once synced reaches mark
	size int64 // the add record's length
}

// Dispatcher persists events and delivers them. It is safe for concurrent use.
type Dispatcher struct {
	o      Options
	client *http.Client
	log    *slog.Logger
	eps    []*endpoint
	byBAL  map[string][]*endpoint
	byKey  map[string]*endpoint
	unlock func()

	mu sync.Mutex // guards the queues and the journal's content (d.mu before j.mu)
	j  *journal.Journal
	// seq orders the records; liveBytes is the length of the add records of the events not
	// yet delivered nor abandoned; orphans are those of endpoints no longer configured, kept
	// for when they come back.
	seq       uint64
	liveBytes int64
	orphans   []*record
}

type endpoint struct {
	Endpoint
	key   string
	dir   string
	wake  chan struct{}
	queue []*pending // under Dispatcher.mu, in publication order
	logMu sync.Mutex
}

// New checks the endpoints, takes Dir for this Dispatcher and reads back the events not yet
// delivered; Run delivers. A damaged journal is copied aside and read up to the damage,
// which is logged.
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
	if o.CompactSize <= 0 {
		o.CompactSize = 4 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Dispatcher{o: o, client: o.Client, log: o.Logger, byBAL: map[string][]*endpoint{}, byKey: map[string]*endpoint{}}
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
		key := hex.EncodeToString(sum[:8])
		if d.byKey[key] != nil {
			return nil, fmt.Errorf("%w: endpoint of %s given twice", ErrConfig, e.BAL)
		}
		ep := &endpoint{Endpoint: e, key: key, dir: filepath.Join(o.Dir, key), wake: make(chan struct{}, 1)}
		if err := os.MkdirAll(ep.dir, 0o700); err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		d.eps = append(d.eps, ep)
		d.byKey[key] = ep
		d.byBAL[strings.ToLower(e.BAL)] = append(d.byBAL[strings.ToLower(e.BAL)], ep)
	}
	unlock, err := statelock.Lock(o.Dir, "lock")
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	d.unlock = unlock
	if err := d.open(); err != nil {
		if d.j != nil {
			d.j.Close()
		}
		unlock()
		return nil, err
	}
	return d, nil
}

// open replays the journal into the queues, then moves in the events of an earlier layout
// (one file per event in the endpoint's folder).
func (d *Dispatcher) open() error {
	byseq := map[uint64]*record{}
	var order []uint64
	j, err := openJournal(d.o.Dir, d.o.Now(), func(r *record) {
		d.seq = max(d.seq, r.Seq)
		switch r.Op {
		case opAdd:
			if byseq[r.Seq] == nil {
				order = append(order, r.Seq)
			}
			byseq[r.Seq] = r
		case opRetry:
			if a := byseq[r.Seq]; a != nil {
				a.Pending.Attempts, a.Pending.Next = r.Attempts, r.Next
			}
		case opDone:
			delete(byseq, r.Seq)
		}
	})
	if j == nil {
		return err
	}
	if err != nil {
		d.log.Error("webhook: damaged journal copied aside, the events after the damage are lost", "err", err)
	}
	d.j = j
	slices.Sort(order)
	for _, seq := range order {
		r := byseq[seq]
		if r == nil {
			continue
		}
		ep := d.byKey[r.EP]
		b, _ := frame(r)
		d.liveBytes += int64(len(b))
		if ep == nil {
			d.orphans = append(d.orphans, r)
			continue
		}
		p := r.Pending
		p.seq, p.size = seq, int64(len(b))
		ep.queue = append(ep.queue, p)
	}
	if len(d.orphans) > 0 {
		d.log.Warn("webhook: events kept for endpoints no longer configured", "events", len(d.orphans))
	}
	var mark int64
	var imported []string
	for _, ep := range d.eps {
		files, err := filepath.Glob(filepath.Join(ep.dir, "[0-9]*.json"))
		if err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		slices.Sort(files) // zero-padded sequence numbers
		for _, f := range files {
			var p pending
			b, err := os.ReadFile(f)
			if err == nil {
				err = json.Unmarshal(b, &p)
			}
			if err != nil {
				d.log.Error("webhook: unreadable pending event, set aside", "file", f, "err", err)
				os.Rename(f, f+".bad")
				continue
			}
			if mark, err = d.enqueue(ep, &p); err != nil {
				return err
			}
			imported = append(imported, f)
		}
	}
	if len(imported) > 0 {
		if err := d.j.Sync(mark); err != nil {
			return err
		}
		for _, f := range imported {
			os.Remove(f)
		}
		d.log.Info("webhook: pending event files moved into the journal", "events", len(imported))
	}
	return nil
}

// enqueue appends p to ep's queue and its add record to the journal; the caller holds d.mu
// or has the Dispatcher to itself.
func (d *Dispatcher) enqueue(ep *endpoint, p *pending) (int64, error) {
	d.seq++
	b, err := frame(&record{Op: opAdd, Seq: d.seq, EP: ep.key, Pending: p})
	if err != nil {
		return 0, err
	}
	mark, err := d.j.Append(b)
	if err != nil {
		return 0, err
	}
	p.seq, p.mark, p.size = d.seq, mark, int64(len(b))
	ep.queue = append(ep.queue, p)
	d.liveBytes += p.size
	return mark, nil
}

// Endpoints reports whether bal has at least one endpoint.
func (d *Dispatcher) Endpoints(bal string) bool { return len(d.byBAL[strings.ToLower(bal)]) > 0 }

// Publish appends e to the journal for each endpoint of its BAL and returns once that is on
// disk (fsynced, in one fsync with the Publishes made meanwhile), then wakes their delivery.
// It fills ID and Time when empty. A BAL without endpoint is a no-op.
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
	var mark int64
	d.mu.Lock()
	for _, ep := range eps {
		var err error
		if mark, err = d.enqueue(ep, &pending{Event: e, First: d.o.Now()}); err != nil {
			d.mu.Unlock()
			return err
		}
	}
	d.mu.Unlock()
	if err := d.j.Sync(mark); err != nil {
		return err
	}
	for _, ep := range eps {
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

// Close writes what is left of the journal to disk and gives Dir up, for another Dispatcher
// (a restart). Call it once Run has returned; Publish fails after it.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unlock == nil {
		return nil
	}
	err := d.j.Close()
	d.unlock()
	d.unlock = nil
	return err
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
		var p *pending
		d.mu.Lock()
		if len(ep.queue) > 0 && d.j.Durable(ep.queue[0].mark) {
			p = ep.queue[0]
		}
		d.mu.Unlock()
		if p == nil {
			select {
			case <-ctx.Done():
				return
			case <-ep.wake:
				continue
			}
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
		d.attempt(ctx, ep, p)
	}
}

// attempt posts the event at the head of ep's queue and journals the outcome. The outcome
// is written but not fsynced: a crash of the machine (not of the process) may forget that an
// event was delivered, which is then delivered again (the receiver deduplicates on its ID).
func (d *Dispatcher) attempt(ctx context.Context, ep *endpoint, p *pending) {
	rec := Delivery{EventID: p.Event.ID, Type: p.Event.Type, Attempt: p.Attempts + 1}
	status, err := d.post(ctx, ep, &p.Event)
	rec.Time, rec.Status = d.o.Now().UTC(), status
	if ctx.Err() != nil && err != nil {
		return // stopping: the attempt does not count
	}
	jr := &record{Op: opDone, Seq: p.seq}
	switch {
	case err == nil:
		rec.Outcome = "delivered"
	case d.o.Now().Sub(p.First) >= d.o.MaxAge:
		rec.Outcome, rec.Error = "abandoned", err.Error()
		d.log.Error("webhook: event abandoned after retrying", "event_id", p.Event.ID, "type", p.Event.Type, "attempts", rec.Attempt)
	default:
		rec.Outcome, rec.Error = "retry", err.Error()
		jr = &record{Op: opRetry, Seq: p.seq, Attempts: rec.Attempt, Next: d.o.Now().Add(d.backoff(rec.Attempt))}
		d.log.Warn("webhook: delivery failed, will retry", "event_id", p.Event.ID, "type", p.Event.Type, "attempt", rec.Attempt, "err", err)
	}
	d.mu.Lock()
	if jr.Op == opDone {
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		d.liveBytes -= p.size
	} else {
		p.Attempts, p.Next = jr.Attempts, jr.Next
	}
	if b, err := frame(jr); err == nil {
		_, err = d.j.Append(b)
		if err != nil {
			d.log.Error("webhook: journal", "event_id", p.Event.ID, "err", err)
		}
	}
	if err := d.compact(); err != nil {
		d.log.Error("webhook: compacting the journal", "err", err)
	}
	d.mu.Unlock()
	ep.appendLog(rec, d.o.MaxLogSize)
}

// compact rewrites the journal with the live events only, once it passed CompactSize and
// they fill less than a quarter of it (an empty journal when every event is delivered or
// abandoned). The caller holds d.mu.
func (d *Dispatcher) compact() error {
	size := d.j.Size()
	if size < d.o.CompactSize || size < 4*d.liveBytes {
		return nil
	}
	recs := slices.Clone(d.orphans)
	for _, ep := range d.eps {
		for _, p := range ep.queue {
			recs = append(recs, &record{Op: opAdd, Seq: p.seq, EP: ep.key, Pending: p})
		}
	}
	slices.SortFunc(recs, func(a, b *record) int { return cmp.Compare(a.Seq, b.Seq) })
	return rewriteJournal(d.j, recs)
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
