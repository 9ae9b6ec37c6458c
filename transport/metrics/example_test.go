package metrics_test

import (
	"log"
	"net/http"
	"time"

	"github.com/mssante-go/sdk/transport/metrics"
)

// The connector's series on /metrics, with a gauge computed at each scrape.
func Example() {
	m := metrics.New()
	start := time.Now()
	if err := m.GaugeFunc("mssante_uptime_seconds", "Seconds since start.", nil,
		func() float64 { return time.Since(start).Seconds() }); err != nil {
		log.Fatal(err)
	}
	m.Accepted("relay", 40*time.Millisecond) // what the SMTP servers record
	mux := http.NewServeMux()
	mux.Handle("/metrics", m)
	log.Fatal(http.ListenAndServe("127.0.0.1:9100", mux))
}
