package revocation

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descNext = prometheus.NewDesc("mssante_crl_next_update_timestamp_seconds",
		"nextUpdate of the CRL in use, by CA (Unix time; 0 when the CRL has none).", []string{"ca"}, nil)
	descThis = prometheus.NewDesc("mssante_crl_this_update_timestamp_seconds",
		"thisUpdate of the CRL in use, by CA (Unix time).", []string{"ca"}, nil)
	descFetch = prometheus.NewDesc("mssante_crl_last_fetch_timestamp_seconds",
		"Last successful fetch of a CRL address (200 or 304), Unix time (0: never).", []string{"url"}, nil)
	descFail = prometheus.NewDesc("mssante_crl_last_error_timestamp_seconds",
		"Last failed fetch of a CRL address, Unix time (0: never).", []string{"url"}, nil)
	descErrs = prometheus.NewDesc("mssante_crl_fetch_errors_total",
		"CRL fetches refused, by address and reason.", []string{"url", "reason"}, nil)
)

// Describe implements prometheus.Collector.
func (f *Fetcher) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNext, descThis, descFetch, descFail, descErrs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (f *Fetcher) Collect(ch chan<- prometheus.Metric) {
	for _, h := range f.Held() {
		ch <- prometheus.MustNewConstMetric(descNext, prometheus.GaugeValue, unix(h.NextUpdate), h.CA)
		ch <- prometheus.MustNewConstMetric(descThis, prometheus.GaugeValue, unix(h.ThisUpdate), h.CA)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for u, s := range f.sources {
		ru := redact(u)
		ch <- prometheus.MustNewConstMetric(descFetch, prometheus.GaugeValue, unix(s.lastFetch), ru)
		ch <- prometheus.MustNewConstMetric(descFail, prometheus.GaugeValue, unix(s.lastFail), ru)
		for r, n := range s.errs {
			ch <- prometheus.MustNewConstMetric(descErrs, prometheus.CounterValue, n, ru, r)
		}
	}
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
