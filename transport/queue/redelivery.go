package queue

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Redelivery detection. SMTP hands a message over at least once, not exactly once: a sender
// that loses our 250 (a crash before it records it, a connection cut after the final dot)
// sends the message again, as it must (RFC 5321 §6.1, §4.5.4.1). An envelope with a
// RedeliveryKey is committed once per recipient within the window: a later Commit with the
// same key leaves out the recipients already committed, so the sender gets its 250 and stops,
// and the recipient gets one copy.
//
// The keys are committed with the message (in its trailer, the same fsync as the 250) and,
// when the message leaves the spool, appended to the file "redelivery" of the spool (fsynced
// before the message's files are removed): they survive a crash at any point. Open reads both;
// the file is rewritten with the keys still in the window once it holds twice the count.
//
// So that a restart need not read every message before it can tell a redelivery, each commit
// also appends the message's keys to that file, then a line "commit ID N" (N: the keys of ID
// before it), once the trailer is fsynced and without an fsync of its own. A process crash
// keeps the append (it is in the page cache); a system crash may lose it, or tear it. Open
// counts a message's keys as known only when its commit line and N distinct key lines are
// there; a line can only be there for a committed message, as it is written after the
// trailer's fsync. The messages left unknown are read by the loader before a Commit with a
// RedeliveryKey goes on.

// Redelivery errors.
var (
	// ErrRedelivered is returned by Commit when every recipient of the envelope was already
	// committed with the same RedeliveryKey within the window: nothing is stored, and
	// Writer.Redelivered names the messages that hold them.
	ErrRedelivered = errors.New("queue: message already committed for every recipient")
	// ErrRedeliveryInProgress is returned by Commit when another Commit with the same key
	// and a common recipient has not finished: the caller answers with a temporary failure,
	// and the sender's next attempt finds the outcome.
	ErrRedeliveryInProgress = errors.New("queue: the same message is being committed")
)

// Redelivery defaults (see Options).
const (
	DefaultRedeliveryWindow = 120 * time.Hour
	DefaultRedeliveryMax    = 100000
)

const redeliveryFile = "redelivery"

// Redelivered is a recipient that Commit left out: the message ID that holds it already.
type Redelivered struct {
	Addr string
	ID   string
}

type rkey [sha256.Size]byte

type seenEntry struct {
	id string
	at time.Time
}

type seenItem struct {
	k  rkey
	at time.Time
}

// redelivery is the queue's index of committed keys, oldest first in order.
type redelivery struct {
	window  time.Duration // <= 0: off
	max     int
	seen    map[rkey]seenEntry
	order   []seenItem // insertion order; stale items (replaced or evicted) are skipped
	pending map[rkey]string
	logged  int // lines in the file since it was last rewritten
}

func newRedelivery(o *Options) *redelivery {
	r := &redelivery{window: o.RedeliveryWindow, max: o.RedeliveryMax,
		seen: map[rkey]seenEntry{}, pending: map[rkey]string{}}
	if r.window == 0 {
		r.window = DefaultRedeliveryWindow
	}
	if r.max <= 0 {
		r.max = DefaultRedeliveryMax
	}
	return r
}

func (r *redelivery) on() bool { return r.window > 0 }

// keyOf is the key of one recipient of a message: the envelope's key and the address, whose
// domain is case-insensitive and whose local part the connector treats so (RFC 5321 §2.4).
func keyOf(envKey, addr string) rkey {
	return sha256.Sum256([]byte(envKey + "\x00" + strings.ToLower(addr)))
}

// add records k for message id received at at, evicting what falls out of the window or
// past the count; q.mu is held.
func (r *redelivery) add(k rkey, id string, at time.Time, now time.Time) {
	if old, ok := r.seen[k]; ok && !at.After(old.at) {
		return
	}
	r.seen[k] = seenEntry{id, at}
	r.order = append(r.order, seenItem{k, at})
	r.evict(now)
}

func (r *redelivery) evict(now time.Time) {
	i := 0
	for ; i < len(r.order); i++ {
		it := r.order[i]
		e, ok := r.seen[it.k]
		if ok && !e.at.Equal(it.at) {
			continue // replaced by a later item
		}
		if ok && len(r.seen) <= r.max && now.Sub(e.at) <= r.window {
			break
		}
		delete(r.seen, it.k)
	}
	r.order = r.order[i:]
	if cap(r.order) > 2*len(r.order)+1024 {
		r.order = append([]seenItem(nil), r.order...)
	}
}

