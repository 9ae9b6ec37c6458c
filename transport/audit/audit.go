// Package audit is the audit log of the MSSanté reference connector: one JSON record per event
// of the mail path (received, queued, delivered, deferred, bounced, rejected, purged) with
// identifiers, envelope, peer certificate DN, TLS version, outcome and reason, never subject,
// body or patient data. These are the functional traces that Ségur REM SC.MSS/CONF.17-18 asks
// of MSSanté software (author, time, action, request and outcome; never the content), kept for
// the operator's side of the mail path, and the administrators' actions on the queue.
//
// Files are JSON lines (one [Record] per line, RFC 8259), written with one write call each,
// rotated by size and by day, and removed after the retention. Addresses in the redacted
// domains (patient.mssante.fr, whose local part is the patient's INS) are pseudonymised with
// a keyed HMAC-SHA256 (RFC 2104), so that records correlate without revealing the INS.
//
// Start with [Open]; transport/connector writes the records of the SMTP servers and of
// delivery, transport/node those of the retention purge.
package audit

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Event is the kind of an audit record.
type Event string

// Audit events.
const (
	EventReceived  Event = "received"  // DATA started: a peer is handing a message over
	EventQueued    Event = "queued"    // stored durably, 250 sent
	EventDelivered Event = "delivered" // one recipient delivered (locally or to the next operator)
	EventDeferred  Event = "deferred"  // one recipient failed temporarily, will be retried
	EventBounced   Event = "bounced"   // one recipient failed for good
	EventRejected  Event = "rejected"  // refused during the SMTP session (reply in Code)
	EventPurged    Event = "purged"    // messages of a BAL deleted by its retention (count in Reason, bytes in Size)
)

// EventAuthFailed is a password login that failed or was refused before being checked
// (listener in Source, the connection's failures in Attempts, the outcome in Reason).
const EventAuthFailed Event = "auth_failed"

// EventLogin is a BAL opened with a Pro Santé Connect token (IMAP or submission): who opened
// which BAL, never what they read.
const EventLogin Event = "login"

// Administrative actions on the queue (mssante queue): the queue ID in MsgID, the OS account
// that asked in Actor, and in Reason "done" or why not (not_found, in_flight, no_answer,
// error).
const (
	EventQueueHeld     Event = "queue_held"
	EventQueueReleased Event = "queue_released"
	EventQueueRetried  Event = "queue_retried"
	EventQueueDeleted  Event = "queue_deleted" // removed without a DSN
)

// EventRedelivered is a message handed over again by the same peer for recipients that have
// it already (SMTP delivers at least once, RFC 5321 §6.1): 250 sent, nothing stored; MsgID is
// the message that holds it.
const EventRedelivered Event = "redelivered"

// Record is one audit record. It holds identifiers, never content: no subject, no body, no
// header other than the envelope; addresses in the redacted domains (patient addresses carry
// the INS) are pseudonymised.
type Record struct {
	Time      time.Time `json:"time"`
	Event     Event     `json:"event"`
	Source    string    `json:"source,omitempty"` // relay, submission, delivery
	MsgID     string    `json:"msg_id,omitempty"`
	From      string    `json:"from,omitempty"`
	Rcpts     []string  `json:"rcpts,omitempty"`
	BAL       string    `json:"bal,omitempty"` // authenticated BAL (submission)
	PeerAddr  string    `json:"peer_addr,omitempty"`
	PeerDN    string    `json:"peer_dn,omitempty"`
	TLS       string    `json:"tls,omitempty"`
	Size      int64     `json:"size,omitempty"`
	Attempts  int       `json:"attempts,omitempty"`
	RemoteMTA string    `json:"remote_mta,omitempty"`
	Code      string    `json:"code,omitempty"`   // reply code and enhanced code, e.g. "550 5.7.1"
	Reason    string    `json:"reason,omitempty"` // machine-readable detail
	Actor     string    `json:"actor,omitempty"`  // the OS account behind an administrative action
	// Person is the national id of the practitioner who acted with a Pro Santé Connect token
	// (a member opening an ORG BAL names the BAL in BAL and themselves here).
	Person string `json:"person,omitempty"`
	Mech   string `json:"mech,omitempty"` // the SASL mechanism of a login
	// Node is the connector node that acted (Options.Node): with several nodes behind one
	// load balancer, it says which one received, delivered or refused.
	Node string `json:"node,omitempty"`
}

