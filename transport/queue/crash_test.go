package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashLog appends events ("deliver", "stored", "notice") to a file shared by the processes of
// TestCrashRestart, one at a time: a killed process loses none of what it wrote.
type crashLog struct {
	mu sync.Mutex
	f  *os.File
}

func (l *crashLog) add(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.f, format+"\n", a...)
}

// crashQueue opens the spool as the processes of TestCrashRestart do, and runs it: ok-*
// recipients are delivered, tmp-* ones at their second attempt, bad-* ones refused.
func crashQueue(ctx context.Context, dir string, log *crashLog) (*Queue, <-chan error, error) {
	q, err := Open(&Options{Dir: dir, Schedule: Schedule{First: 20 * time.Millisecond, Jitter: -1}})
	if err != nil {
		return nil, nil, err
	}
	d := DelivererFunc(func(_ context.Context, j *Job) []Result {
		rs := make([]Result, len(j.Rcpts))
		for i, r := range j.Rcpts {
			switch {
			case strings.HasPrefix(r.Addr, "bad-"):
				rs[i] = Result{Err: errors.New("refused"), Permanent: true, Status: "550 5.1.1 unknown"}
			case strings.HasPrefix(r.Addr, "tmp-") && r.Attempts == 0:
				rs[i] = Result{Err: errors.New("busy"), Status: "451 4.4.1 busy"}
			default:
				log.add("deliver %s %s", j.Env.ID, r.Addr)
				rs[i] = Result{Status: "250 2.0.0 ok"}
			}
		}
		return rs
	})
	opts := &RunOptions{Workers: 4, ControlPoll: -1,
		Notifier: NotifierFunc(func(_ context.Context, e *Envelope, kind NoticeKind, rcpts []*Recipient) error {
			for _, r := range rcpts {
				log.add("notice %s %s %s", e.ID, r.Addr, kind)
			}
			return nil
		}),
		OnResult: func(e *Envelope, r *Recipient, _ Result) {
			log.add("stored %s %s %s", e.ID, r.Addr, r.State)
		}}
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, d, opts) }()
	return q, done, nil
}