// lookup returns the message holding k, if k is in the window at now; q.mu is held.
func (r *redelivery) lookup(k rkey, now time.Time) (string, bool) {
	e, ok := r.seen[k]
	if !ok || now.Sub(e.at) > r.window {
		return "", false
	}
	return e.id, true
}

// reserve checks env's recipients before its message is committed: it returns the recipients
// already committed and reserves the keys of the others; q.mu is held.
func (q *Queue) reserve(w *Writer, e *Envelope, now time.Time) ([]Redelivered, []*Recipient, error) {
	r := q.redeliv
	var dup []Redelivered
	var keep []*Recipient
	var keys []rkey
	for _, rc := range e.Rcpts {
		k := keyOf(e.RedeliveryKey, rc.Addr)
		if id, ok := r.lookup(k, now); ok {
			dup = append(dup, Redelivered{Addr: rc.Addr, ID: id})
			continue
		}
		if _, busy := r.pending[k]; busy {
			return nil, nil, ErrRedeliveryInProgress
		}
		keep = append(keep, rc)
		keys = append(keys, k)
	}
	for _, k := range keys {
		r.pending[k] = w.id
	}
	w.reserved = keys
	return dup, keep, nil
}

// settle ends a reservation: the keys become committed for message id at at, or are dropped
// when id is ""; q.mu is held.
func (q *Queue) settle(w *Writer, id string, at, now time.Time) {
	r := q.redeliv
	for _, k := range w.reserved {
		delete(r.pending, k)
		if id != "" {
			r.add(k, id, at, now)
		}
	}
	w.reserved = nil
}

// remember appends the keys of e, a message leaving the spool, to the redelivery file and
// fsyncs it, so that they outlive its files.
func (q *Queue) remember(e *Envelope) {
	r := q.redeliv
	if !r.on() || e.RedeliveryKey == "" {
		return
	}
	var b strings.Builder
	for _, rc := range e.Rcpts {
		k := keyOf(e.RedeliveryKey, rc.Addr)
		fmt.Fprintf(&b, "%s %d %s\n", hex.EncodeToString(k[:]), e.Received.UnixNano(), e.ID)
	}
	path := filepath.Join(q.dir, redeliveryFile)
	q.fileMu.Lock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.WriteString(b.String())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	q.fileMu.Unlock()
	if err == nil && !q.opts.NoSync {
		// One fsync for the keys of every message finishing meanwhile. A rewrite that
		// replaced the file since holds these keys too: it writes the whole index.
		err = q.keySync.run(func() error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Sync()
		})
	}
	if err != nil {
		// The message is delivered; only a redelivery of it after a restart would not be
		// recognised. Logged, not fatal.
		q.logger.Error("queue: redelivery key not stored", "id", e.ID, "err", err)
		return
	}
	q.mu.Lock()
	r.logged += len(e.Rcpts)
	rewrite := r.logged > 2*r.max
	q.mu.Unlock()
	if rewrite {
		if err := q.rewriteRedelivery(); err != nil {
			q.logger.Error("queue: redelivery keys not rewritten", "err", err)
		}
	}
}

