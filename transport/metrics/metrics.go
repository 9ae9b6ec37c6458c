// Package metrics exposes the MSSanté reference connector's metrics to Prometheus, in the
// text exposition format that Prometheus and OpenMetrics scrapers read (Prometheus exposition,
// docs/references.md): messages accepted and refused by the SMTP listeners, recipients by
// outcome, acceptance and delivery latency, and the gauges the node computes at scrape time,
// beside the Go runtime and process collectors.
//
// The series of this package:
//
//	mssante_messages_accepted_total{listener}   counter
//	mssante_accept_latency_seconds{listener}    histogram, DATA start to 250
//	mssante_messages_rejected_total{reason}     counter
//	mssante_recipients_total{outcome}           counter: delivered, deferred, bounced
//	mssante_delivery_latency_seconds            histogram, queued to delivered
//
// and the gauges transport/node registers with [Metrics.GaugeFunc]:
//
//	mssante_queue_messages                      messages in the queue
//	mssante_queue_recipients                    recipients still to deliver
//	mssante_queue_loading                       messages found at start not read yet
//	mssante_queue_redelivery_loading            1 while the redelivery keys are read at start
//	mssante_certificate_expiry_seconds{name}    seconds until our certificate expires
//	mssante_whitelist_age_seconds               age of the liste blanche in use (-1: none)
//	mssante_crl_next_update_seconds             until the first CRL held is stale (0: none held)
//
// The exposition is github.com/prometheus/client_golang's, with a registry of our own: no
// series goes to the process-wide default registry.
//
// Start with [New]; set the result as the Metrics of connector.ServerOptions and
// connector.DeliveryOptions, and serve it over HTTP ([Metrics] is an http.Handler).
package metrics

import (
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// latencyBuckets span a local acceptance (milliseconds) to a delivery retried for a day.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 4 * 3600, 86400}

// Metrics holds the connector's series and serves them. A nil *Metrics is valid and records
// nothing. It is safe for concurrent use.
type Metrics struct {
	reg             *prometheus.Registry
	handler         http.Handler
	accepted        *prometheus.CounterVec
	acceptLatency   *prometheus.HistogramVec
	rejected        *prometheus.CounterVec
	recipients      *prometheus.CounterVec
	deliveryLatency *prometheus.HistogramVec
}

// New returns the connector's series, with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mssante_messages_accepted_total",
			Help: "Messages queued after DATA, by listener."}, []string{"listener"}),
		acceptLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mssante_accept_latency_seconds",
			Help: "Time from DATA to the 250 reply, by listener.", Buckets: latencyBuckets}, []string{"listener"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mssante_messages_rejected_total",
			Help: "Commands and messages refused by the SMTP listeners, by reason."}, []string{"reason"}),
		recipients: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mssante_recipients_total",
			Help: "Delivery attempts of one recipient, by outcome (delivered, deferred, bounced)."}, []string{"outcome"}),
		// A vector without labels, so that the series appears with the first delivery.
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mssante_delivery_latency_seconds",
			Help: "Time from queueing to delivery of one recipient.", Buckets: latencyBuckets}, nil),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.accepted, m.acceptLatency, m.rejected, m.recipients, m.deliveryLatency)
	// The outcomes are known: exposed at 0 from the start, so that an alert's increase() or
	// rate() sees the first bounce, which it would miss on a series born with it.
	for _, o := range []string{"delivered", "deferred", "bounced"} {
		m.recipients.WithLabelValues(o)
	}
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Accepted counts a message queued by listener ("relay", "submission") and its latency
// since DATA started.
func (m *Metrics) Accepted(listener string, latency time.Duration) {
	if m == nil {
		return
	}
	m.accepted.WithLabelValues(listener).Inc()
	m.acceptLatency.WithLabelValues(listener).Observe(latency.Seconds())
}

// Rejected counts a refusal of the SMTP listeners; reason is a short machine-readable key
// such as "relay_denied" or "connection_limit".
func (m *Metrics) Rejected(reason string) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(reason).Inc()
}

// Recipient counts a delivery attempt of one recipient by outcome ("delivered", "deferred",
// "bounced"); latency, since the message was queued, is observed for "delivered" only.
func (m *Metrics) Recipient(outcome string, latency time.Duration) {
	if m == nil {
		return
	}
	m.recipients.WithLabelValues(outcome).Inc()
	if outcome == "delivered" {
		m.deliveryLatency.WithLabelValues().Observe(latency.Seconds())
	}
}

// GaugeFunc adds a gauge computed by f at each scrape, with constant labels (nil: none), e.g.
// mssante_certificate_expiry_seconds with {name: "server"}. It fails when the series is
// already there, its name or labels are invalid, or help is empty (every series says what
// it measures in its HELP line).
func (m *Metrics) GaugeFunc(name, help string, labels map[string]string, f func() float64) error {
	if m == nil {
		return nil
	}
	if strings.TrimSpace(help) == "" {
		return errors.New("metrics: " + name + ": empty help")
	}
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f))
}

// Register adds a collector of series computed at scrape time whose labels change as the node
// runs (the CRLs held, by CA, for example). It fails when a series is already there.
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c)
}

// Counter returns the value of a counter series written as in the exposition, e.g.
// `mssante_messages_accepted_total{listener="relay"}` (0 when absent), for tests and tools.
func (m *Metrics) Counter(series string) float64 {
	if m == nil {
		return 0
	}
	name, labels, _ := strings.Cut(series, "{")
	mfs, err := m.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if mt.GetCounter() != nil && labelSet(mt.GetLabel()) == strings.TrimSuffix(labels, "}") {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// labelSet writes labels as the exposition does between braces, sorted by name.
func labelSet(labels []*dto.LabelPair) string {
	parts := make([]string, len(labels))
	for i, l := range labels {
		v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(l.GetValue())
		parts[i] = l.GetName() + `="` + v + `"`
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// ServeHTTP serves the exposition (mount it on /metrics).
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m == nil {
		http.NotFound(w, r)
		return
	}
	m.handler.ServeHTTP(w, r)
}
