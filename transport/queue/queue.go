// Package queue is the durable mail queue of the MSSanté reference connector: a message and its
// envelope are written and fsynced (file and directory) before Enqueue returns, so that an SMTP
// server may answer 250 only once the message survives a crash; every recipient then carries
// its own state (pending, delivered, failed) and is retried on an exponential schedule with
// jitter until it is delivered or gives up (5 days by default).
//
// Specifications (docs/references.md):
//   - RFC 5321 §4.5.4.1 (retry strategy) and §6.1 (reliable delivery: "durable before 250");
//   - RFC 3461 §4.1 (NOTIFY: SUCCESS, FAILURE, DELAY, NEVER) for the delivery notices the queue
//     raises, exactly one final notice per recipient; the DSN itself (RFC 3464) is built by the
//     Notifier the connector supplies (connector.DSNNotifier).
//
// Layout of the spool directory: data/ID holds the message followed by a trailer (the envelope
// as received, its length and a magic string); env/ID.json holds the per-recipient state once it
// changes (replaced atomically: write to tmp/, fsync, rename, fsync the directory). A message is
// committed when its trailer is on disk: Commit appends it, then fsyncs the file and the data/
// directory, one journal commit on the path to 250. A data file without a valid trailer is the
// debris of a crash before 250 and is removed when the queue reads it. A clean Close also
// writes index, the state of every message in one file, which the next Open takes instead of
// every message's files and removes at once (see index.go for why it is never stale); a crash
// leaves none. Open returns once it has listed data/, the messages being taken from the index,
// or read from their files, in the background while the queue accepts and delivers (see
// loader.go and Stats.Loading). Whoever edits a stopped spool's files by hand removes index
// first.
//
// Scheduling: a heap of message IDs by due time hands Run the due messages without a scan of
// the queue, and a destination that cannot be reached is suspended after a few attempts
// (Schedule.SuspendAfter) instead of being dialled for every message.
//
// Start with [Open]. An SMTP server writes a message with [Queue.Begin] and [Writer.Commit]
// (or [Queue.Enqueue] for a whole message) before it answers 250; [Queue.Run] hands the due
// recipients to a [Deliverer] (connector.Delivery) until its context ends.
//
// Administration (what Postfix's mailq and postsuper do). The owner of a spool keeps its state
// in memory and rewrites env/ files from it, so another process must not change those files
// under it. [Inspect], [InspectMessage] and [ReadHeader] only read files that are replaced
// atomically, and are safe at any time. Changes ([Queue.Hold], [Queue.Release],
// [Queue.Retry], [Queue.Delete]) are made by the owner, safely while Run delivers; [Admin]
// gets them there from another process. Every open Queue holds a shared flock on queue.lock;
// Admin tries an exclusive one: when it gets it, no owner runs and it applies the change to
// the files itself, keeping owners out meanwhile; when it does not, it writes a request to
// ctl/ (a file renamed into place) that the owner's Run picks up within
// RunOptions.ControlPoll, applies, and answers in ctl/. A hold is a marker file in hold/,
// beside the message rather than in its state, so that an attempt in progress, which commits
// its own copy of the state, cannot undo it. A delete is silent (no DSN), like postsuper -d.
package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/internal/statelock"
)

// Errors returned by the queue.
var (
	// ErrClosed is returned by calls on a closed queue.
	ErrClosed = errors.New("queue: closed")
	// ErrNotFound is returned for an unknown message ID.
	ErrNotFound = errors.New("queue: message not found")
	// ErrTooLarge is returned by Enqueue when the message exceeds Options.MaxMessageBytes.
	ErrTooLarge = errors.New("queue: message too large")
	// ErrNoRecipients is returned by Enqueue for an envelope without recipients.
	ErrNoRecipients = errors.New("queue: envelope has no recipients")
	// ErrSuspended is the Result.Err of a recipient deferred without an attempt because its
	// destination is suspended (see Schedule.SuspendAfter).
	ErrSuspended = errors.New("queue: delivery temporarily suspended")
)

// State is the delivery state of one recipient.
type State string