// Options configure Open.
type Options struct {
	// Dir holds audit.jsonl and its rotated files audit-YYYYMMDDTHHMMSS.jsonl (required).
	Dir string
	// MaxBytes rotates the file when it would grow past this size (default 100 MiB).
	MaxBytes int64
	// Retention removes rotated files older than this (default 183 days: the 6 months the
	// ANS recommends for the functional traces of Ségur REM SC.MSS/CONF.17-18). The ANS texts
	// set no duration for an operator; this one is configurable.
	Retention time.Duration
	// RedactDomains are domains whose local parts are pseudonymised (default
	// patient.mssante.fr, whose local part is the patient's INS).
	RedactDomains []string
	// RedactKey keys the pseudonyms (HMAC-SHA256), so that they correlate across records but
	// cannot be reversed by enumerating INS values (default: random per process).
	RedactKey []byte
	// Node names this node in every record (default: the host name, os.Hostname).
	Node string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Log is an append-only JSON-lines audit log with rotation and retention, safe for concurrent
// use. Records are written with one write call each; the file is fsynced on rotation and Close.
// A nil *Log is valid and records nothing.
type Log struct {
	opts   Options
	redact map[string]bool
	mu     sync.Mutex
	f      *os.File
	size   int64
	day    string
}

// Open opens (appending) the audit log in opts.Dir.
func Open(opts *Options) (*Log, error) {
	if opts == nil || opts.Dir == "" {
		return nil, errors.New("audit: Options.Dir is required")
	}
	a := &Log{opts: *opts, redact: map[string]bool{}}
	if a.opts.MaxBytes <= 0 {
		a.opts.MaxBytes = 100 << 20
	}
	if a.opts.Retention <= 0 {
		a.opts.Retention = 183 * 24 * time.Hour
	}
	if a.opts.RedactDomains == nil {
		a.opts.RedactDomains = []string{"patient.mssante.fr"}
	}
	for _, d := range a.opts.RedactDomains {
		a.redact[strings.ToLower(d)] = true
	}
	if len(a.opts.RedactKey) == 0 {
		a.opts.RedactKey = make([]byte, 32)
		rand.Read(a.opts.RedactKey)
	}
	if a.opts.Now == nil {
		a.opts.Now = time.Now
	}
	if a.opts.Node == "" {
		a.opts.Node, _ = os.Hostname()
	}
	if err := os.MkdirAll(a.opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := a.open(); err != nil {
		return nil, err
	}
	a.prune()
	return a, nil
}

func (a *Log) path() string { return filepath.Join(a.opts.Dir, "audit.jsonl") }

func (a *Log) open() error {
	f, err := os.OpenFile(a.path(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	a.f, a.size, a.day = f, st.Size(), st.ModTime().UTC().Format("20060102")
	if a.size == 0 {
		a.day = a.opts.Now().UTC().Format("20060102")
	}
	return nil
}

// Pseudonym returns the form addr takes in the audit log.
func (a *Log) Pseudonym(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || !a.redact[strings.ToLower(addr[i+1:])] {
		return addr
	}
	m := hmac.New(sha256.New, a.opts.RedactKey)
	m.Write([]byte(strings.ToLower(addr[:i])))
	return "h-" + hex.EncodeToString(m.Sum(nil)[:8]) + addr[i:]
}

// Log writes r (its Time set from the clock when zero, its Node from Options.Node). Errors are not returned: an audit
// failure must not stop mail, it is reported by Err.
func (a *Log) Log(r *Record) {
	if a == nil {
		return
	}
	rec := *r
	if rec.Time.IsZero() {
		rec.Time = a.opts.Now().UTC()
	}
	rec.Node = a.opts.Node
	rec.From = a.Pseudonym(rec.From)
	rec.BAL = a.Pseudonym(rec.BAL)
	if len(rec.Rcpts) > 0 {
		rs := make([]string, len(rec.Rcpts))
		for i, x := range rec.Rcpts {
			rs[i] = a.Pseudonym(x)
		}
		rec.Rcpts = rs
	}
	b, err := json.Marshal(&rec)
	if err != nil {
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return
	}
	day := rec.Time.UTC().Format("20060102")
	if a.size > 0 && (a.size+int64(len(b)) > a.opts.MaxBytes || day != a.day) {
		a.rotate()
	}
	if n, err := a.f.Write(b); err == nil {
		a.size += int64(n)
	}
}

// rotate renames the current file with its time and starts a new one; a.mu is held.
func (a *Log) rotate() {
	a.f.Sync()
	a.f.Close()
	ts := a.opts.Now().UTC()
	name := filepath.Join(a.opts.Dir, "audit-"+ts.Format("20060102T150405.000000000")+".jsonl")
	for _, err := os.Stat(name); err == nil; _, err = os.Stat(name) { // never overwrite a record
		ts = ts.Add(time.Nanosecond)
		name = filepath.Join(a.opts.Dir, "audit-"+ts.Format("20060102T150405.000000000")+".jsonl")
	}
	os.Rename(a.path(), name)
	if err := a.open(); err != nil {
		a.f = nil
		return
	}
	go a.prune()
}

// prune removes rotated files older than the retention.
func (a *Log) prune() {
	ents, _ := os.ReadDir(a.opts.Dir)
	cut := a.opts.Now().Add(-a.opts.Retention)
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "audit-") && strings.HasSuffix(e.Name(), ".jsonl") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		ts := strings.TrimSuffix(strings.TrimPrefix(n, "audit-"), ".jsonl")
		t, err := time.Parse("20060102T150405.000000000", ts)
		if err == nil && t.Before(cut) {
			os.Remove(filepath.Join(a.opts.Dir, n))
		}
	}
}

// Close flushes and closes the log.
func (a *Log) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	a.f.Sync()
	err := a.f.Close()
	a.f = nil
	return err
}
