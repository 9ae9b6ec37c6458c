package queue

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Errors of the administration of a spool.
var (
	// ErrInUse is returned by an exclusive Open when another Queue has the spool open.
	ErrInUse = errors.New("queue: spool in use by another queue")
	// ErrInFlight is returned by Retry and Delete while the message is being delivered: the
	// attempt in progress cannot be taken back; ask again once it has ended.
	ErrInFlight = errors.New("queue: message is being delivered now")
	// ErrNoAnswer is returned by Admin when the spool is held by a queue that did not take
	// the request in time (a process that opened it without running Run, or a stuck one).
	ErrNoAnswer = errors.New("queue: the process holding the spool did not answer")
)

// lockName is the file flocked by every open Queue: shared by owners, exclusive by an
// administrator acting on the files directly.
const lockName = "queue.lock"

// Op is an administrative operation on one queued message.
type Op string

// Administrative operations, those of Postfix's postsuper (-h, -H, -r, -d) in spirit.
const (
	// OpHold keeps the message in the queue without delivering it (nor raising its notices)
	// until OpRelease. An attempt already in progress ends normally.
	OpHold Op = "hold"
	// OpRelease delivers a held message again, on its schedule.
	OpRelease Op = "release"
	// OpRetry makes every pending recipient (and every notice waiting) due now. A held
	// message stays held.
	OpRetry Op = "retry"
	// OpDelete removes the message without a delivery notice, like postsuper -d: the
	// recipients not yet delivered never receive it and the sender is not told.
	OpDelete Op = "delete"
)

// Apply runs op on message id. It is safe while Run delivers.
func (q *Queue) Apply(op Op, id string) error {
	switch op {
	case OpHold:
		return q.Hold(id)
	case OpRelease:
		return q.Release(id)
	case OpRetry:
		return q.Retry(id)
	case OpDelete:
		return q.Delete(id)
	}
	return fmt.Errorf("queue: unknown operation %q", op)
}

// Hold stops the delivery of message id until Release. The hold is stored (a marker file in
// hold/) before Hold returns, so it survives a restart.
func (q *Queue) Hold(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok, err := q.find(id); err != nil || !ok {
		return cmp.Or(err, ErrNotFound)
	}
	if q.held[id] {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(q.dir, "hold", id), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("queue: hold: %w", err)
	}
	f.Close()
	if err := q.syncDir("hold"); err != nil {
		return fmt.Errorf("queue: hold: %w", err)
	}
	q.held[id] = true
	q.table.remove(id)
	return nil
}

// Release ends the hold of message id; its recipients are then attempted on their schedule
// (at once when their next attempt is past).
func (q *Queue) Release(id string) error {
	q.mu.Lock()
	if _, ok, err := q.find(id); err != nil || !ok {
		q.mu.Unlock()
		return cmp.Or(err, ErrNotFound)
	}
	if err := os.Remove(filepath.Join(q.dir, "hold", id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.mu.Unlock()
		return fmt.Errorf("queue: release: %w", err)
	}
	q.syncDir("hold")
	delete(q.held, id)
	q.schedule(id)
	q.mu.Unlock()
	q.wake()
	return nil
}

// Retry makes the pending recipients and the waiting notices of message id due now.
func (q *Queue) Retry(id string) error {
	q.mu.Lock()
	e, err := q.idle(id)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	// In flight while the state is written, so that Run neither picks it up nor commits
	// an older copy over it.
	q.inflight[id] = true
	q.table.remove(id)
	c := e.clone()
	q.mu.Unlock()
	now := q.opts.Now()
	for _, r := range c.Rcpts {
		if r.State == Pending {
			r.NextAttempt = now
		}
		if r.Notice != "" {
			r.NoticeRetry = time.Time{}
		}
	}
	err = q.writeEnv(c)
	q.mu.Lock()
	if err == nil {
		q.put(c)
	}
	delete(q.inflight, id)
	q.schedule(id)
	q.mu.Unlock()
	q.wake()
	return err
}

// idle returns message id when it is queued and no attempt is in progress (q.mu held).
func (q *Queue) idle(id string) (*Envelope, error) {
	e, ok, err := q.find(id)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, ErrNotFound
	case q.inflight[id]:
		return nil, ErrInFlight
	}
	return e, nil
}

