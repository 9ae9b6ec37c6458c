package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/transport/webhook"
)

var secret = []byte("0123456789abcdef-secret")

// receiver records the events it accepts, after checking their signature; fail decides the
// status of each request (0 = 200).
type receiver struct {
	mu     sync.Mutex
	events []webhook.Event
	fail   func(n int) int
	n      int
	got    chan webhook.Event
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify(secret, r.Header.Get("Webhook-Signature"), body, time.Now(), 0); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.n++
	n := rc.n
	rc.mu.Unlock()
	if rc.fail != nil {
		if code := rc.fail(n); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	var e webhook.Event
	if err := json.Unmarshal(body, &e); err != nil || r.Header.Get("Webhook-Id") != e.ID {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.events = append(rc.events, e)
	rc.mu.Unlock()
	if rc.got != nil {
		rc.got <- e
	}
}

func start(t *testing.T, d *webhook.Dispatcher) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

// Events are signed, delivered in order, retried after 500s with backoff, and logged.
func TestWebhookDeliveryOrderRetryLog(t *testing.T) {
	rc := &receiver{got: make(chan webhook.Event, 10), fail: func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return 0
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	d, err := webhook.New(&webhook.Options{Dir: t.TempDir(), AllowInsecure: true, MinBackoff: 10 * time.Millisecond,
		Endpoints: []webhook.Endpoint{{BAL: "dpi@hopital.dev.mssante.fr", URL: srv.URL, Secret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, d)
	defer stop()
	ctx := context.Background()
	for _, typ := range []string{webhook.EventAccepted, webhook.EventDelivered, webhook.EventProcessed} {
		if err := d.Publish(ctx, webhook.Event{Type: typ, BAL: "DPI@hopital.dev.mssante.fr", MessageID: "m1@x"}); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{webhook.EventAccepted, webhook.EventDelivered, webhook.EventProcessed} {
		select {
		case e := <-rc.got:
			if e.Type != want {
				t.Fatalf("event %d: %s, want %s", i, e.Type, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not delivered", i)
		}
	}
	var log []webhook.Delivery
	var retries, delivered int
	for deadline := time.Now().Add(5 * time.Second); delivered < 3 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if log, err = d.Log("dpi@hopital.dev.mssante.fr", 0); err != nil {
			t.Fatal(err)
		}
		retries, delivered = count(log)
	}
	if retries != 2 || delivered != 3 {
		t.Fatalf("log: %d retries, %d delivered: %+v", retries, delivered, log)
	}
}

func count(log []webhook.Delivery) (retries, delivered int) {
	for _, r := range log {
		switch r.Outcome {
		case "retry":
			retries++
		case "delivered":
			delivered++
		}
	}
	return retries, delivered
}

// An event published while the receiver is down survives a restart of the dispatcher.
func TestWebhookPersistedAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	rc := &receiver{got: make(chan webhook.Event, 10)}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	opts := &webhook.Options{Dir: dir, AllowInsecure: true, MinBackoff: 10 * time.Millisecond,
		Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}}
	d1, err := webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Not running: the event waits on disk.
	if err := d1.Publish(context.Background(), webhook.Event{Type: webhook.EventReceived, BAL: "a@b.fr", MessageID: "m2@x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := webhook.New(opts); !errors.Is(err, statelock.ErrLocked) {
		t.Fatalf("a second dispatcher on the same folder: %v, want ErrLocked", err)
	}
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	d2, err := webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, d2)
	defer stop()
	select {
	case e := <-rc.got:
		if e.MessageID != "m2@x" || e.ID == "" {
			t.Fatalf("got %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("event lost across restart")
	}
}

// After MaxAge of failures, an event is abandoned and says so in the log.
func TestWebhookAbandonedAfterMaxAge(t *testing.T) {
	rc := &receiver{fail: func(int) int { return http.StatusServiceUnavailable }}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	d, err := webhook.New(&webhook.Options{Dir: t.TempDir(), AllowInsecure: true, MinBackoff: time.Millisecond,
		MaxBackoff: time.Millisecond, MaxAge: 72 * time.Hour, Now: clock,
		Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	d.Publish(context.Background(), webhook.Event{Type: webhook.EventFailed, BAL: "a@b.fr", MessageID: "m3@x"})
	stop := start(t, d)
	defer stop()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	now = now.Add(73 * time.Hour) // days later, still 503
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		log, _ := d.Log("a@b.fr", 1)
		if len(log) == 1 && log[0].Outcome == "abandoned" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("event not abandoned after MaxAge")
}

// Production mode refuses http, literal private addresses, and names that resolve to loopback.
func TestWebhookSSRFGuard(t *testing.T) {
	for _, u := range []string{"http://example.org/hook", "https://127.0.0.1/hook", "https://10.1.2.3/h",
		"https://[::1]/h", "https://169.254.169.254/latest", "https://100.64.0.1/h", "https://user:pw@example.org/h", "/relative"} {
		_, err := webhook.New(&webhook.Options{Dir: t.TempDir(), Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: u, Secret: secret}}})
		if !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Errorf("%s: %v, want ErrForbiddenAddress", u, err)
		}
	}
	// A name is checked on the address dialled: localhost resolves to loopback.
	srv := httptest.NewTLSServer(&receiver{})
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	d, err := webhook.New(&webhook.Options{Dir: t.TempDir(), MinBackoff: time.Hour,
		Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: "https://localhost" + port + "/h", Secret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	d.Publish(context.Background(), webhook.Event{Type: webhook.EventFailed, BAL: "a@b.fr", MessageID: "m4@x"})
	stop := start(t, d)
	defer stop()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		log, _ := d.Log("a@b.fr", 1)
		if len(log) == 1 {
			if log[0].Outcome != "retry" || !strings.Contains(log[0].Error, "not allowed") {
				t.Fatalf("log %+v", log[0])
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no attempt logged")
}

// Verify refuses a wrong secret, a changed body and a timestamp outside the replay window.
func TestWebhookVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := webhook.Sign(secret, now, body)
	if err := webhook.Verify(secret, h, body, now.Add(time.Minute), 0); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"secret":  webhook.Verify([]byte("another-secret-0123"), h, body, now, 0),
		"body":    webhook.Verify(secret, h, []byte(`{"id":"evt_2"}`), now, 0),
		"replay":  webhook.Verify(secret, h, body, now.Add(6*time.Minute), 0),
		"future":  webhook.Verify(secret, h, body, now.Add(-6*time.Minute), 0),
		"garbage": webhook.Verify(secret, "v1=zz", body, now, 0),
	} {
		if !errors.Is(err, webhook.ErrSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("t=1800000000,v1=00", []byte("{}"))
	f.Add("t=,v1=", []byte(""))
	f.Fuzz(func(t *testing.T, h string, body []byte) {
		webhook.Verify(secret, h, body, time.Unix(1_800_000_000, 0), 0)
	})
}
