package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mssante-go/sdk/internal/statelock"
)

// The index: a clean stop writes the state of every message to one file, so that the next
// Open reads one file instead of a data trailer and a state file per message (a cold restart
// with tens of thousands of messages queued is bound by those reads); it reads it after it
// has returned (see loader.go).
//
// The index is exact by construction. Close writes it only when this Queue saw every change
// made since the index was last removed: it holds the spool alone (the exclusive flock), no
// other Queue opened the spool since this one did (each Open appends one byte to queue.lock;
// the size is unchanged), and no message is being written or delivered. Open removes it
// (durably) before it changes anything, so that an index on disk is never older than the
// files. A crash therefore leaves no index, and every message is then read from its files
// (in the background: loader.go). Open still lists data/ and reads the files of any message
// the index does not know, so that a data file put back by hand is not lost; the index of a
// Queue closed while its loader still ran holds the messages it had read, which is exact too.
const indexName = "index"

// indexEnd ends a complete index: "end N\n" after N envelope lines.
const indexEnd = "end "

// noteOpen appends one byte to queue.lock and remembers the size, which a later Open by any
// Queue changes.
func (q *Queue) noteOpen() error {
	if _, err := q.lock.Write([]byte{'.'}); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	st, err := q.lock.Stat()
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	q.opens = st.Size()
	return nil
}

// openIndex opens the index if there is one, and removes it: its messages are taken from the
// open file in the background (admitIndex).
func (q *Queue) openIndex() (*os.File, error) {
	path := filepath.Join(q.dir, indexName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	// Removed before anything changes, and for good: a later change would make it stale.
	if err := os.Remove(path); err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	if err := q.syncDir("."); err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: %w", err)
	}
	return f, nil
}

// admitIndex takes the messages of the index f that Open listed into the queue, and closes f;
// it reports whether the index was complete (else the loader reads every message from its
// files).
func (q *Queue) admitIndex(f *os.File) bool {
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		q.logger.Error("queue: index unreadable; messages read from their files", "err", err)
		return false
	}
	msgs, ok := parseIndex(b)
	if !ok {
		q.logger.Error("queue: incomplete index ignored")
		return false
	}
	// Oldest first (IDs start with their time), so that the count of redelivery keys keeps
	// the newest.
	ids := slices.Sorted(maps.Keys(msgs))
	var done []*Envelope
	q.mu.Lock()
	for n, id := range ids {
		if n%1024 == 1023 { // let commits and deliveries in
			q.mu.Unlock()
			if q.loadStopped() {
				return true
			}
			q.mu.Lock()
		}
		if e := msgs[id]; q.unloaded[id] {
			if d := q.admit(id, e); d != nil {
				done = append(done, d)
			}
		}
	}
	q.mu.Unlock()
	for _, e := range done {
		// Its recipients were all final but its files not yet removed.
		q.removeFiles(e)
	}
	q.wake()
	return true
}

func parseIndex(b []byte) (map[string]*Envelope, bool) {
	body, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok {
		return nil, false
	}
	i := bytes.LastIndexByte(body, '\n') + 1
	n, err := strconv.Atoi(strings.TrimPrefix(string(body[i:]), indexEnd))
	if !bytes.HasPrefix(body[i:], []byte(indexEnd)) || err != nil || n < 0 {
		return nil, false
	}
	msgs := make(map[string]*Envelope, n)
	for line := range bytes.Lines(body[:i]) {
		e := &Envelope{}
		if err := json.Unmarshal(line, e); err != nil || !validID(e.ID) || len(e.Rcpts) == 0 {
			return nil, false
		}
		msgs[e.ID] = e
	}
	if len(msgs) != n {
		return nil, false
	}
	return msgs, true
}

// writeIndex writes the index at Close when this Queue has seen every change (see above);
// q.mu is held and q.closed set.
func (q *Queue) writeIndex() {
	if q.lock == nil || len(q.inflight) > 0 || q.writers > 0 {
		return
	}
	if st, err := q.lock.Stat(); err != nil || st.Size() != q.opens {
		return
	}
	if !q.opts.Exclusive {
		if statelock.Flock(q.lock, true) != nil {
			return // another Queue has the spool open
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range q.msgs {
		if err := enc.Encode(e); err != nil {
			return
		}
	}
	fmt.Fprintf(&buf, "%s%d\n", indexEnd, len(q.msgs))
	tmp := filepath.Join(q.dir, "tmp", indexName)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = q.sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.dir, indexName))
	}
	if err == nil {
		err = q.syncDir(".")
	}
	if err != nil {
		os.Remove(tmp)
		q.logger.Warn("queue: index not written; the next start reads every message", "err", err)
		return
	}
	q.lock.Truncate(0)
}