// Delete removes message id from the queue without any notice.
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	e, err := q.idle(id)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.drop(id)
	delete(q.held, id)
	q.table.remove(id)
	q.mu.Unlock()
	// Its redelivery keys are kept: the same peer handing the message over again is answered
	// 250 and dropped, as the administrator asked.
	q.removeFiles(e)
	q.syncDir("hold")
	q.logger.Info("queue: deleted by an administrator", "id", id)
	return nil
}

// Held reports whether message id is on hold.
func (q *Queue) Held(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.held[id]
}

// Message is a queued message as an administrator sees it: its envelope and recipient states,
// and whether it is on hold.
type Message struct {
	Envelope
	Held bool `json:"held"`
	// Node is the node attempting the message now, in a queue that several nodes share
	// (OpenPostgres); empty otherwise.
	Node string `json:"node,omitempty"`
}

// Inspect lists the messages of the spool in dir, oldest first, from its files alone: it
// takes no lock and changes nothing, so it is safe beside a running owner. The listing is a
// snapshot; a message committed or finished meanwhile may be missing or still shown.
func Inspect(dir string) ([]*Message, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "data"))
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	var out []*Message
	for _, f := range ents {
		if m, err := inspect(dir, f.Name()); err == nil {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// InspectMessage returns message id of the spool in dir, like Inspect; ErrNotFound when the
// spool holds no such committed message.
func InspectMessage(dir, id string) (*Message, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	m, err := inspect(dir, id)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	return m, err
}

func inspect(dir, id string) (*Message, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	e, err := readTrailer(filepath.Join(dir, "data", id))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, err // being written, or debris: not a committed message
	}
	if e.ID != id {
		return nil, ErrNotFound
	}
	if b, err := os.ReadFile(filepath.Join(dir, "env", id+".json")); err == nil {
		var s Envelope
		if json.Unmarshal(b, &s) == nil && s.ID == id {
			s.Size = e.Size
			e = &s
		}
	}
	if e.done() {
		return nil, ErrNotFound // finished, its files about to go
	}
	m := &Message{Envelope: *e}
	if _, err := os.Stat(filepath.Join(dir, "hold", id)); err == nil {
		m.Held = true
	}
	return m, nil
}

// HeaderField is one header field of a stored message, unfolded.
type HeaderField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// maxHeaderBytes bounds what ReadHeader reads of a message.
const maxHeaderBytes = 256 << 10

// ReadHeader returns the header fields of message id in the spool in dir, in order, read from
// the file without a lock. It stops at the end of the header (or after 256 KiB): it never
// reads the body. The fields may carry health data (Subject, file names): callers choose what
// to show.
func ReadHeader(dir, id string) ([]HeaderField, error) {
	m, err := InspectMessage(dir, id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, "data", id))
	if err != nil {
		return nil, ErrNotFound
	}
	defer f.Close()
	return parseHeader(io.LimitReader(f, min(m.Size, maxHeaderBytes))), nil
}

