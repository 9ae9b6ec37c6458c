package webhook_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/webhook"
)

// The child side of TestWebhookJournalCrash: publishes the events of many messages from
// four goroutines, printing "ack ID" once Publish returned, and delivers them, until killed.
func crashChild() {
	dir, url := os.Getenv("WEBHOOK_CRASH_DIR"), os.Getenv("WEBHOOK_CRASH_URL")
	d, err := webhook.New(&webhook.Options{Dir: dir, AllowInsecure: true, MinBackoff: 10 * time.Millisecond,
		CompactSize: 16 << 10, Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: url, Secret: secret}}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	go d.Run(context.Background())
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for m := 0; ; m++ {
				for _, typ := range messageEvents {
					e := webhook.Event{ID: fmt.Sprintf("evt-%s-%d-%d-%s", os.Getenv("WEBHOOK_CRASH_ROUND"), g, m, typ),
						Type: typ, BAL: "a@b.fr", MessageID: fmt.Sprintf("m-%s-%d-%d@x", os.Getenv("WEBHOOK_CRASH_ROUND"), g, m)}
					if err := d.Publish(context.Background(), e); err != nil {
						fmt.Println("error", err)
						os.Exit(2)
					}
					mu.Lock()
					fmt.Fprintln(out, "ack", e.ID)
					out.Flush()
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

var messageEvents = []string{webhook.EventAccepted, webhook.EventDelivered, webhook.EventProcessed}

// A dispatcher killed (SIGKILL) while publishing and delivering, twice: after the restart,
// every event Publish returned for is delivered, the events of each message in order, and
// an event is delivered twice only when its answer came as the process died (at most one
// per kill: an endpoint has one request in flight).
func TestWebhookJournalCrash(t *testing.T) {
	if os.Getenv("WEBHOOK_CRASH_DIR") != "" {
		crashChild()
		return
	}
	if testing.Short() {
		t.Skip("runs child processes")
	}
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	dir := t.TempDir()
	acked := map[string]bool{}
	const kills = 2
	for round := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWebhookJournalCrash$")
		cmd.Env = append(os.Environ(), "WEBHOOK_CRASH_DIR="+dir, "WEBHOOK_CRASH_URL="+srv.URL,
			fmt.Sprintf("WEBHOOK_CRASH_ROUND=%d", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if id, ok := strings.CutPrefix(line, "ack "); ok {
				acked[id] = true
				if n++; n == 600 {
					cmd.Process.Kill() // mid-flight: Publishes and deliveries in progress
				}
			} else if strings.HasPrefix(line, "error") {
				t.Fatalf("child: %s", line)
			}
		}
		cmd.Wait()
		if n < 600 {
			t.Fatalf("the child acknowledged %d events before ending", n)
		}
	}
	// The restart, in this process.
	d, err := webhook.New(&webhook.Options{Dir: dir, AllowInsecure: true, MinBackoff: 10 * time.Millisecond,
		Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, d)
	defer func() { stop(); d.Close() }()
	count := map[string]int{}
	var got []webhook.Event
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rc.mu.Lock()
		got = append(got[:0], rc.events...)
		rc.mu.Unlock()
		clear(count)
		missing := 0
		for _, e := range got {
			count[e.ID]++
		}
		for id := range acked {
			if count[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged events never delivered", missing, len(acked))
		}
	}
	time.Sleep(100 * time.Millisecond) // let a wrong extra delivery show
	rc.mu.Lock()
	got = append(got[:0], rc.events...)
	rc.mu.Unlock()
	clear(count)
	twice := 0
	seen := map[string]int{} // message -> index in messageEvents of its last event first delivered
	for _, e := range got {
		count[e.ID]++
		if count[e.ID] == 2 {
			twice++
			continue
		}
		if count[e.ID] > 2 {
			t.Errorf("event %s delivered %d times", e.ID, count[e.ID])
		}
		if count[e.ID] > 1 {
			continue
		}
		i := indexOf(messageEvents, e.Type)
		if last, ok := seen[e.MessageID]; ok && i != last+1 || !ok && i != 0 {
			t.Errorf("message %s: %s after %v", e.MessageID, e.Type, last)
		}
		seen[e.MessageID] = i
	}
	if twice > kills {
		t.Errorf("%d events delivered twice after %d kills", twice, kills)
	}
	t.Logf("%d events acknowledged, %d deliveries, %d delivered twice", len(acked), len(got), twice)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// A record cut short by a kill is dropped on restart, the events before it delivered, and
// the journal goes on from there; a damaged record is copied aside and the events before it
// kept.
func TestWebhookJournalTornAndDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		aside  bool
	}{
		{"torn", func(b []byte) []byte { return b[:len(b)-7] }, false},
		{"damaged", func(b []byte) []byte { b[len(b)-20] ^= 0x55; return b }, true},
		{"huge length", func(b []byte) []byte { return append(b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{') }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rc := &receiver{got: make(chan webhook.Event, 10)}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			opts := &webhook.Options{Dir: dir, AllowInsecure: true, MinBackoff: 10 * time.Millisecond,
				Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}}
			d, err := webhook.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := d.Publish(context.Background(), webhook.Event{ID: fmt.Sprint("e", i), Type: webhook.EventReceived,
					BAL: "a@b.fr", MessageID: "m@x"}); err != nil {
					t.Fatal(err)
				}
			}
			d.Close()
			path := filepath.Join(dir, "journal")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			d, err = webhook.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			aside, _ := filepath.Glob(filepath.Join(dir, "journal.damaged-*"))
			if (len(aside) == 1) != tc.aside {
				t.Fatalf("copies aside: %v", aside)
			}
			// The journal goes on after the cut: a new event, then a restart, keeps it.
			if err := d.Publish(context.Background(), webhook.Event{ID: "e3", Type: webhook.EventReceived, BAL: "a@b.fr", MessageID: "m@x"}); err != nil {
				t.Fatal(err)
			}
			d.Close()
			if d, err = webhook.New(opts); err != nil {
				t.Fatal(err)
			}
			stop := start(t, d)
			defer func() { stop(); d.Close() }()
			want := []string{"e0", "e1", "e3"}
			if tc.name == "huge length" {
				want = []string{"e0", "e1", "e2", "e3"}
			}
			for _, id := range want {
				select {
				case e := <-rc.got:
					if e.ID != id {
						t.Fatalf("got %s, want %s", e.ID, id)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s not delivered", id)
				}
			}
		})
	}
}

// Once past CompactSize, the journal is rewritten with the events left; a restart then
// delivers only those.
func TestWebhookJournalCompaction(t *testing.T) {
	dir := t.TempDir()
	rc := &receiver{got: make(chan webhook.Event, 1000)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	opts := &webhook.Options{Dir: dir, AllowInsecure: true, MinBackoff: 10 * time.Millisecond, CompactSize: 8 << 10,
		Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}}
	d, err := webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, d)
	const n = 200
	for i := range n {
		if err := d.Publish(context.Background(), webhook.Event{ID: fmt.Sprint("e", i), Type: webhook.EventDelivered,
			BAL: "a@b.fr", MessageID: "m@x"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		select {
		case e := <-rc.got:
			if e.ID != fmt.Sprint("e", i) {
				t.Fatalf("got %s, want e%d", e.ID, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("e%d not delivered", i)
		}
	}
	// The last answer may still be on its way: stopping before it is recorded would deliver
	// e199 again after the restart (at least once).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		log, err := d.Log("a@b.fr", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) == 1 && log[0].EventID == fmt.Sprint("e", n-1) && log[0].Outcome == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last delivery not logged: %+v", log)
		}
	}
	stop()
	// One more, left pending: the only one a restart delivers.
	if err := d.Publish(context.Background(), webhook.Event{ID: "last", Type: webhook.EventDelivered, BAL: "a@b.fr", MessageID: "m@x"}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	st, err := os.Stat(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 8<<10 {
		t.Errorf("journal of %d bytes after %d events delivered, want <= %d", st.Size(), n, 8<<10)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("journal mode %v", st.Mode().Perm())
	}
	d, err = webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	stop = start(t, d)
	defer func() { stop(); d.Close() }()
	select {
	case e := <-rc.got:
		if e.ID != "last" {
			t.Fatalf("after restart got %s, want last", e.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending event lost by the compaction")
	}
	select {
	case e := <-rc.got:
		t.Fatalf("delivered again after restart: %s", e.ID)
	case <-time.After(200 * time.Millisecond):
	}
}

// Pending event files of the earlier layout (one per event in the endpoint's folder) are
// moved into the journal and delivered in order.
func TestWebhookLegacyFiles(t *testing.T) {
	dir := t.TempDir()
	rc := &receiver{got: make(chan webhook.Event, 10)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	opts := &webhook.Options{Dir: dir, AllowInsecure: true, MinBackoff: 10 * time.Millisecond,
		Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}}
	d, err := webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	eps, _ := filepath.Glob(filepath.Join(dir, "*", ""))
	var epDir string
	for _, p := range eps {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			epDir = p
		}
	}
	if epDir == "" {
		t.Fatal("no endpoint folder")
	}
	for i, id := range []string{"old1", "old2"} {
		body := fmt.Sprintf(`{"event":{"id":%q,"type":"message.received","time":"2026-12-01T10:00:00Z","bal":"a@b.fr","message_id":"m@x"},"attempts":1,"first":"2026-12-01T10:00:00Z"}`, id)
		if err := os.WriteFile(filepath.Join(epDir, fmt.Sprintf("%020d.json", i+1)), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if d, err = webhook.New(opts); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(epDir, "*.json"))
	if len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
	stop := start(t, d)
	defer func() { stop(); d.Close() }()
	for _, id := range []string{"old1", "old2"} {
		select {
		case e := <-rc.got:
			if e.ID != id {
				t.Fatalf("got %s, want %s", e.ID, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not delivered", id)
		}
	}
}

// A file that is not a journal is refused by name, not read.
func TestWebhookJournalNotAJournal(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "journal"), []byte("something else entirely"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := webhook.New(&webhook.Options{Dir: dir})
	if !errors.Is(err, webhook.ErrJournal) {
		t.Fatalf("%v, want ErrJournal", err)
	}
}

// An event too large for a journal record is refused by Publish, and the events after it
// still go through; an endpoint given twice is refused by New (its events would go twice).
func TestWebhookRefusals(t *testing.T) {
	rc := &receiver{got: make(chan webhook.Event, 10)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	ep := webhook.Endpoint{BAL: "a@b.fr", URL: srv.URL, Secret: secret}
	if _, err := webhook.New(&webhook.Options{Dir: t.TempDir(), AllowInsecure: true, Endpoints: []webhook.Endpoint{ep, ep}}); !errors.Is(err, webhook.ErrConfig) {
		t.Fatalf("endpoint twice: %v, want ErrConfig", err)
	}
	d, err := webhook.New(&webhook.Options{Dir: t.TempDir(), AllowInsecure: true, Endpoints: []webhook.Endpoint{ep}})
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(start(t, d))
	defer func() { stop(); d.Close() }()
	big := webhook.Event{ID: "big", Type: webhook.EventFailed, BAL: "a@b.fr", MessageID: "m@x", Detail: strings.Repeat("x", 2<<20)}
	if err := d.Publish(context.Background(), big); err == nil {
		t.Fatal("an event of 2 MiB accepted")
	}
	if err := d.Publish(context.Background(), webhook.Event{ID: "next", Type: webhook.EventFailed, BAL: "a@b.fr", MessageID: "m@x"}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-rc.got:
		if e.ID != "next" {
			t.Fatalf("got %s", e.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event after the refused one was not delivered")
	}
	stop()
	d.Close()
	if err := d.Publish(context.Background(), webhook.Event{Type: webhook.EventFailed, BAL: "a@b.fr", MessageID: "m@x"}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}
