package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/webhook"
)

// TestBenchWebhookLatency is the measurement bench/httpapi/run.sh prints: the time from
// Publish (the event, fsynced) to its arrival at a receiver on loopback (signature checked),
// over N events published one every 5 ms; p50 and p99. It runs only with HTTPAPI_BENCH=1.
func TestBenchWebhookLatency(t *testing.T) {
	if os.Getenv("HTTPAPI_BENCH") != "1" {
		t.Skip("HTTPAPI_BENCH=1 runs the benchmark (bench/httpapi/run.sh)")
	}
	n := 500
	if v, err := strconv.Atoi(os.Getenv("WEBHOOK_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	lat := make(chan time.Duration, n)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify(secret, r.Header.Get("Webhook-Signature"), body, time.Now(), 0) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var e webhook.Event
		json.Unmarshal(body, &e)
		lat <- time.Since(e.Time)
	}))
	defer srv.Close()
	d, err := webhook.New(&webhook.Options{Dir: t.TempDir(), AllowInsecure: true,
		Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, d)
	defer stop()
	for i := 0; i < n; i++ {
		if err := d.Publish(context.Background(), webhook.Event{Type: webhook.EventDelivered, BAL: "a@b.fr",
			MessageID: fmt.Sprintf("m%d@x", i), Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var all []time.Duration
	for len(all) < n {
		select {
		case l := <-lat:
			all = append(all, l)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d events arrived", len(all), n)
		}
	}
	slices.Sort(all)
	fmt.Printf("bench webhook: %d events, latency from the event to the receiver: p50 %s, p99 %s\n",
		n, all[n/2].Round(10*time.Microsecond), all[n*99/100].Round(10*time.Microsecond))

	// Publish alone (no delivery running), from one goroutine and from eight: what group
	// commit gives concurrent API requests.
	for _, workers := range []int{1, 8} {
		d, err := webhook.New(&webhook.Options{Dir: t.TempDir(), AllowInsecure: true,
			Endpoints: []webhook.Endpoint{{BAL: "a@b.fr", URL: srv.URL, Secret: secret}}})
		if err != nil {
			t.Fatal(err)
		}
		const total = 2000
		start := time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < total; i += workers {
					if err := d.Publish(context.Background(), webhook.Event{Type: webhook.EventAccepted, BAL: "a@b.fr",
						MessageID: fmt.Sprintf("m%d@x", i)}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		fmt.Printf("bench webhook: Publish from %d goroutine(s): %.0f events/s (each fsynced before Publish returns)\n",
			workers, total/time.Since(start).Seconds())
		d.Close()
	}
}