// TestCrashHelperProcess is the process TestCrashRestart kills; it does nothing in a normal run.
func TestCrashHelperProcess(t *testing.T) {
	dir := os.Getenv("MSSANTE_QUEUE_CRASH_DIR")
	if dir == "" {
		t.Skip("helper process of TestCrashRestart")
	}
	f, err := os.OpenFile(filepath.Join(dir, "..", "events"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := crashQueue(context.Background(), dir, &crashLog{f: f})
	if err != nil {
		t.Fatal(err)
	}
	enqueueUntilKilled(t, q, func(n int64) *Envelope {
		e := &Envelope{From: "a@x.fr"}
		for _, p := range []string{"ok", "tmp", "bad"} {
			e.Rcpts = append(e.Rcpts, &Recipient{Addr: fmt.Sprintf("%s-%d@y.fr", p, n),
				Notify: []string{NotifySuccess, NotifyFailure}})
		}
		return e
	})
}

// enqueueUntilKilled enqueues the envelope of n = 1, 2, … from four goroutines until the
// process is killed, printing "acked ID n" for each one acknowledged.
func enqueueUntilKilled(t *testing.T, q *Queue, envelope func(n int64) *Envelope) {
	var out sync.Mutex
	var seq atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				n := seq.Add(1)
				id, err := q.Enqueue(context.Background(), envelope(n), strings.NewReader("m"))
				if err != nil {
					t.Error(err)
					return
				}
				out.Lock()
				fmt.Printf("acked %s %d\n", id, n)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// Crash test: a process enqueueing and delivering is killed (SIGKILL) twice; then the spool is
// opened again (no index: every message read in the background) and run until empty. Every
// message acknowledged is delivered to each recipient and each recipient gets its final
// notice; no recipient is delivered again once its delivery was stored, none gets two
// different final notices, and a notice is repeated only when a kill came between the
// Notifier's call and the storing of its outcome (at most one attempt per worker per kill).
func TestCrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "spool")
	acked := map[string]int64{}
	const kills = 2
	for k := 1; k <= kills; k++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$")
		cmd.Env = append(os.Environ(), "MSSANTE_QUEUE_CRASH_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		target := len(acked) + 300
		for len(acked) < target && sc.Scan() {
			var id string
			var n int64
			if _, err := fmt.Sscanf(sc.Text(), "acked %s %d", &id, &n); err == nil {
				acked[id] = n
			}
		}
		cmd.Process.Kill()
		for sc.Scan() { // acknowledged before the kill, read after
			var id string
			var n int64
			if _, err := fmt.Sscanf(sc.Text(), "acked %s %d", &id, &n); err == nil {
				acked[id] = n
			}
		}
		cmd.Wait()
		if len(acked) < target {
			t.Fatalf("process %d: %d acknowledged", k, len(acked))
		}
	}
	if exists(filepath.Join(dir, indexName)) {
		t.Fatal("an index after a kill")
	}
	f, err := os.OpenFile(filepath.Join(root, "events"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	q, done, err := crashQueue(ctx, dir, &crashLog{f: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the last kill: %+v", q.Stats())
	deadline := time.Now().Add(60 * time.Second)
	for q.Stats().Messages > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	s := q.Stats()
	cancel()
	<-done
	q.Close()
	if s.Messages > 0 {
		t.Fatalf("queue not emptied: %+v", s)
	}

	b, err := os.ReadFile(filepath.Join(root, "events"))
	if err != nil {
		t.Fatal(err)
	}
	delivered := map[string]int{}    // "id addr" → deliveries
	stored := map[string]bool{}      // delivery stored
	notices := map[string][]string{} // final notices
	var late, repeated []string
	for line := range strings.Lines(string(b)) {
		ev := strings.Fields(line)
		if len(ev) < 3 {
			continue // torn by a kill
		}
		key := ev[1] + " " + ev[2]
		switch ev[0] {
		case "deliver":
			if stored[key] {
				late = append(late, key)
			}
			delivered[key]++
		case "stored":
			if len(ev) == 4 && ev[3] == string(Delivered) {
				stored[key] = true
			}
		case "notice":
			if len(ev) == 4 {
				notices[key] = append(notices[key], ev[3])
			}
		}
	}
	for id, n := range acked {
		for _, p := range []string{"ok", "tmp", "bad"} {
			key := fmt.Sprintf("%s %s-%d@y.fr", id, p, n)
			want := string(NoticeDelivered)
			if p == "bad" {
				want = string(NoticeFailed)
				if delivered[key] > 0 {
					t.Errorf("%s delivered", key)
				}
			} else if delivered[key] == 0 {
				t.Errorf("acknowledged, never delivered: %s", key)
			}
			ns := notices[key]
			if len(ns) == 0 {
				t.Errorf("no final notice: %s", key)
			}
			for _, k := range ns {
				if k != want {
					t.Errorf("%s: notices %v, want %s", key, ns, want)
				}
			}
			if len(ns) > 1 {
				repeated = append(repeated, key)
			}
		}
	}
	if len(late) > 0 {
		t.Errorf("delivered again after the delivery was stored: %v", late)
	}
	if len(repeated) > kills*4*3 {
		t.Errorf("%d notices repeated: %v", len(repeated), repeated)
	}
	t.Logf("%d kills, %d messages acknowledged, %d recipients delivered, %d notices repeated after a kill",
		kills, len(acked), len(delivered), len(repeated))
}

// TestRedeliveryHelperProcess is the process TestCrashRedelivery kills; it does nothing in a
// normal run. It enqueues messages with a RedeliveryKey, as the relay does, and prints each ID
// acknowledged.
func TestRedeliveryHelperProcess(t *testing.T) {
	dir := os.Getenv("MSSANTE_QUEUE_REDELIVERY_DIR")
	if dir == "" {
		t.Skip("helper process of TestCrashRedelivery")
	}
	q, err := Open(&Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	enqueueUntilKilled(t, q, func(n int64) *Envelope {
		return &Envelope{From: "a@x.fr", RedeliveryKey: fmt.Sprintf("k-%d", n),
			Rcpts: []*Recipient{{Addr: fmt.Sprintf("r-%d@y.fr", n)}}}
	})
}

// Crash test of redelivery detection: a process committing messages with a RedeliveryKey is
// killed (SIGKILL); the spool is opened again with the read of the redelivery file held back
// (a message without a key is accepted meanwhile, one with a key waits) and the loader held
// back on every message acknowledged, and each of them handed over again (same key, same
// recipient) is recognised once the file is read, before it is. Once loaded, no key is queued
// twice.
func TestCrashRedelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process")
	}
	dir := filepath.Join(t.TempDir(), "spool")
	cmd := exec.Command(os.Args[0], "-test.run=^TestRedeliveryHelperProcess$")
	cmd.Env = append(os.Environ(), "MSSANTE_QUEUE_REDELIVERY_DIR="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{}
	scan := func(sc *bufio.Scanner, until int) {
		for len(acked) < until && sc.Scan() {
			var id string
			var n int64
			if _, err := fmt.Sscanf(sc.Text(), "acked %s %d", &id, &n); err == nil {
				acked[id] = n
			}
		}
	}
	sc := bufio.NewScanner(stdout)
	scan(sc, 300)
	cmd.Process.Kill()
	scan(sc, 1<<30) // acknowledged before the kill, read after
	cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("%d acknowledged", len(acked))
	}

	// The loader reads a message acknowledged only once the redeliveries are checked; the
	// others (committed, not acknowledged) it reads at once.
	release := make(chan struct{})
	beforeLoad = func(id string, stop <-chan struct{}) {
		if _, ok := acked[id]; !ok {
			return
		}
		select {
		case <-release:
		case <-stop:
		}
	}
	defer func() { beforeLoad = nil }()
	keysRead := gateKeys(t)
	q, err := Open(&Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// While the redelivery file is read, a message without a key is accepted; one with a key
	// waits.
	if s := q.Stats(); !s.RedeliveryLoading || s.Loading < len(acked) {
		t.Fatalf("while reading the keys: %+v", s)
	}
	if _, err := q.Enqueue(ctx, &Envelope{From: "a@x.fr", Rcpts: []*Recipient{{Addr: "plain@y.fr"}}}, strings.NewReader("m")); err != nil {
		t.Fatal(err)
	}
	early := make(chan error, 1)
	go func() {
		_, err := q.Enqueue(ctx, &Envelope{From: "a@x.fr", RedeliveryKey: "k-early",
			Rcpts: []*Recipient{{Addr: "early@y.fr"}}}, strings.NewReader("m"))
		early <- err
	}()
	select {
	case err := <-early:
		t.Fatalf("a keyed commit answered before the keys were read: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(keysRead)
	if err := <-early; err != nil {
		t.Fatal(err)
	}
	for id, n := range acked {
		e := &Envelope{From: "a@x.fr", RedeliveryKey: fmt.Sprintf("k-%d", n),
			Rcpts: []*Recipient{{Addr: fmt.Sprintf("R-%d@Y.FR", n)}}}
		w, err := q.Begin()
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("m"))
		if _, err := w.Commit(ctx, e); !errors.Is(err, ErrRedelivered) {
			t.Fatalf("redelivery of %s (%d): %v", id, n, err)
		}
		if r := w.Redelivered(); len(r) != 1 || r[0].ID != id {
			t.Fatalf("redelivery of %s: %+v", id, r)
		}
	}
	if s := q.Stats(); s.Loading < len(acked) {
		t.Fatalf("checked after the load: %+v", s)
	}
	close(release)
	q.waitLoaded(ctx)
	perKey := map[string]int{}
	for _, id := range q.IDs() {
		e, err := q.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		perKey[e.RedeliveryKey]++
	}
	for id, n := range acked {
		if k := fmt.Sprintf("k-%d", n); perKey[k] != 1 {
			t.Errorf("%s: key %s queued %d times", id, k, perKey[k])
		}
	}
	if perKey[""] != 1 || perKey["k-early"] != 1 {
		t.Errorf("the commits made while reading the keys: %v", perKey)
	}
	if len(perKey) != len(q.IDs()) {
		t.Errorf("a key queued twice: %d messages, %d keys", len(q.IDs()), len(perKey))
	}
	t.Logf("%d acknowledged before the kill, %d messages in the spool", len(acked), len(q.IDs()))
}
