package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
// before the message's files are removed): they survive a crash at any point. The file is
// rewritten with the keys still in the window (and the commit lines of the messages in the
// spool) once it holds twice as many lines as that, and at Close once it holds more, so that
// it stays bounded by what it must hold: write to tmp/, fsync, rename, fsync the folder.
//
// Open does not read the file: it opens it and notes its size, and a goroutine reads that much
// (some 8 MB with 50,000 keyed messages queued) with the keys of the messages of the index,
// while the queue accepts and delivers. Only a Commit with a RedeliveryKey waits for it
// (Stats.RedeliveryLoading); the lines appended meanwhile are of keys already in memory.
//
// So that a restart need not read every message before it can tell a redelivery, each commit
// also appends the message's keys to that file, then a line "commit ID N" (N: the keys of ID
// before it), once the trailer is fsynced and without an fsync of its own. A process crash
// keeps the append (it is in the page cache); a system crash may lose it, or tear it. Open
// counts a message's keys as known only when its commit line and N distinct key lines are
// there; a line can only be there for a committed message, as it is written after the
// trailer's fsync. The messages left unknown are read by the loader first, and a Commit with a
// RedeliveryKey waits for them too.

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
	logged  int  // lines in the file
	loaded  bool // the file was read since Open (see readKeys)
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
	err := q.appendKeys(b.String())
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
	rewrite := q.overgrown(2)
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
	err := q.appendKeys(b.String())
	if err != nil {
		q.logger.Error("queue: redelivery keys not noted", "id", e.ID, "err", err)
		return
	}
	q.mu.Lock()
	r.logged += n + 1
	q.mu.Unlock()
}