// parseHeader reads the header fields at the start of r, unfolded, up to the blank line that
// ends the header or the end of r, control characters turned into spaces.
func parseHeader(r io.Reader) []HeaderField {
	br := bufio.NewReader(r)
	var out []HeaderField
	for {
		line, err := br.ReadString('\n')
		l := []byte(strings.TrimRight(line, "\r\n"))
		if len(l) == 0 {
			break // end of the header, or of what may be read
		}
		// A control character (a bare CR, an escape sequence) would act on the terminal of
		// the administrator reading it: a space instead.
		for i, c := range l {
			if c < 0x20 || c == 0x7f {
				l[i] = ' '
			}
		}
		if l[0] == ' ' && len(out) > 0 {
			out[len(out)-1].Value += " " + strings.TrimSpace(string(l))
		} else if name, value, ok := strings.Cut(string(l), ":"); ok {
			out = append(out, HeaderField{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
		}
		if err != nil {
			break
		}
	}
	return out
}

// Admin runs op on message id of the spool in dir, safely whether or not a process holds the
// spool. When no Queue has it open, Admin opens it exclusively (keeping an owner from
// starting meanwhile) and applies op to the files. Otherwise it hands op to the owner through
// a request file in ctl/ and waits, until ctx ends, for the owner's Run to apply it and
// answer: an administrator never rewrites a file whose state a running owner keeps in memory.
// The returned owner flag says which way it went.
func Admin(ctx context.Context, dir string, op Op, id string) (owner bool, err error) {
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		return false, fmt.Errorf("queue: %s is not a spool: %w", dir, err)
	}
	if !validID(id) {
		return false, ErrNotFound
	}
	q, err := Open(&Options{Dir: dir, Exclusive: true})
	if err == nil {
		defer q.Close()
		return false, q.Apply(op, id)
	}
	if !errors.Is(err, ErrInUse) {
		return false, err
	}
	return true, request(ctx, dir, op, id)
}

type controlRequest struct {
	Op Op     `json:"op"`
	ID string `json:"id"`
}

type controlAnswer struct {
	Code  string `json:"code,omitempty"` // empty: done
	Error string `json:"error,omitempty"`
}

var controlCodes = map[string]error{"not_found": ErrNotFound, "in_flight": ErrInFlight, "closed": ErrClosed}

// request writes a request for the owner of the spool and waits for its answer.
func request(ctx context.Context, dir string, op Op, id string) error {
	var rb [8]byte
	rand.Read(rb[:])
	base := filepath.Join(dir, "ctl", hex.EncodeToString(rb[:]))
	b, _ := json.Marshal(controlRequest{Op: op, ID: id})
	// Readable by the owner's account when an administrator (root) writes it: it names an
	// operation and a queue ID, no more, in a folder only that account may enter.
	if err := os.WriteFile(base+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("queue: request: %w", err)
	}
	if err := os.Rename(base+".tmp", base+".req"); err != nil {
		os.Remove(base + ".tmp")
		return fmt.Errorf("queue: request: %w", err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var late <-chan time.Time
	for {
		if b, err := os.ReadFile(base + ".res"); err == nil {
			os.Remove(base + ".res")
			var a controlAnswer
			if err := json.Unmarshal(b, &a); err != nil {
				return fmt.Errorf("queue: bad answer: %w", err)
			}
			if a.Code == "" {
				return nil
			}
			if e, ok := controlCodes[a.Code]; ok {
				return e
			}
			return errors.New(a.Error)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			// Withdrawn before the owner took it: certainly not applied.
			if os.Remove(base+".req") == nil {
				return ErrNoAnswer
			}
			late = time.After(5 * time.Second)
			ctx = context.Background() // whose Done never fires: wait for late
		case <-late:
			return fmt.Errorf("%w (it took the request, which may have been applied)", ErrNoAnswer)
		}
	}
}

// serveControl applies the requests waiting in ctl/; Run calls it between rounds.
func (q *Queue) serveControl() {
	dir := filepath.Join(q.dir, "ctl")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, f := range ents {
		name := f.Name()
		base, ok := strings.CutSuffix(name, ".req")
		if !ok {
			// An answer nobody read (its requester was killed): not worth keeping long.
			if info, err := f.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
				os.Remove(filepath.Join(dir, name))
			}
			continue
		}
		// Taking the request by renaming it tells a requester that gives up whether it was
		// taken: it may remove the .req only while nobody took it.
		work := filepath.Join(dir, base+".work")
		if os.Rename(filepath.Join(dir, name), work) != nil {
			continue
		}
		b, err := os.ReadFile(work)
		var r controlRequest
		var a controlAnswer
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err == nil {
			err = q.Apply(r.Op, r.ID)
		}
		if err != nil {
			a.Code, a.Error = "error", err.Error()
			for code, e := range controlCodes {
				if errors.Is(err, e) {
					a.Code = code
				}
			}
		}
		q.logger.Info("queue: administrative request", "op", r.Op, "id", r.ID, "outcome", cmp.Or(a.Code, "done"))
		ab, _ := json.Marshal(a)
		tmp := filepath.Join(dir, base+".rtmp")
		if os.WriteFile(tmp, ab, 0o644) == nil {
			os.Rename(tmp, filepath.Join(dir, base+".res"))
		}
		os.Remove(work)
	}
}
