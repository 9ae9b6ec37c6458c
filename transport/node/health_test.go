package node_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// writeList signs a whitelist of the space's operators generated at gen.
func (s *space) writeList(t *testing.T, gen time.Time) {
	t.Helper()
	var entries []whitelist.Entry
	for _, o := range s.ops {
		entries = append(entries, whitelist.Entry{Domain: o.domain, OperatorDNs: []string{transport.SubjectDN(o.server.Cert)}})
	}
	doc, err := whitelist.Sign(whitelist.NewList(gen, entries), s.sign.Key, s.sign.Chain)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "whitelist.xml"), doc, 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /readyz says 503 with the reason while the liste blanche held is too old, 200 once a fresh
// one is reloaded; /healthz answers throughout; every series of /metrics has its HELP, the
// queue's start among them.
func TestHealthAndReadiness(t *testing.T) {
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	s.writeList(t, time.Now().Add(-whitelist.DefaultMaxAge-time.Hour))
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.lns["metrics"] = ml
	base := "http://" + ml.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, done := s.start(t, ctx, a, nil)
	select {
	case <-n.Listening():
	case <-time.After(20 * time.Second):
		t.Fatal("listeners never up")
	}
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get(t, base+"/readyz")
	if code != 503 || !strings.HasPrefix(body, "whitelist: the list held was generated ") || strings.Count(body, "\n") != 1 {
		t.Errorf("/readyz with an old list: %d %q", code, body)
	}
	s.writeList(t, time.Now())
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" || n.NotReady() != nil {
		t.Errorf("/readyz with a fresh list: %d %q %q", code, body, n.NotReady())
	}

	_, exp := get(t, base+"/metrics")
	help := map[string]string{}
	var families []string
	for _, line := range strings.Split(exp, "\n") {
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, text, _ := strings.Cut(rest, " ")
			help[name] = strings.TrimSpace(text)
		}
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(rest, " ")
			families = append(families, name)
		}
	}
	for _, f := range families {
		if help[f] == "" {
			t.Errorf("%s has no HELP", f)
		}
	}
	// The queue's start: nothing left to read in an empty spool.
	for _, f := range []string{"mssante_queue_loading", "mssante_queue_redelivery_loading"} {
		if help[f] == "" || !strings.Contains(exp, "\n"+f+" 0\n") {
			t.Errorf("%s missing or not 0", f)
		}
	}
	if help["mssante_whitelist_age_seconds"] == "" || len(families) < 20 {
		t.Errorf("%d families: %v", len(families), families)
	}
	// The CRL of the test space is fresh: its next update is ahead.
	var crlLeft float64
	for _, line := range strings.Split(exp, "\n") {
		if v, ok := strings.CutPrefix(line, "mssante_crl_next_update_seconds "); ok {
			fmt.Sscan(v, &crlLeft)
		}
	}
	if crlLeft <= 0 {
		t.Errorf("mssante_crl_next_update_seconds %v, want > 0:\n%s", crlLeft, exp)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