// appendKeys appends lines to the redelivery file, without an fsync.
func (q *Queue) appendKeys(lines string) error {
	q.fileMu.Lock()
	defer q.fileMu.Unlock()
	if !q.appended {
		lines = lineBreak + lines
	}
	f, err := os.OpenFile(filepath.Join(q.dir, redeliveryFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(lines)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	q.appended = q.appended || err == nil
	return err
}

// commitMark starts the line that closes the keys of a committed message.
const commitMark = "commit"

// lineBreak starts the first append of a Queue to the redelivery file. A line torn by a crash
// at the end of the file gets a field that no line has (an ID or a count "-"), so that it is
// skipped, not read as a whole line; after a whole line it is a line of its own, skipped too.
const lineBreak = " -\n"

// compactMin is how many lines the redelivery file may hold beyond what a rewrite would write
// before it is rewritten (see overgrown).
const compactMin = 1024

// keysFile is the redelivery file as Open found it, for the background read: the lines
// appended later are in memory already.
type keysFile struct {
	f    *os.File // nil: no file
	size int64
	// track: messages are still to be read from their files; the commit lines say which have
	// their keys here.
	track bool
}

// openKeys opens the redelivery file for readKeys; it runs in Open, after load, and reads no
// more than the file's size. An unreadable file fails Open.
func (q *Queue) openKeys() (*keysFile, error) {
	kf := &keysFile{}
	if !q.redeliv.on() {
		return kf, nil
	}
	f, err := os.Open(filepath.Join(q.dir, redeliveryFile))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
		q.appended = true // no line to end: the file comes with the first append
	} else if err == nil {
		st, serr := f.Stat()
		switch {
		case serr != nil:
			err = serr
		case !st.Mode().IsRegular():
			err = errors.New("not a regular file")
		}
		kf.f, kf.size = f, st.Size()
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("queue: redelivery file: %w", err)
	}
	return kf, nil
}

// startKeys takes the messages of the index (if index is not nil) into the queue, then reads
// the redelivery keys, in the background. Until they are in, a Commit with a RedeliveryKey
// waits (waitKeys), and the loader, which then reads the messages left from their files;
// nothing else does. Then the file is rewritten if it has grown past what it holds.
func (q *Queue) startKeys(index *os.File, kf *keysFile) {
	q.bg.Go(func() {
		indexed := index != nil && q.admitIndex(index)
		var err error
		q.mu.Lock()
		q.indexed = indexed
		kf.track = len(q.unloaded) > 0
		on := q.redeliv.on()
		if !on {
			q.redeliv.loaded = true
			close(q.keysDone)
		}
		q.mu.Unlock()
		if on {
			err = q.readKeys(kf)
		} else if kf.f != nil {
			kf.f.Close()
		}
		if err != nil {
			q.logger.Error("queue: redelivery keys unreadable; commits with a redelivery key fail", "err", err)
			q.mu.Lock()
			q.keysErr = err
			q.mu.Unlock()
		}
		close(q.keysRead)
		if !on || err != nil || q.loadStopped() {
			return
		}
		q.mu.Lock()
		rewrite := q.overgrown(2)
		q.mu.Unlock()
		if rewrite {
			if err := q.rewriteRedelivery(); err != nil {
				q.logger.Error("queue: redelivery keys not rewritten", "err", err)
			}
		}
	})
}

// waitKeys waits until the redelivery keys of every message in the spool are known: read from
// the redelivery file, and from their own files for those the file lacks (or until those left
// are known to be unreadable).
func (q *Queue) waitKeys(ctx context.Context) error {
	select {
	case <-q.keysRead:
	case <-ctx.Done():
		return ctx.Err()
	}
	q.mu.Lock()
	err, loaded := q.keysErr, q.redeliv.loaded
	q.mu.Unlock()
	switch {
	case err != nil:
		return err
	case !loaded:
		return ErrClosed // Close stopped the read
	}
	select {
	case <-q.keysDone:
	case <-q.loadDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// beforeKeys, when set (by tests), is called before the redelivery file is read; stop is closed
// when the queue closes.
var beforeKeys func(stop <-chan struct{})

// readKeys reads the redelivery file, adds its keys to the index (beside those of the messages
// taken meanwhile) and,
// after a crash, marks for the loader the messages whose keys the file lacks.
func (q *Queue) readKeys(kf *keysFile) error {
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
	read := 0
	if beforeKeys != nil {
		beforeKeys(q.loadStop)
	}
	if kf.f != nil {
		defer kf.f.Close()
		lines = make([]line, 0, min(kf.size/120, 1<<20))
		br := bufio.NewReaderSize(io.NewSectionReader(kf.f, 0, kf.size), 64<<10)
		for {
			b, err := br.ReadSlice('\n')
			long := false
			for errors.Is(err, bufio.ErrBufferFull) {
				long = true
				b, err = br.ReadSlice('\n')
			}
			if errors.Is(err, io.EOF) {
				break // a last line without its end: torn by a crash
			}
			if err != nil {
				return fmt.Errorf("queue: redelivery file: %w", err)
			}
			if read++; read%65536 == 0 && q.loadStopped() {
				return nil
			}
			// A line torn by a crash, or altered, is skipped: it can only make a redelivery be
			// stored once more, or a restart read a message first, never a message be lost.
			f0, rest, _ := bytes.Cut(b[:len(b)-1], []byte{' '})
			f1, f2, _ := bytes.Cut(rest, []byte{' '})
			if long || bytes.IndexByte(f2, ' ') >= 0 {
				continue
			}
			if string(f0) == commitMark {
				if id := string(f1); kf.track && validID(id) {
					if n, err := strconv.Atoi(string(f2)); err == nil && n >= 0 {
						marks[id] = n
					}
				}
				continue
			}
			var k rkey
			ns, err := strconv.ParseInt(string(f1), 10, 64)
			if len(f0) != 2*len(k) || err != nil || !validID(string(f2)) {
				continue
			}
			if _, err := hex.Decode(k[:], f0); err != nil {
				continue
			}
			id := string(f2)
			lines = append(lines, line{k, time.Unix(0, ns), id})
			if ik := (idKey{id, k}); kf.track && !keys[ik] {
				keys[ik] = true
				counts[id]++
			}
		}
	}
	// Oldest first, so that the count keeps the newest.
	slices.SortStableFunc(lines, func(a, b line) int { return a.at.Compare(b.at) })
	fresh := newRedelivery(&q.opts)
	now := q.opts.Now()
	for _, l := range lines {
		fresh.add(l.k, l.id, l.at, now)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.loadStopped() {
		return nil
	}
	// The keys added meanwhile (messages the loader read) join those read.
	r := q.redeliv
	for _, it := range r.order {
		if e, ok := r.seen[it.k]; ok && e.at.Equal(it.at) {
			fresh.add(it.k, e.id, e.at, now)
		}
	}
	r.seen, r.order, r.logged, r.loaded = fresh.seen, fresh.order, r.logged+read, true
	for id := range q.unloaded {
		if n, ok := marks[id]; !ok || counts[id] < n {
			q.keyless[id] = true
		}
	}
	if len(q.keyless) == 0 {
		close(q.keysDone)
	}
	return nil
}

// overgrown reports whether the redelivery file holds more than factor times the lines a
// rewrite would write (and compactMin more); q.mu is held.
func (q *Queue) overgrown(factor int) bool {
	r := q.redeliv
	live := len(r.seen) + len(q.msgs) + len(q.unloaded)
	return r.loaded && r.logged > factor*live+compactMin
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
	if !r.loaded {
		q.mu.Unlock()
		return nil // the keys not read yet would be lost
	}
	counts := map[string]int{}
	lines := 0
	for _, it := range r.order {
		if e, ok := r.seen[it.k]; ok && e.at.Equal(it.at) {
			fmt.Fprintf(&b, "%s %d %s\n", hex.EncodeToString(it.k[:]), e.at.UnixNano(), e.id)
			counts[e.id]++
			lines++
		}
	}
	// The commit lines of the spool's messages whose keys are known, so that a crash after
	// this rewrite still finds them (a key evicted meanwhile is one the window drops anyway).
	for id := range q.msgs {
		fmt.Fprintf(&b, "%s %s %d\n", commitMark, id, counts[id])
		lines++
	}
	for id := range q.unloaded {
		if !q.keyless[id] {
			fmt.Fprintf(&b, "%s %s %d\n", commitMark, id, counts[id])
			lines++
		}
	}
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
	q.appended = true // the file ends with a whole line
	q.mu.Lock()
	r.logged = lines
	q.mu.Unlock()
	return nil
}
