package publication_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/annuaire/annuairetest"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/metrics"
	"github.com/mssante-go/sdk/transport/publication"
)

func line(e annuaire.Entry) string {
	f := e.Fields()
	return strings.Join(f[:], "|") + "\n"
}

func orgEntry(addr, finess string) annuaire.Entry {
	return annuaire.Entry{Address: addr, Type: annuaire.ORG, Structure: annuaire.Structure{IDType: "FINESS", ID: "1" + finess, Name: "STRUCTURE"}}
}

type fixture struct {
	st   *mailbox.SQLite
	x    *annuaire.Extraction
	api  *annuairetest.WriteAPI
	pub  *annuaire.Publisher
	alog *audit.Log
	dir  string
	opts *annuaire.ReconcileOptions
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{dir: t.TempDir()}
	var err error
	if f.st, err = mailbox.OpenSQLite(ctx, filepath.Join(f.dir, "mailbox"), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	add := func(b *mailbox.BAL) {
		if err := f.st.AddBAL(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := f.st.Journal(ctx, mailbox.PublishBAL, b.Address); err != nil {
			t.Fatal(err)
		}
	}
	add(&mailbox.BAL{Address: "structure@domain.mssante.fr", Type: mailbox.ORG, Owner: "123456789", Description: "BAL principale"})
	add(&mailbox.BAL{Address: "jm.dupont@domain.mssante.fr", Type: mailbox.PER, Owner: "10003456789"})
	add(&mailbox.BAL{Address: "jumeau@domain.mssante.fr", Type: mailbox.ORG, Owner: "999999999"})
	add(&mailbox.BAL{Address: "siret@domain.mssante.fr", Type: mailbox.ORG, Owner: "12345678900011"})
	add(&mailbox.BAL{Address: "publie@domain.mssante.fr", Type: mailbox.ORG, Owner: "123456789"})
	// ancien@ was ours: created, then removed (its withdrawal journaled).
	add(&mailbox.BAL{Address: "ancien@domain.mssante.fr", Type: mailbox.ORG, Owner: "123456789"})
	if err := f.st.Journal(ctx, mailbox.WithdrawBAL, "ancien@domain.mssante.fr"); err != nil {
		t.Fatal(err)
	}
	if err := f.st.RemoveBAL(ctx, "ancien@domain.mssante.fr"); err != nil {
		t.Fatal(err)
	}
	text := annuaire.HeaderLine() + "\n" + line(orgEntry("publie@domain.mssante.fr", "123456789")) +
		line(orgEntry("ancien@domain.mssante.fr", "123456789")) + line(orgEntry("voisin@domain.mssante.fr", "123456789"))
	if f.x, err = annuaire.Load(strings.NewReader(text), nil); err != nil {
		t.Fatal(err)
	}
	f.api = annuairetest.NewWriteAPI("k")
	srv := httptest.NewTLSServer(f.api)
	t.Cleanup(srv.Close)
	if f.pub, err = annuaire.NewPublisher(&annuaire.PublisherOptions{BaseURL: srv.URL, APIKey: "k", HTTPClient: srv.Client(),
		Sleep: func(context.Context, time.Duration) error { return nil }}); err != nil {
		t.Fatal(err)
	}
	if f.alog, err = audit.Open(&audit.Options{Dir: filepath.Join(f.dir, "audit")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.alog.Close() })
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	f.opts = &annuaire.ReconcileOptions{ExtractionTime: now.Add(-7 * time.Hour), Now: func() time.Time { return now }}
	return f
}

func (f *fixture) plan(t *testing.T) *publication.Plan {
	t.Helper()
	ctx := context.Background()
	rec, ls, err := publication.Reconcile(ctx, f.st, f.x, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := publication.NewPlan(ctx, f.st, rec, ls)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func results(p *publication.Plan) map[string]string {
	m := map[string]string{}
	for _, a := range p.Actions {
		m[a.Address] = string(a.Op) + ": " + a.Result
	}
	return m
}

func TestPublishDryRunThenApply(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := f.plan(t)
	if err := publication.Run(ctx, f.st, f.pub, p, nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"structure@domain.mssante.fr": "insert: would insert",
		"jm.dupont@domain.mssante.fr": "insert: would insert",
		"jumeau@domain.mssante.fr":    "insert: would insert",
		"siret@domain.mssante.fr":     ": left alone",
		"ancien@domain.mssante.fr":    "delete: would delete",
		"voisin@domain.mssante.fr":    ": left alone",
	}
	if got := results(p); !mapsEqual(got, want) {
		t.Fatalf("dry run: %v", got)
	}
	if f.api.Patches() != 0 {
		t.Fatal("a dry run sent writes")
	}
	// Applied: the 412 fails its write only; the BAL of another stays published.
	err := publication.Run(ctx, f.st, f.pub, p, &publication.RunOptions{Apply: true, Audit: f.alog, Actor: "test"})
	if err == nil || errors.Is(err, publication.ErrStopped) {
		t.Fatalf("apply: %v", err)
	}
	got := results(p)
	if got["jumeau@domain.mssante.fr"] != "insert: several carriers match (412): target it by hand" || got["structure@domain.mssante.fr"] != "insert: done" ||
		got["jm.dupont@domain.mssante.fr"] != "insert: done" || got["ancien@domain.mssante.fr"] != "delete: done" {
		t.Fatalf("apply: %v", got)
	}
	if tel := f.api.Telecoms("org-123456789"); !slices.Equal(tel, []string{"structure@domain.mssante.fr", "voisin@domain.mssante.fr", "publie@domain.mssante.fr"}) {
		t.Fatalf("Organization telecoms %v", tel)
	}
	if tel := f.api.Telecoms("mss-practitioner-bal-per-dupont"); tel[0] != "jm.dupont@domain.mssante.fr" {
		t.Fatalf("Practitioner telecoms %v", tel)
	}
	// The journal keeps what is left to do: the 412 and the SIRET BAL.
	pending, _ := f.st.Pending(ctx)
	var left []string
	for _, j := range pending {
		left = append(left, j.Address)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"jumeau@domain.mssante.fr", "siret@domain.mssante.fr"}) {
		t.Fatalf("journal left %v", left)
	}
	// The next run, on the same extraction, does not write again what is done.
	for _, a := range f.plan(t).Actions {
		if a.Op != "" && a.Address != "jumeau@domain.mssante.fr" {
			t.Errorf("written again: %+v", a)
		}
	}
	f.alog.Close()
	b, _ := os.ReadFile(filepath.Join(f.dir, "audit", "audit.jsonl"))
	if n := strings.Count(string(b), `"event":"annuaire_`); n != 4 || !strings.Contains(string(b), `"bal":"ancien@domain.mssante.fr"`) {
		t.Fatalf("%d audit records: %s", n, b)
	}
}

func TestPublishStopsWhenRateLimited(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := f.plan(t)
	f.api.RateLimit(100, "1")
	err := publication.Run(ctx, f.st, f.pub, p, &publication.RunOptions{Apply: true})
	if !errors.Is(err, publication.ErrStopped) || !errors.Is(err, annuaire.ErrRateLimited) {
		t.Fatalf("rate limited: %v", err)
	}
	if got := results(p); got["ancien@domain.mssante.fr"] != "delete: rate limited (429)" || got["structure@domain.mssante.fr"] != "insert: not sent: run stopped" {
		t.Fatalf("results %v", got)
	}
	if pending, _ := f.st.Pending(ctx); len(pending) != 5 {
		t.Fatalf("journal: %d entries left, want 5 (publie@ is published already, the creation of ancien@ superseded)", len(pending))
	}
}

func TestPublishNeverWithdrawsFromAnOldExtraction(t *testing.T) {
	f := newFixture(t)
	f.opts.ExtractionTime = f.opts.ExtractionTime.AddDate(0, 0, -2)
	p := f.plan(t)
	for _, a := range p.Actions {
		if a.Op == publication.OpDelete && a.Finding != nil {
			t.Fatalf("withdrawal concluded from an old extraction: %+v", a)
		}
	}
}

func TestReconcileMetrics(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	rec, _, err := publication.Reconcile(ctx, f.st, f.x, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	if err := publication.RegisterMetrics(m, func() *annuaire.Reconciliation { return rec }, func() *annuaire.Extraction { return f.x }); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, s := range []string{`mssante_annuaire_reconcile_bals{status="missing"} 4`, `mssante_annuaire_reconcile_bals{status="stale"} 2`,
		`mssante_annuaire_reconcile_bals{status="ok"} 1`, "mssante_annuaire_extraction_skipped_lines 0"} {
		if !strings.Contains(body, s) {
			t.Errorf("no %s in\n%s", s, body)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A scrape shows one reconciliation: its verdict counts add up to that reconciliation's BALs
// even while the node replaces it with the next one.
func TestReconcileMetricsOneReconciliationPerScrape(t *testing.T) {
	a := &annuaire.Reconciliation{Counts: map[annuaire.Status]int{annuaire.StatusOK: 3}}
	b := &annuaire.Reconciliation{Counts: map[annuaire.Status]int{annuaire.StatusMissing: 2, annuaire.StatusUnchecked: 1}}
	var last atomic.Pointer[annuaire.Reconciliation]
	last.Store(a)
	m := metrics.New()
	if err := publication.RegisterMetrics(m, last.Load, nil); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			last.Store([]*annuaire.Reconciliation{a, b}[i%2])
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 300 {
		w := httptest.NewRecorder()
		m.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		sum := 0.0
		for _, l := range strings.Split(w.Body.String(), "\n") {
			if v, ok := strings.CutPrefix(l, "mssante_annuaire_reconcile_bals{"); ok {
				_, n, _ := strings.Cut(v, "} ")
				f, err := strconv.ParseFloat(n, 64)
				if err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				sum += f
			}
		}
		if sum != 3 {
			t.Fatalf("one scrape counts %v BALs, not 3: it mixes two reconciliations:\n%s", sum, annuaireLines(w.Body.String()))
		}
	}
}

func annuaireLines(exposition string) string {
	var out []string
	for _, l := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(l, "mssante_annuaire_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