// Recipient states. Delivered and Failed are final: a recipient never leaves them.
const (
	Pending   State = "pending"
	Delivered State = "delivered"
	Failed    State = "failed"
)

// Notify values of RFC 3461 §4.1.
const (
	NotifyNever   = "NEVER"
	NotifySuccess = "SUCCESS"
	NotifyFailure = "FAILURE"
	NotifyDelay   = "DELAY"
)

// Recipient is one envelope recipient and its delivery state.
type Recipient struct {
	Addr string `json:"addr"`
	// ORCPT is the original recipient (RFC 3461 §4.2) as "type;address", empty when not given.
	ORCPT string `json:"orcpt,omitempty"`
	// Notify is the NOTIFY parameter; empty means the default, FAILURE and DELAY (RFC 3461 §4.1).
	Notify []string `json:"notify,omitempty"`

	State       State     `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	// LastStatus is the last SMTP reply or error for this recipient, e.g. "550 5.1.1 unknown user".
	LastStatus string `json:"last_status,omitempty"`
	// RemoteMTA is the host that gave LastStatus, when a remote server answered.
	RemoteMTA string `json:"remote_mta,omitempty"`
	// DelayNotified is set once a delay notice was raised (at most one per recipient).
	DelayNotified bool `json:"delay_notified,omitempty"`
	// Notice is a notice raised but not yet handed to the Notifier (survives restarts).
	Notice NoticeKind `json:"notice,omitempty"`
	// NoticeRetry is when a notice the Notifier refused is offered again.
	NoticeRetry time.Time `json:"notice_retry,omitzero"`
	// FinalAt is when the recipient reached a final state.
	FinalAt time.Time `json:"final_at,omitzero"`
}

func (r *Recipient) wants(n string) bool {
	if len(r.Notify) == 0 {
		return n == NotifyFailure || n == NotifyDelay
	}
	for _, v := range r.Notify {
		if strings.EqualFold(v, n) {
			return true
		}
	}
	return false
}

// Envelope is what the SMTP transaction said about a message, plus trace data for the audit log.
type Envelope struct {
	// ID is assigned by Enqueue.
	ID string `json:"id"`
	// From is the reverse path; empty for the null sender (DSNs), which never gets notices.
	From string `json:"from"`
	// Ret is the RET parameter (FULL or HDRS), EnvID the ENVID parameter (RFC 3461 §4.3, §4.4).
	Ret   string `json:"ret,omitempty"`
	EnvID string `json:"envid,omitempty"`
	// Received is when the message was accepted (set by Enqueue from the clock when zero).
	Received time.Time `json:"received"`
	// Source, PeerDN and PeerAddr describe who handed the message over (for the audit log).
	Source   string `json:"source,omitempty"`
	PeerDN   string `json:"peer_dn,omitempty"`
	PeerAddr string `json:"peer_addr,omitempty"`
	// RedeliveryKey, when set, identifies the message as its sender hands it over, so that
	// the same message handed over again is committed once per recipient (see Commit and
	// ErrRedelivered). The relay server sets it from the peer's certificate DN, the reverse
	// path, the Message-ID and a digest of the content.
	RedeliveryKey string `json:"redelivery_key,omitempty"`
	// Size is the size of the stored message in bytes (set by Enqueue).
	Size  int64        `json:"size"`
	Rcpts []*Recipient `json:"rcpts"`
}

// clone returns a deep copy, so that callers never share state with the queue.
func (e *Envelope) clone() *Envelope {
	c := *e
	c.Rcpts = make([]*Recipient, len(e.Rcpts))
	for i, r := range e.Rcpts {
		rc := *r
		rc.Notify = append([]string(nil), r.Notify...)
		c.Rcpts[i] = &rc
	}
	return &c
}

// done reports whether every recipient is final and no notice waits.
func (e *Envelope) done() bool {
	for _, r := range e.Rcpts {
		if r.State == Pending || r.Notice != "" {
			return false
		}
	}
	return true
}

// Schedule is the retry policy. The zero value means the defaults shown on each field.
type Schedule struct {
	// First is the wait after the first temporary failure (default 1 minute).
	First time.Duration
	// Factor multiplies the wait after each further failure (default 2).
	Factor float64
	// Max caps the wait between two attempts (default 1 hour).
	Max time.Duration
	// Jitter is the random spread, as a fraction of the wait (default 0.2: ±20 %; -1 for none).
	Jitter float64
	// GiveUp is how long after reception a recipient still pending fails (default 5 days,
	// RFC 5321 §4.5.4.1 "at least 4-5 days").
	GiveUp time.Duration
	// DelayNotice is how long after reception a DELAY notice is raised (default 4 hours).
	DelayNotice time.Duration
	// SuspendAfter is how many attempts in a row may fail to reach a destination (a
	// recipient domain: Result.Unreachable) before it is suspended (default 3; negative:
	// never). Once a destination has failed, it gets one attempt at a time; suspended, its
	// recipients are deferred without an attempt until a probe, made after Backoff(1), then
	// Backoff(2)… of further failures, reaches it.
	SuspendAfter int
}

func (s Schedule) withDefaults() Schedule {
	if s.First <= 0 {
		s.First = time.Minute
	}
	if s.Factor < 1 {
		s.Factor = 2
	}
	if s.Max <= 0 {
		s.Max = time.Hour
	}
	if s.Jitter == 0 {
		s.Jitter = 0.2
	} else if s.Jitter < 0 {
		s.Jitter = 0
	}
	if s.GiveUp <= 0 {
		s.GiveUp = 5 * 24 * time.Hour
	}
	if s.DelayNotice <= 0 {
		s.DelayNotice = 4 * time.Hour
	}
	if s.SuspendAfter == 0 {
		s.SuspendAfter = 3
	}
	return s
}

// Backoff returns the wait before the attempt that follows failure number attempts (1-based),
// before jitter.
func (s Schedule) Backoff(attempts int) time.Duration {
	s = s.withDefaults()
	d := float64(s.First) * math.Pow(s.Factor, float64(max(attempts-1, 0)))
	if d > float64(s.Max) || math.IsInf(d, 0) {
		return s.Max
	}
	return time.Duration(d)
}

// Options configure Open. A zero field takes the documented default.
type Options struct {
	// Dir is the spool directory (required); it is created with mode 0700 if missing.
	Dir string
	// Schedule is the retry policy.
	Schedule Schedule
	// MaxMessageBytes bounds a stored message (default 0: no limit other than the SMTP server's).
	MaxMessageBytes int64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand returns a number in [0,1) for the jitter (default math/rand/v2).
	Rand func() float64
	// RedeliveryWindow is how long the recipients of an envelope with a RedeliveryKey are
	// remembered after its reception (default 120 h: senders retry for 4-5 days, RFC 5321
	// §4.5.4.1); a negative value turns redelivery detection off.
	RedeliveryWindow time.Duration
	// RedeliveryMax bounds the recipients remembered (default 100000); past it, the oldest
	// are forgotten first.
	RedeliveryMax int
	// NoSync skips fsync: for benchmarks of the rest of the path only, never in production.
	NoSync bool
	// Logger receives queue events (nil: discard). Records hold IDs and addresses, never content.
	Logger *slog.Logger
	// Exclusive opens the spool only if no other Queue has it open (in this process or
	// another), and keeps others out until Close: for an administrator acting on the files of
	// a stopped node (see [Admin]). Open then fails at once with ErrInUse. A Queue opened
	// without it shares the spool with other such Queues (a configuration check beside a
	// running node) but waits up to 10 seconds for an exclusive holder to finish.
	Exclusive bool
}

// Queue is a durable spool of messages with per-recipient delivery state. It is safe for
// concurrent use.
type Queue struct {
	dir    string
	opts   Options
	sched  Schedule
	logger *slog.Logger

	mu       sync.Mutex
	msgs     map[string]*Envelope
	inflight map[string]bool
	held     map[string]bool     // messages on hold: never handed to Run (marker in hold/)
	table    *timetable          // the messages Run may take, by due time
	rearm    map[string][]string // in flight, to make due at once for these domains when released
	writers  int                 // Writers not yet committed or aborted
	pending  int                 // recipients still pending, over q.msgs (see put)
	opens    int64               // the size of queue.lock after this Queue's Open (see index.go)
	closed   bool
	kick     chan struct{}
	lock     *os.File    // the flock on queue.lock, released by Close
	redeliv  *redelivery // guarded by mu
	fileMu   sync.Mutex  // the redelivery file
	dests    *destinations
	unloaded map[string]bool // listed in data/ by Open, not read yet (see loader.go)
	loadStop chan struct{}   // closed to stop the loader
	loadDone chan struct{}   // closed when the loader has ended
	keyless  map[string]bool // unloaded messages whose redelivery keys the file does not hold
	keysRead chan struct{}   // closed when the redelivery file is read (see readKeys)
	keysErr  error           // why it could not be read
	keysDone chan struct{}   // closed once it is read and keyless is empty
	indexed  bool            // the messages were taken from a complete index
	appended bool            // this Queue appended to the redelivery file (guarded by fileMu)
	bg       sync.WaitGroup  // the read of the redelivery file
	stopOnce sync.Once

	// Folder and file fsyncs shared by concurrent callers.
	dataSync, envSync, holdSync, keySync groupSync
}

// Open opens (or creates) the spool in opts.Dir and loads every committed message, so that
// delivery resumes where it stopped: it returns once it has listed them, and reads them, and
// the redelivery keys, in the background (Stats.Loading, Stats.RedeliveryLoading).
func Open(opts *Options) (*Queue, error) {
	if opts == nil || opts.Dir == "" {
		return nil, errors.New("queue: Options.Dir is required")
	}
	q := &Queue{dir: opts.Dir, opts: *opts, sched: opts.Schedule.withDefaults(),
		msgs: map[string]*Envelope{}, inflight: map[string]bool{}, held: map[string]bool{}, kick: make(chan struct{}, 1),
		redeliv: newRedelivery(opts), table: newTimetable(), rearm: map[string][]string{},
		unloaded: map[string]bool{}, loadStop: make(chan struct{}), loadDone: make(chan struct{}),
		keyless: map[string]bool{}, keysRead: make(chan struct{}), keysDone: make(chan struct{})}
	q.dests = newDestinations(q.sched)
	if q.opts.Now == nil {
		q.opts.Now = time.Now
	}
	if q.opts.Rand == nil {
		q.opts.Rand = mrand.Float64
	}
	q.logger = opts.Logger
	if q.logger == nil {
		q.logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"tmp", "data", "env", "hold", "ctl"} {
		if err := os.MkdirAll(filepath.Join(q.dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
	}
	if err := q.takeLock(); err != nil {
		return nil, err
	}
	index, err := q.load()
	if err != nil {
		q.lock.Close()
		return nil, err
	}
	keys, err := q.openKeys()
	if err != nil {
		if index != nil {
			index.Close()
		}
		q.lock.Close()
		return nil, err
	}
	q.startLoader()
	q.startKeys(index, keys)
	return q, nil
}

// takeLock flocks queue.lock: shared for an owner, exclusive for an administrator, so that an
// administrator never rewrites files whose state a running owner keeps in memory.
func (q *Queue) takeLock() error {
	f, err := os.OpenFile(filepath.Join(q.dir, lockName), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = statelock.Flock(f, q.opts.Exclusive)
		if err == nil {
			q.lock = f
			return nil
		}
		if !errors.Is(err, statelock.ErrLocked) {
			f.Close()
			return fmt.Errorf("queue: lock %s: %w", q.dir, err)
		}
		if q.opts.Exclusive || time.Now().After(deadline) {
			f.Close()
			return fmt.Errorf("%w: %s", ErrInUse, q.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load lists the messages of the spool for the loader, and opens the index, if a clean stop
// left one, for the background to take them from (see startKeys).
func (q *Queue) load() (*os.File, error) {
	// Files in tmp/ are state updates that were never renamed into place.
	tmp, _ := os.ReadDir(filepath.Join(q.dir, "tmp"))
	for _, f := range tmp {
		os.Remove(filepath.Join(q.dir, "tmp", f.Name()))
	}
	if err := q.noteOpen(); err != nil {
		return nil, err
	}
	index, err := q.openIndex()
	if err != nil {
		return nil, err
	}
	// The data files are the truth of what is queued: a message the index does not know
	// (every message, without an index) is read from its files by the loader.
	datas, err := os.ReadDir(filepath.Join(q.dir, "data"))
	if err != nil {
		if index != nil {
			index.Close()
		}
		return nil, fmt.Errorf("queue: %w", err)
	}
	for _, f := range datas {
		q.unloaded[f.Name()] = true
	}
	// A request that a previous owner took but did not answer: its requester has given up.
	ctl, _ := os.ReadDir(filepath.Join(q.dir, "ctl"))
	for _, f := range ctl {
		if strings.HasSuffix(f.Name(), ".work") {
			os.Remove(filepath.Join(q.dir, "ctl", f.Name()))
		}
	}
	holds, _ := os.ReadDir(filepath.Join(q.dir, "hold"))
	for _, f := range holds {
		if q.unloaded[f.Name()] {
			q.held[f.Name()] = true
		} else {
			os.Remove(filepath.Join(q.dir, "hold", f.Name()))
		}
	}
	return index, nil
}

// readState returns the state file of message id with Size set to size; nil when it has none
// or an unreadable one, which is moved aside.
func (q *Queue) readState(id string, size int64) (*Envelope, error) {
	name := id + ".json"
	b, err := os.ReadFile(filepath.Join(q.dir, "env", name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil || e.ID != id {
		// Written atomically, so a bad one was tampered with: keep it aside for an
		// operator and fall back to the state committed with the message.
		q.logger.Error("queue: unreadable envelope state moved aside", "file", name)
		os.Rename(filepath.Join(q.dir, "env", name), filepath.Join(q.dir, "env", name+".bad"))
		return nil, nil
	}
	e.Size = size
	return &e, nil
}

// The trailer after the message in a data file: the envelope JSON, "\n", the message length
// and the JSON length as 16 hex digits each, and trailerMagic.
const (
	trailerMagic = "MSSQ1\n"
	trailerTail  = 16 + 16 + len(trailerMagic)
)

func writeTrailer(w io.Writer, e *Envelope, msgLen int64) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n%016x%016x%s", b, msgLen, len(b), trailerMagic)
	return err
}

// readTrailer returns the envelope committed with a data file, with Size set.
func readTrailer(path string) (*Envelope, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < int64(trailerTail) {
		return nil, errors.New("queue: no trailer")
	}
	tail := make([]byte, trailerTail)
	if _, err := f.ReadAt(tail, size-int64(trailerTail)); err != nil {
		return nil, err
	}
	if string(tail[32:]) != trailerMagic {
		return nil, errors.New("queue: no trailer")
	}
	var msgLen, jsonLen int64
	if _, err := fmt.Sscanf(string(tail[:32]), "%016x%016x", &msgLen, &jsonLen); err != nil {
		return nil, errors.New("queue: bad trailer")
	}
	if msgLen < 0 || jsonLen <= 0 || jsonLen > 1<<24 || msgLen+jsonLen+1+int64(trailerTail) != size {
		return nil, errors.New("queue: bad trailer")
	}
	b := make([]byte, jsonLen)
	if _, err := f.ReadAt(b, msgLen); err != nil {
		return nil, err
	}
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("queue: bad trailer: %w", err)
	}
	e.Size = msgLen
	return &e, nil
}

func validID(id string) bool {
	if len(id) < 8 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

func (q *Queue) dataPath(id string) string { return filepath.Join(q.dir, "data", id) }
func (q *Queue) envPath(id string) string  { return filepath.Join(q.dir, "env", id+".json") }

// newID returns a unique, sortable message ID: time in hex, then random bytes.
func (q *Queue) newID() string { return newMessageID(q.opts.Now()) }

func newMessageID(now time.Time) string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%013x-%s", now.UnixMicro(), hex.EncodeToString(b[:]))
}

// Enqueue stores body and env durably and returns the message ID. When it returns nil, the
// message, its envelope and the directory entries of both are on stable storage. env is
// copied; its recipients start Pending and due now.
func (q *Queue) Enqueue(ctx context.Context, env *Envelope, body io.Reader) (string, error) {
	if len(env.Rcpts) == 0 {
		return "", ErrNoRecipients
	}
	w, err := q.Begin()
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(w, ctxReader{ctx, body}); err != nil {
		w.Abort()
		return "", err
	}
	return w.Commit(ctx, env)
}

// Writer is a message being received: written with Write, read back with Open (for a content
// scanner), then made durable with Commit or dropped with Abort. A Writer is not safe for
// concurrent use.
type Writer struct {
	q    *Queue
	id   string
	tmp  string
	f    *os.File
	n    int64
	err  error
	done bool

	reserved    []rkey
	redelivered []Redelivered
}

// Begin starts a message. Its ID is known now (for a Received header) and kept by Commit.
func (q *Queue) Begin() (*Writer, error) {
	q.mu.Lock()
	closed := q.closed
	if !closed {
		q.writers++
	}
	q.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	id := q.newID()
	tmp := q.dataPath(id) // committed only once Commit appends the trailer
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		q.mu.Lock()
		q.writers--
		q.mu.Unlock()
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &Writer{q: q, id: id, tmp: tmp, f: f}, nil
}

// ID returns the ID the message will have.
func (w *Writer) ID() string { return w.id }

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Write appends p to the message; it fails with ErrTooLarge past Options.MaxMessageBytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if max := w.q.opts.MaxMessageBytes; max > 0 && w.n+int64(len(p)) > max {
		w.err = ErrTooLarge
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("queue: store message: %w", err)
	}
	return n, w.err
}

// Open returns a reader of what was written so far, independent of the writer.
func (w *Writer) Open() (io.ReadCloser, error) {
	f, err := os.Open(w.tmp)
	if err != nil {
		return nil, err
	}
	return &section{io.NewSectionReader(f, 0, w.n), f}, nil
}

type section struct {
	*io.SectionReader
	f *os.File
}

func (s *section) Close() error { return s.f.Close() }

// Abort drops the message. It is a no-op after Commit.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.tmp)
	w.q.mu.Lock()
	w.q.writers--
	w.q.mu.Unlock()
}

// Commit makes the message durable with envelope env (copied; its recipients start Pending
// and due now) and returns its ID. When it returns nil the message, its envelope and the
// directory entries of both are on stable storage: the caller may answer 250.
//
// When env has a RedeliveryKey, the recipients already committed with that key within the
// window are left out (Redelivered lists them); if none is left, nothing is stored and
// Commit returns ErrRedelivered, after which the caller may answer 250 too: the message is
// on stable storage from the first time.
func (w *Writer) Commit(ctx context.Context, env *Envelope) (string, error) {
	q := w.q
	if w.done {
		return "", errors.New("queue: Commit after Abort or Commit")
	}
	if len(env.Rcpts) == 0 {
		w.Abort()
		return "", ErrNoRecipients
	}
	if w.err != nil {
		w.Abort()
		return "", w.err
	}
	if err := ctx.Err(); err != nil {
		w.Abort()
		return "", err
	}
	e := env.clone()
	e.ID = w.id
	now := q.opts.Now()
	if e.Received.IsZero() {
		e.Received = now
	}
	for _, r := range e.Rcpts {
		r.State, r.Attempts, r.NextAttempt, r.Notice = Pending, 0, now, ""
	}
	if e.RedeliveryKey != "" && q.redeliv.on() {
		// The same message may be one of those still being loaded after a restart, with keys
		// the redelivery file does not hold.
		if err := q.waitKeys(ctx); err != nil {
			w.Abort()
			return "", err
		}
		q.mu.Lock()
		dup, keep, err := q.reserve(w, e, now)
		q.mu.Unlock()
		w.redelivered = dup
		if err == nil && len(keep) == 0 {
			err = ErrRedelivered
		}
		if err != nil {
			w.Abort()
			return "", err
		}
		e.Rcpts = keep
	}
	e.Size = w.n
	// The trailer commits the message: one fsync of the file, one of the directory (whose
	// entry for the file dates from Begin).
	err := writeTrailer(w.f, e, w.n)
	if err == nil {
		err = q.sync(w.f)
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.done = true
	if err == nil {
		err = q.syncDir("data")
	}
	if err != nil {
		os.Remove(w.tmp)
		q.mu.Lock()
		q.settle(w, "", e.Received, now)
		q.writers--
		q.mu.Unlock()
		return "", fmt.Errorf("queue: store message: %w", err)
	}
	q.mu.Lock()
	q.settle(w, e.ID, e.Received, now)
	q.writers--
	if q.closed { // the files are committed: they will be delivered after the next Open
		q.mu.Unlock()
		return e.ID, nil
	}
	q.put(e)
	q.schedule(e.ID)
	q.mu.Unlock()
	q.noteCommit(e)
	q.logger.Info("queue: queued", "id", e.ID, "source", e.Source, "rcpts", len(e.Rcpts), "size", e.Size)
	q.wake()
	return e.ID, nil
}

// Redelivered returns the recipients Commit left out because they were committed before with
// the same RedeliveryKey, with the ID of the message that holds each.
func (w *Writer) Redelivered() []Redelivered { return w.redelivered }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (q *Queue) sync(f *os.File) error {
	if q.opts.NoSync {
		return nil
	}
	return f.Sync()
}

// syncDir fsyncs a folder of the spool. Concurrent callers share one fsync that started after
// they called, so that a burst of commits or removals pays for a few, each still covered.
func (q *Queue) syncDir(name string) error {
	if q.opts.NoSync {
		return nil
	}
	g := map[string]*groupSync{"data": &q.dataSync, "env": &q.envSync, "hold": &q.holdSync}[name]
	do := func() error {
		d, err := os.Open(filepath.Join(q.dir, name))
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	if g == nil {
		return do()
	}
	return g.run(do)
}

// groupSync runs an fsync for many callers: each caller returns once an fsync that started
// after its call has ended, and callers arriving while one runs share the next.
type groupSync struct {
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // fsyncs started
	ended   uint64 // the last one ended
	err     error  // its outcome
}

func (g *groupSync) run(fsync func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	need := g.started + 1
	for g.ended < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		g.mu.Unlock()
		err := fsync()
		g.mu.Lock()
		g.running, g.ended, g.err = false, n, err
		g.cond.Broadcast()
	}
	return g.err
}

// writeEnv replaces the state file atomically (write, fsync, rename, fsync directory).
func (q *Queue) writeEnv(e *Envelope) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	tmp := filepath.Join(q.dir, "tmp", e.ID+".json")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = q.sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, q.envPath(e.ID))
	}
	if err == nil {
		err = q.syncDir("env")
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("queue: store envelope: %w", err)
	}
	return nil
}

// removeFiles removes a finished message: its redelivery keys are stored first, then the data
// file (a state file or hold marker left alone by a crash is then removed by the next Open; the
// other order could resurrect the message).
func (q *Queue) removeFiles(e *Envelope) {
	q.remember(e)
	id := e.ID
	os.Remove(q.dataPath(id))
	q.syncDir("data")
	// Once the data file is gone for good, a state file or hold marker that a crash brings
	// back is removed by the next Open: their removal needs no fsync.
	os.Remove(q.envPath(id))
	os.Remove(filepath.Join(q.dir, "hold", id))
}

// OpenMessage opens the stored message id for reading.
func (q *Queue) OpenMessage(id string) (io.ReadCloser, error) {
	q.mu.Lock()
	e, ok, err := q.find(id)
	var size int64
	if ok {
		size = e.Size
	}
	q.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	f, err := os.Open(q.dataPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &section{io.NewSectionReader(f, 0, size), f}, nil
}

// Get returns a copy of the envelope of message id.
func (q *Queue) Get(id string) (*Envelope, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok, err := q.find(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	return e.clone(), nil
}

// IDs returns the IDs of the messages in the queue, oldest first, including those still being
// loaded (Stats.Loading), of which a data file left by a crash before its commit may turn
// out not to be a message.
func (q *Queue) IDs() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]string, 0, len(q.msgs)+len(q.unloaded))
	for id := range q.msgs {
		ids = append(ids, id)
	}
	for id := range q.unloaded {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Stats is a snapshot of the queue for metrics.
type Stats struct {
	Messages   int // messages in the spool, including those still being loaded
	Recipients int // recipients still pending, over the messages loaded
	InFlight   int // messages being delivered now
	Held       int // messages on hold (see Hold)
	Suspended  int // destinations suspended now (see Schedule.SuspendAfter)
	// Loading is how many messages Open listed are still to be read, from the index a clean
	// stop left or from their files (after a crash): they are delivered once read.
	Loading int
	// RedeliveryLoading is true while the redelivery keys are being read after Open (from
	// the redelivery file, then from the files of the messages it lacks): meanwhile a Commit
	// with a RedeliveryKey waits, and nothing else does.
	RedeliveryLoading bool
}

// Stats returns the current queue depth.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Messages: len(q.msgs) + len(q.unloaded), Recipients: q.pending, InFlight: len(q.inflight),
		Held: len(q.held), Suspended: q.dests.count(q.opts.Now()), Loading: len(q.unloaded),
		RedeliveryLoading: q.redeliv.on() && !q.redeliv.loaded && q.keysErr == nil ||
			len(q.keyless) > 0 && !isClosed(q.loadDone)}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// put stores e as the state of its message, keeping the count of pending recipients; q.mu is
// held.
func (q *Queue) put(e *Envelope) {
	if old, ok := q.msgs[e.ID]; ok {
		q.pending -= old.pendingCount()
	}
	q.msgs[e.ID] = e
	q.pending += e.pendingCount()
}

// drop removes message id, keeping the count of pending recipients; q.mu is held.
func (q *Queue) drop(id string) {
	if old, ok := q.msgs[id]; ok {
		q.pending -= old.pendingCount()
		delete(q.msgs, id)
	}
}

func (e *Envelope) pendingCount() int {
	n := 0
	for _, r := range e.Rcpts {
		if r.State == Pending {
			n++
		}
	}
	return n
}

// Close stops the queue: Run returns and later Enqueue calls fail. Committed messages stay on
// disk and are resumed by the next Open.
func (q *Queue) Close() error {
	q.mu.Lock()
	first := !q.closed
	q.closed = true
	q.mu.Unlock()
	q.stopLoader() // before the index, which then holds the messages read
	q.mu.Lock()
	compact := first && q.overgrown(1)
	q.mu.Unlock()
	if compact {
		// So that the next Open reads the keys alone, not their history.
		if err := q.rewriteRedelivery(); err != nil {
			q.logger.Error("queue: redelivery keys not rewritten", "err", err)
		}
	}
	q.mu.Lock()
	if first {
		q.writeIndex()
	}
	if q.lock != nil {
		q.lock.Close()
		q.lock = nil
	}
	q.mu.Unlock()
	q.wake()
	return nil
}

func (q *Queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// schedule places message id in the timetable when Run may take it, and takes it out
// otherwise; q.mu is held.
func (q *Queue) schedule(id string) {
	e, ok := q.msgs[id]
	if !ok || q.held[id] || q.inflight[id] {
		q.table.remove(id)
		return
	}
	if at, ok := e.dueAt(); ok {
		q.table.set(id, at)
	} else {
		q.table.remove(id)
	}
}

// due returns up to limit messages with a recipient due at now (or a notice waiting), oldest
// due first, marking them in flight, and the time of the next due one among the others.
func (q *Queue) due(now time.Time, limit int) ([]*Envelope, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*Envelope
	for len(out) < limit {
		id, ok := q.table.pop(now)
		if !ok {
			break
		}
		if q.inflight[id] || q.held[id] {
			continue
		}
		q.inflight[id] = true
		out = append(out, q.msgs[id].clone())
	}
	return out, q.table.next()
}
