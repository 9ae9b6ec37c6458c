package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestExposition(t *testing.T) {
	m := New()
	m.Accepted("relay", 30*time.Millisecond)
	m.Accepted("relay", time.Second)
	m.Rejected(`relay_denied`)
	m.Rejected(`odd "reason"`)
	m.Recipient("delivered", 2*time.Second)
	m.Recipient("deferred", 0)
	if err := m.GaugeFunc("mssante_certificate_expiry_seconds", "h", map[string]string{"name": "server"}, func() float64 { return 9e7 }); err != nil {
		t.Fatal(err)
	}
	if err := m.GaugeFunc("mssante_queue_messages", "h", nil, func() float64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	if err := m.GaugeFunc("mssante_queue_messages", "h", nil, func() float64 { return 1 }); err == nil {
		t.Error("a second gauge of the same series was accepted")
	}
	out := scrape(t, m)
	for _, want := range []string{
		`mssante_messages_accepted_total{listener="relay"} 2`,
		`mssante_accept_latency_seconds_bucket{listener="relay",le="0.05"} 1`,
		`mssante_accept_latency_seconds_count{listener="relay"} 2`,
		`mssante_messages_rejected_total{reason="odd \"reason\""} 1`,
		`mssante_recipients_total{outcome="delivered"} 1`,
		`mssante_recipients_total{outcome="deferred"} 1`,
		`mssante_delivery_latency_seconds_bucket{le="2.5"} 1`,
		`mssante_delivery_latency_seconds_count 1`,
		`mssante_certificate_expiry_seconds{name="server"} 9e+07`,
		"mssante_queue_messages 0",
		"# TYPE mssante_messages_accepted_total counter",
		"go_goroutines ", "process_", // the runtime and process collectors
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q:\n%s", want, out)
		}
	}
	for series, want := range map[string]float64{
		`mssante_messages_accepted_total{listener="relay"}`:        2,
		`mssante_messages_accepted_total{listener="submission"}`:   0,
		`mssante_messages_rejected_total{reason="relay_denied"}`:   1,
		`mssante_messages_rejected_total{reason="odd \"reason\""}`: 1,
		`mssante_recipients_total{outcome="deferred"}`:             1,
		"mssante_queue_messages":                                   0, // a gauge, not a counter
	} {
		if got := m.Counter(series); got != want {
			t.Errorf("Counter(%s) = %v, want %v", series, got, want)
		}
	}
}

func TestNil(t *testing.T) {
	var m *Metrics
	m.Accepted("relay", time.Second)
	m.Rejected("x")
	m.Recipient("delivered", time.Second)
	if err := m.GaugeFunc("x", "h", nil, func() float64 { return 1 }); err != nil || m.Counter("x") != 0 {
		t.Fatal("a nil *Metrics recorded")
	}
}

func BenchmarkAccepted(b *testing.B) {
	m := New()
	for b.Loop() {
		m.Accepted("relay", time.Millisecond)
	}
}

// missingHelp returns the metric families of an exposition whose HELP line is missing or
// empty.
func missingHelp(exposition string) (families int, missing []string) {
	help := map[string]bool{}
	var typed []string
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, text, _ := strings.Cut(rest, " ")
			help[name] = strings.TrimSpace(text) != ""
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(rest, " ")
			typed = append(typed, name)
		}
	}
	for _, name := range typed {
		if !help[name] {
			missing = append(missing, name)
		}
	}
	return len(typed), missing
}

// Every metric family, ours and those of the runtime and process collectors, has a HELP
// line, and a gauge without one is refused.
func TestEveryMetricHasHelp(t *testing.T) {
	m := New()
	m.Accepted("relay", time.Millisecond)
	m.Rejected("relay_denied")
	m.Recipient("delivered", time.Second)
	if err := m.GaugeFunc("mssante_queue_messages", "Messages in the queue.", nil, func() float64 { return 0 }); err != nil {
		t.Fatal(err)
	}
	if err := m.GaugeFunc("mssante_helpless", " ", nil, func() float64 { return 0 }); err == nil {
		t.Error("a gauge without HELP was accepted")
	}
	n, missing := missingHelp(scrape(t, m))
	if n < 20 || len(missing) > 0 {
		t.Errorf("%d families, without HELP: %v", n, missing)
	}
	if _, missing := missingHelp("# HELP a \n# TYPE a counter\na 1\n# TYPE b gauge\nb 1\n"); len(missing) != 2 {
		t.Errorf("the check misses families without HELP: %v", missing)
	}
}