// noteCommit appends the keys of e, just committed, and its commit line to the redelivery
// file, without an fsync (see above). A failure is logged: a restart then reads the message
// before it can tell a redelivery.
func (q *Queue) noteCommit(e *Envelope) {
	r := q.redeliv
	if !r.on() {
		return
	}
	var b strings.Builder
	n := 0
	if e.RedeliveryKey != "" {
		for _, rc := range e.Rcpts {
			k := keyOf(e.RedeliveryKey, rc.Addr)
			fmt.Fprintf(&b, "%s %d %s\n", hex.EncodeToString(k[:]), e.Received.UnixNano(), e.ID)
			n++
		}
	}
	fmt.Fprintf(&b, "%s %s %d\n", commitMark, e.ID, n)
	q.fileMu.Lock()
	f, err := os.OpenFile(filepath.Join(q.dir, redeliveryFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.WriteString(b.String())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	q.fileMu.Unlock()
	if err != nil {
		q.logger.Error("queue: redelivery keys not noted", "id", e.ID, "err", err)
		return
	}
	q.mu.Lock()
	r.logged += n + 1
	q.mu.Unlock()
}

// commitMark starts the line that closes the keys of a committed message.
const commitMark = "commit"

// loadRedelivery reads the redelivery file and the keys of the messages in the spool, then
// rewrites the file with the keys still in the window; it runs in Open, after load.
func (q *Queue) loadRedelivery() error {
	r := q.redeliv
	if !r.on() {
		return nil
	}
	now := q.opts.Now()
	type line struct {
		k  rkey
		at time.Time
		id string
	}
	type idKey struct {
		id string
		k  rkey
	}
	var lines []line
	marks := map[string]int{}  // commit lines: ID → keys
	keys := map[idKey]bool{}   // distinct key lines
	counts := map[string]int{} // ID → distinct key lines
	path := filepath.Join(q.dir, redeliveryFile)
	data, err := os.ReadFile(path)
	exists, read := err == nil, 0
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			read++
			// A line torn by a crash, or altered, is skipped: it can only make a redelivery
			// be stored once more, or a restart read a message first, never a message be lost.
			fs := strings.Fields(sc.Text())
			if len(fs) == 3 && fs[0] == commitMark && validID(fs[1]) {
				if n, err := strconv.Atoi(fs[2]); err == nil && n >= 0 {
					marks[fs[1]] = n
				}
				continue
			}
			if len(fs) != 3 || !validID(fs[2]) {
				continue
			}
			b, err := hex.DecodeString(fs[0])
			ns, err2 := strconv.ParseInt(fs[1], 10, 64)
			if err != nil || err2 != nil || len(b) != len(rkey{}) {
				continue
			}
			lines = append(lines, line{rkey(b), time.Unix(0, ns), fs[2]})
			if ik := (idKey{fs[2], rkey(b)}); !keys[ik] {
				keys[ik] = true
				counts[fs[2]]++
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("queue: %w", err)
	}
	for _, e := range q.msgs {
		if e.RedeliveryKey == "" {
			continue
		}
		for _, rc := range e.Rcpts {
			lines = append(lines, line{keyOf(e.RedeliveryKey, rc.Addr), e.Received, e.ID})
		}
	}
	// Oldest first, so that the count keeps the newest.
	sort.SliceStable(lines, func(a, b int) bool { return lines[a].at.Before(lines[b].at) })
	for _, l := range lines {
		r.add(l.k, l.id, l.at, now)
	}
	for id := range q.unloaded {
		if n, ok := marks[id]; !ok || counts[id] < n {
			q.keyless[id] = true
		}
	}
	if len(q.keyless) == 0 {
		close(q.keysDone)
	}
	if !exists {
		return nil // the keys of the spool are in its messages; the file comes with the first one gone
	}
	// Rewritten (an fsync, and the whole file written) only once it holds more than twice
	// the count, as remember does, so that a restart does not pay for it every time.
	r.logged = read
	if read > 2*r.max {
		return q.rewriteRedelivery()
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		// A line torn by a crash: ended, so that it does not swallow the next one appended.
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		_, err = f.WriteString("\n")
		if err == nil {
			err = q.sync(f)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("queue: store redelivery keys: %w", err)
		}
	}
	return nil
}

// rewriteRedelivery replaces the redelivery file with the keys in the index (write to tmp/,
// fsync, rename, fsync the spool folder), dropping those past the window or the count.
func (q *Queue) rewriteRedelivery() error {
	q.fileMu.Lock()
	defer q.fileMu.Unlock()
	var b strings.Builder
	q.mu.Lock()
	r := q.redeliv
	r.evict(q.opts.Now())
	counts := map[string]int{}
	for _, it := range r.order {
		if e, ok := r.seen[it.k]; ok && e.at.Equal(it.at) {
			fmt.Fprintf(&b, "%s %d %s\n", hex.EncodeToString(it.k[:]), e.at.UnixNano(), e.id)
			counts[e.id]++
		}
	}
	// The commit lines of the spool's messages whose keys are known, so that a crash after
	// this rewrite still finds them (a key evicted meanwhile is one the window drops anyway).
	for id := range q.msgs {
		fmt.Fprintf(&b, "%s %s %d\n", commitMark, id, counts[id])
	}
	for id := range q.unloaded {
		if !q.keyless[id] {
			fmt.Fprintf(&b, "%s %s %d\n", commitMark, id, counts[id])
		}
	}
	r.logged = 0
	q.mu.Unlock()
	tmp := filepath.Join(q.dir, "tmp", redeliveryFile)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	_, err = f.WriteString(b.String())
	if err == nil {
		err = q.sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.dir, redeliveryFile))
	}
	if err == nil {
		err = q.syncDir(".")
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("queue: store redelivery keys: %w", err)
	}
	return nil
}
