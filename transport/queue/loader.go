package queue

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Loading in the background. Open lists data/ and opens the index when a clean stop left one
// (one file, some 17 MB and half a second of JSON for 50,000 messages), and returns; the
// messages are taken from the index, then the redelivery file is read (redelivery.go), then
// those the index did not know (all of them after a crash) are read from their files — the
// trailer of data/ID and env/ID.json, two cold reads each, some 15 s for 50,000 messages — by a
// few goroutines, oldest first, as Postfix's queue manager scans its deferred queue gradually. Meanwhile the queue accepts messages and
// delivers those it has read; Stats.Loading counts the others. A call that names one of them
// (Get, OpenMessage, Hold, Release, Retry, Delete) reads it at once.
//
// Durability is unchanged: the files are written as before, and a message not yet read is
// neither delivered nor changed. What the files of a message not yet read could change is
// redelivery detection. Its keys are also in the redelivery file, appended once the message
// is committed (see noteCommit), so a Commit with a RedeliveryKey waits only for that file to be
// read (in the background too: see redelivery.go) and for the messages whose keys it lacks:
// none after a process crash, those whose append the page cache lost after a system crash.

// loadWorkers is how many messages are read at once: the reads are cold, and a disk answers
// several faster than one after the other.
const loadWorkers = 8

// beforeLoad, when set (by tests), is called before the loader reads a message; stop is closed
// when the queue closes.
var beforeLoad func(id string, stop <-chan struct{})

// startLoader reads the messages of q.unloaded in the background, then (after a crash, without
// an index) removes the state files of finished messages. Close stops it.
func (q *Queue) startLoader() {
	go func() {
		defer close(q.loadDone)
		// The messages the index did not hold, once the redelivery file is read (see
		// startKeys), which says whose redelivery keys it lacks: those first (a Commit with a
		// RedeliveryKey waits for them), then oldest first (IDs start with their time).
		select {
		case <-q.keysRead:
		case <-q.loadStop:
			return
		}
		q.mu.Lock()
		keyless, sweep := maps.Clone(q.keyless), !q.indexed
		ids := slices.Collect(maps.Keys(q.unloaded))
		q.mu.Unlock()
		slices.SortFunc(ids, func(a, b string) int {
			if ka, kb := keyless[a], keyless[b]; ka != kb {
				if ka {
					return -1
				}
				return 1
			}
			return strings.Compare(a, b)
		})
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(loadWorkers, len(ids)) {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= len(ids) || q.loadStopped() {
						return
					}
					if beforeLoad != nil {
						beforeLoad(ids[i], q.loadStop)
					}
					q.loadOne(ids[i])
				}
			})
		}
		wg.Wait()
		if sweep && !q.loadStopped() {
			q.sweepStates()
		}
	}()
}

func (q *Queue) loadStopped() bool { return isClosed(q.loadStop) }

// stopLoader stops the loader and the read of the redelivery file, and waits for them, so that
// no file changes after Close.
func (q *Queue) stopLoader() {
	q.stopOnce.Do(func() { close(q.loadStop) })
	<-q.loadDone
	q.bg.Wait()
}

// waitLoaded waits until every message listed by Open is read (or the loader is stopped).
func (q *Queue) waitLoaded(ctx context.Context) error {
	select {
	case <-q.loadDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loadOne reads message id, unless a call read it first.
func (q *Queue) loadOne(id string) {
	q.mu.Lock()
	todo := q.unloaded[id]
	q.mu.Unlock()
	if !todo {
		return
	}
	e, err := q.readFiles(id)
	if err != nil {
		// Left unread (and undelivered) until the next Open: guessing could deliver twice.
		q.logger.Error("queue: message not readable, left for the next start", "id", id, "err", err)
		return
	}
	q.mu.Lock()
	if !q.unloaded[id] {
		q.mu.Unlock()
		return
	}
	done := q.admit(id, e)
	q.mu.Unlock()
	if done != nil {
		q.removeFiles(done)
	}
	q.wake()
}

// find returns message id, reading it now if it is still to be loaded; q.mu is held (the read
// of one message's files is short, like the fsync of Hold).
func (q *Queue) find(id string) (*Envelope, bool, error) {
	if e, ok := q.msgs[id]; ok {
		return e, true, nil
	}
	if !q.unloaded[id] {
		return nil, false, nil
	}
	e, err := q.readFiles(id)
	if err != nil {
		return nil, false, err
	}
	if done := q.admit(id, e); done != nil {
		// Its recipients were all final: removed as Open would have, without q.mu (the
		// redelivery keys take it).
		q.mu.Unlock()
		q.removeFiles(done)
		q.mu.Lock()
		return nil, false, nil
	}
	e, ok := q.msgs[id]
	return e, ok, nil
}

// admit takes message id as read from its files (nil: not committed) into the queue; q.mu is
// held. It returns the envelope when every recipient is final, for the caller to remove its
// files without q.mu.
func (q *Queue) admit(id string, e *Envelope) *Envelope {
	delete(q.unloaded, id)
	if q.keyless[id] {
		delete(q.keyless, id)
		if len(q.keyless) == 0 {
			close(q.keysDone)
		}
	}
	if e == nil {
		// No trailer: the crash came before Commit, so before 250; the sender retries.
		os.Remove(q.dataPath(id))
		if q.held[id] {
			delete(q.held, id)
			os.Remove(filepath.Join(q.dir, "hold", id))
		}
		return nil
	}
	// The keys of a finished message too: the redelivery file may lack them (see above).
	if r := q.redeliv; r.on() && e.RedeliveryKey != "" {
		now := q.opts.Now()
		for _, rc := range e.Rcpts {
			r.add(keyOf(e.RedeliveryKey, rc.Addr), id, e.Received, now)
		}
	}
	if e.done() {
		delete(q.held, id)
		return e
	}
	q.put(e)
	q.schedule(id)
	return nil
}

// readFiles returns message id as its files hold it: the state file if it has a readable one,
// else the envelope committed with the message; nil when the message is not committed.
func (q *Queue) readFiles(id string) (*Envelope, error) {
	e, err := readTrailer(q.dataPath(id))
	var pe *fs.PathError
	if errors.As(err, &pe) && !errors.Is(err, os.ErrNotExist) {
		return nil, err // an I/O error says nothing of the trailer
	}
	if err != nil || e.ID != id || !validID(id) {
		return nil, nil
	}
	s, err := q.readState(id, e.Size)
	if err != nil || s == nil {
		return e, err
	}
	return s, nil
}

// sweepStates removes the state files of messages that finished while their state file's
// removal was lost in a crash (a message's data file goes first).
func (q *Queue) sweepStates() {
	envs, err := os.ReadDir(filepath.Join(q.dir, "env"))
	if err != nil {
		return
	}
	for _, f := range envs {
		id, ok := strings.CutSuffix(f.Name(), ".json")
		if q.loadStopped() {
			return
		}
		if !ok {
			continue
		}
		q.mu.Lock()
		_, known := q.msgs[id]
		known = known || q.unloaded[id]
		q.mu.Unlock()
		if known {
			continue
		}
		if _, err := os.Stat(q.dataPath(id)); errors.Is(err, os.ErrNotExist) {
			os.Remove(filepath.Join(q.dir, "env", f.Name()))
		}
	}
}
