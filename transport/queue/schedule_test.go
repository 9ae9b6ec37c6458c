package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// destDeliverer reaches the domains marked up and fails to connect to the others, counting
// the attempts each domain gets.
type destDeliverer struct {
	mu       sync.Mutex
	up       map[string]bool
	attempts map[string]int
}

func (d *destDeliverer) Deliver(_ context.Context, j *Job) []Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	rs := make([]Result, len(j.Rcpts))
	seen := map[string]bool{}
	for i, r := range j.Rcpts {
		dom := addrDomain(r.Addr)
		if !seen[dom] {
			d.attempts[dom]++
			seen[dom] = true
		}
		if !d.up[dom] {
			rs[i] = Result{Err: errors.New("connection refused"), Unreachable: true,
				Status: "451 4.4.1 connection to the recipient's server failed"}
		}
	}
	return rs
}

// A dead destination is probed SuspendAfter times, one attempt at a time, then its messages
// are deferred as suspended without a dial while another destination is delivered; when a
// later probe reaches it, the messages it deferred are delivered at once.
func TestDeadDestinationSuspended(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	q, err := Open(&Options{Dir: dir, Now: c.Now, Rand: func() float64 { return 0.5 },
		Schedule: Schedule{First: time.Minute, SuspendAfter: 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	for i := range 20 {
		to := "dr@up.fr"
		if i%2 == 0 {
			to = "dr@down.fr"
		}
		if _, err := q.Enqueue(ctx, env("a@x.fr", to), strings.NewReader(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	d := &destDeliverer{up: map[string]bool{"up.fr": true}, attempts: map[string]int{}}
	// One pass: every message is due. RunOnce attempts them one after the other.
	if n := q.RunOnce(ctx, d, nil); n != 20 {
		t.Fatalf("RunOnce = %d", n)
	}
	if d.attempts["up.fr"] != 10 || d.attempts["down.fr"] != 3 {
		t.Fatalf("attempts = %v, want up.fr 10 and down.fr 3 (then suspended)", d.attempts)
	}
	if s := q.Stats(); s.Messages != 10 || s.Recipients != 10 || s.Suspended != 1 {
		t.Fatalf("stats %+v", s)
	}
	ms, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	suspended := 0
	for _, m := range ms {
		r := m.Rcpts[0]
		if r.State != Pending || r.Attempts != 1 {
			t.Fatalf("%s: %+v", m.ID, r)
		}
		if strings.Contains(r.LastStatus, "delivery temporarily suspended: connection to the recipient's server failed") {
			suspended++
		}
	}
	if suspended != 7 {
		t.Fatalf("%d messages deferred as suspended, want 7", suspended)
	}
	// Still dead at the first probe (after Backoff(1)): one dial, suspended again.
	c.Add(time.Minute + time.Second)
	q.RunOnce(ctx, d, nil)
	if d.attempts["down.fr"] != 4 {
		t.Fatalf("probe: %v", d.attempts)
	}
	// Back: the next probe reaches it and releases every parked message.
	d.mu.Lock()
	d.up["down.fr"] = true
	d.mu.Unlock()
	c.Add(2*time.Minute + time.Second)
	for q.RunOnce(ctx, d, nil) > 0 {
	}
	if s := q.Stats(); s.Messages != 0 || s.Suspended != 0 {
		t.Fatalf("after the destination came back: %+v, attempts %v", s, d.attempts)
	}
	if d.attempts["down.fr"] != 4+10 {
		t.Fatalf("attempts %v: want one per message once back", d.attempts)
	}
}

// With SuspendAfter negative, every message dials.
func TestSuspensionOff(t *testing.T) {
	c := newClock()
	q, err := Open(&Options{Dir: t.TempDir(), Now: c.Now, Schedule: Schedule{SuspendAfter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for range 5 {
		q.Enqueue(context.Background(), env("a@x.fr", "dr@down.fr"), strings.NewReader("m"))
	}
	d := &destDeliverer{up: map[string]bool{}, attempts: map[string]int{}}
	q.RunOnce(context.Background(), d, nil)
	if d.attempts["down.fr"] != 5 {
		t.Fatalf("attempts %v", d.attempts)
	}
}

// The timetable hands messages out by due time, oldest first among equals, and follows
// changes of a message's time.
func TestTimetable(t *testing.T) {
	tt := newTimetable()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tt.set("c", t0.Add(3*time.Second))
	tt.set("b", t0)
	tt.set("a", t0)
	tt.set("d", t0.Add(time.Hour))
	tt.set("d", t0.Add(time.Second)) // moved earlier
	tt.remove("c")
	var got []string
	for {
		id, ok := tt.pop(t0.Add(2 * time.Second))
		if !ok {
			break
		}
		got = append(got, id)
	}
	if strings.Join(got, ",") != "a,b,d" || !tt.next().IsZero() {
		t.Fatalf("popped %v, next %v", got, tt.next())
	}
}

// Concurrent callers share fsyncs, and each returns only after one that started after its
// call has ended.
func TestGroupSync(t *testing.T) {
	var g groupSync
	var mu sync.Mutex
	started, ended := 0, 0
	fsync := func() error {
		mu.Lock()
		started++
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		ended++
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			mu.Lock()
			before := started
			mu.Unlock()
			if err := g.run(fsync); err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if ended <= before {
				t.Errorf("returned before an fsync started after the call ended (%d started before, %d ended)", before, ended)
			}
		})
	}
	wg.Wait()
	if started >= 50 {
		t.Fatalf("%d fsyncs for 50 callers: none shared", started)
	}
}
