package connector

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Metrics collects the connector's counters and writes them in the Prometheus text exposition
// format (version 0.0.4). A nil *Metrics is valid and records nothing.
type Metrics struct {
	mu        sync.Mutex
	counters  map[string]float64 // full series name with labels → value
	latencies map[string]*histogram
	gauges    map[string]func() float64
}

// NewMetrics returns an empty collector.
func NewMetrics() *Metrics {
	return &Metrics{counters: map[string]float64{}, latencies: map[string]*histogram{}, gauges: map[string]func() float64{}}
}

var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 4 * 3600, 86400}

type histogram struct {
	counts []uint64
	sum    float64
	n      uint64
}

func (m *Metrics) add(series string, v float64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.counters[series] += v
	m.mu.Unlock()
}

func (m *Metrics) observe(name string, d time.Duration) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.latencies[name]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m.latencies[name] = h
	}
	s := d.Seconds()
	for i, b := range latencyBuckets {
		if s <= b {
			h.counts[i]++
		}
	}
	h.sum += s
	h.n++
}

func label(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

func (m *Metrics) accepted(mode Mode, d time.Duration) {
	m.add(fmt.Sprintf(`mssante_messages_accepted_total{listener="%s"}`, mode), 1)
	m.observe(fmt.Sprintf(`mssante_accept_latency_seconds{listener="%s"}`, mode), d)
}

func (m *Metrics) rejected(reason string) {
	m.add(fmt.Sprintf(`mssante_messages_rejected_total{reason="%s"}`, label(reason)), 1)
}

func (m *Metrics) delivery(outcome string, d time.Duration) {
	m.add(fmt.Sprintf(`mssante_recipients_total{outcome="%s"}`, outcome), 1)
	if outcome == "delivered" {
		m.observe("mssante_delivery_latency_seconds", d)
	}
}

// Gauge registers a gauge computed at scrape time; series is the name with its labels, e.g.
// `mssante_certificate_expiry_seconds{name="relay"}`.
func (m *Metrics) Gauge(series string, f func() float64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.gauges[series] = f
	m.mu.Unlock()
}

// Counter returns the value of a counter series (for tests and the CLI).
func (m *Metrics) Counter(series string) float64 {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counters[series]
}

func baseName(series string) string {
	if i := strings.IndexByte(series, '{'); i >= 0 {
		return series[:i]
	}
	return series
}

// WriteTo writes every series in the text format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	m.mu.Lock()
	typed := map[string]bool{}
	emit := func(series, typ string, v float64) {
		if n := baseName(series); !typed[n] {
			typed[n] = true
			fmt.Fprintf(&b, "# TYPE %s %s\n", n, typ)
		}
		fmt.Fprintf(&b, "%s %s\n", series, fmtFloat(v))
	}
	for _, s := range sortedKeys(m.counters) {
		emit(s, "counter", m.counters[s])
	}
	gauges := map[string]func() float64{}
	for k, f := range m.gauges {
		gauges[k] = f
	}
	for _, s := range sortedKeys(m.latencies) {
		h := m.latencies[s]
		n, labels := baseName(s), ""
		if i := strings.IndexByte(s, '{'); i >= 0 {
			labels = s[i+1:len(s)-1] + ","
		}
		if !typed[n] {
			typed[n] = true
			fmt.Fprintf(&b, "# TYPE %s histogram\n", n)
		}
		for i, le := range latencyBuckets {
			fmt.Fprintf(&b, "%s_bucket{%sle=\"%s\"} %d\n", n, labels, fmtFloat(le), h.counts[i])
		}
		fmt.Fprintf(&b, "%s_bucket{%sle=\"+Inf\"} %d\n", n, labels, h.n)
		suffix := ""
		if labels != "" {
			suffix = "{" + strings.TrimSuffix(labels, ",") + "}"
		}
		fmt.Fprintf(&b, "%s_sum%s %s\n%s_count%s %d\n", n, suffix, fmtFloat(h.sum), n, suffix, h.n)
	}
	m.mu.Unlock()
	for _, s := range sortedKeys(gauges) {
		emit(s, "gauge", gauges[s]())
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func fmtFloat(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return fmt.Sprintf("%g", v)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ServeHTTP serves the metrics (mount it on /metrics).
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m.WriteTo(w)
}
