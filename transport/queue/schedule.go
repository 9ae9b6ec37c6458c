package queue

import (
	"container/heap"
	"strings"
	"sync"
	"time"
)

// What is due, apart from how messages are stored. The spool keeps envelopes in files; the
// timetable and the destination states below see only message IDs, times and recipient
// domains, so that a queue kept elsewhere (rows leased by several nodes) can share them.

// timetable orders the messages that Run may take (neither held nor in flight) by the time of
// their next due attempt or notice: a wake pops what is due, in O(log n) a message, where a
// scan of the whole queue would cost O(n) a wake and O(n²) a pass.
type timetable struct {
	h   slots
	pos map[string]*slot
}

type slot struct {
	id string
	at time.Time
	i  int
}

type slots []*slot

func (s slots) Len() int { return len(s) }
func (s slots) Less(a, b int) bool {
	if !s[a].at.Equal(s[b].at) {
		return s[a].at.Before(s[b].at)
	}
	return s[a].id < s[b].id // IDs start with their time: oldest first
}
func (s slots) Swap(a, b int) { s[a], s[b] = s[b], s[a]; s[a].i = a; s[b].i = b }
func (s *slots) Push(x any)   { it := x.(*slot); it.i = len(*s); *s = append(*s, it) }
func (s *slots) Pop() any {
	old := *s
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*s = old[:len(old)-1]
	return it
}

func newTimetable() *timetable { return &timetable{pos: map[string]*slot{}} }

// set places id at time at, or moves it there.
func (t *timetable) set(id string, at time.Time) {
	if s, ok := t.pos[id]; ok {
		s.at = at
		heap.Fix(&t.h, s.i)
		return
	}
	s := &slot{id: id, at: at}
	t.pos[id] = s
	heap.Push(&t.h, s)
}

func (t *timetable) remove(id string) {
	if s, ok := t.pos[id]; ok {
		heap.Remove(&t.h, s.i)
		delete(t.pos, id)
	}
}

// pop removes and returns the first message due at now.
func (t *timetable) pop(now time.Time) (string, bool) {
	if len(t.h) == 0 || t.h[0].at.After(now) {
		return "", false
	}
	s := heap.Pop(&t.h).(*slot)
	delete(t.pos, s.id)
	return s.id, true
}

// next is the time of the first message, zero when there is none.
func (t *timetable) next() time.Time {
	if len(t.h) == 0 {
		return time.Time{}
	}
	return t.h[0].at
}

// dueAt is when e next needs Run: its earliest pending attempt or waiting notice.
func (e *Envelope) dueAt() (time.Time, bool) {
	var at time.Time
	ok := false
	for _, r := range e.Rcpts {
		var t time.Time
		switch {
		case r.Notice != "":
			t = r.NoticeRetry
			if r.State == Pending && r.NextAttempt.Before(t) {
				t = r.NextAttempt
			}
		case r.State == Pending:
			t = r.NextAttempt
		default:
			continue
		}
		if !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	return at, ok
}

// Dead destinations. A destination (a recipient domain) that cannot be reached (no
// connection, no TLS session: Result.Unreachable) is given one attempt at a time; after
// Schedule.SuspendAfter such attempts in a row it is suspended: until its suspension ends,
// its recipients are deferred without an attempt ("delivery temporarily suspended"), then one
// message probes it. The first attempt that reaches it lifts the suspension and makes the
// messages it deferred due at once. This is Postfix's dead-destination handling (qmgr marks a
// destination dead after failed sessions and defers its mail until a later probe).
type destinations struct {
	mu    sync.Mutex
	after int
	wait  func(n int) time.Duration
	m     map[string]*destState
}

type destState struct {
	fails   int       // unreachable attempts in a row
	until   time.Time // suspended until then
	probing bool      // one attempt is in progress while fails > 0
	reason  string    // the last failure, for the deferral text
	parked  map[string]struct{}
}

func newDestinations(s Schedule) *destinations {
	return &destinations{after: s.SuspendAfter, m: map[string]*destState{},
		wait: func(n int) time.Duration { return s.Backoff(n) }}
}

// admit says whether a message (id) may be attempted for dom now. When it may not, reason is
// the last failure and the message is remembered for a release when dom is reached again.
// probe reports an attempt the caller must close with report.
func (d *destinations) admit(dom, id string, now time.Time) (ok, probe bool, reason string) {
	if d.after < 0 {
		return true, false, ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.m[dom]
	if s == nil || s.fails == 0 {
		return true, false, ""
	}
	if s.probing || now.Before(s.until) {
		if s.parked == nil {
			s.parked = map[string]struct{}{}
		}
		s.parked[id] = struct{}{}
		return false, false, s.reason
	}
	s.probing = true
	return true, true, ""
}

// report records the outcome of an attempt on dom; reached is false when no connection could
// be made. It returns the messages to make due again when dom was reached after failures.
func (d *destinations) report(dom string, probe, reached bool, status string, now time.Time) (release []string) {
	if d.after < 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.m[dom]
	if reached {
		if s == nil {
			return nil
		}
		for id := range s.parked {
			release = append(release, id)
		}
		delete(d.m, dom)
		return release
	}
	if s == nil {
		s = &destState{}
		d.m[dom] = s
	}
	if probe {
		s.probing = false
	}
	s.fails++
	s.reason = suspendReason(status)
	if s.fails >= max(d.after, 1) {
		s.until = now.Add(d.wait(s.fails - d.after + 1))
	}
	return nil
}

// abandon ends a probe that was not made (shutdown).
func (d *destinations) abandon(dom string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.m[dom]; s != nil {
		s.probing = false
	}
}

// count returns how many destinations are suspended at now.
func (d *destinations) count(now time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.m {
		if now.Before(s.until) {
			n++
		}
	}
	return n
}

// suspendReason is the text of a failure without its codes: "connection refused" of
// "451 4.4.1 connection refused".
func suspendReason(status string) string {
	if c := statusCode(status); c != "" {
		status = strings.TrimSpace(status[len(c):])
	}
	if status == "" {
		status = "destination unreachable"
	}
	return status
}
