package annuaire

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestReconcileFHIR: the FHIR API is asked address by address; it cannot list a domain's BALs,
// so nothing is called stale but a suspended BAL it still publishes; an unreachable API is an
// error, never a verdict.
func TestReconcileFHIR(t *testing.T) {
	s, f := newFHIRServer(t)
	local := []Local{
		{Address: "cardiologie@ch-dax.mssante.fr", Type: ORG},
		{Address: "dpi-cardio@ch-dax.mssante.fr", Type: APP, Suspended: true},
		{Address: "absente@ch-dax.mssante.fr", Type: ORG},
	}
	rec, err := Reconcile(context.Background(), local, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Status{}
	for _, f := range rec.Findings {
		got[f.Address] = f.Status
	}
	if rec.StaleChecked || rec.StaleNote == "" || got["cardiologie@ch-dax.mssante.fr"] != StatusOK ||
		got["dpi-cardio@ch-dax.mssante.fr"] != StatusStale || got["absente@ch-dax.mssante.fr"] != StatusMissing {
		t.Fatalf("findings %v, stale checked %v", got, rec.StaleChecked)
	}
	s.mu.Lock()
	s.fail = func(w http.ResponseWriter, r *http.Request) bool { w.WriteHeader(http.StatusBadGateway); return true }
	s.mu.Unlock()
	if _, err := Reconcile(context.Background(), local, f, nil); err == nil {
		t.Fatal("an unreachable API gave a verdict")
	}
}

// TestReconcileRefresher: a Refresher is reconciled through the extraction in use, with its
// generation time; before any load it is an error, never an empty verdict.
func TestReconcileRefresher(t *testing.T) {
	p := newPublisher(t)
	r, err := NewRefresher(t.TempDir(), &FetchOptions{URL: p.URL + "/x", HTTPClient: p.Client()})
	if err != nil {
		t.Fatal(err)
	}
	local := []Local{{Address: "cardio@ch-dax.mssante.fr", Type: ORG}}
	if _, err := Reconcile(context.Background(), local, r, nil); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("before a load: %v", err)
	}
	p.publish(t, "Extraction_Correspondance_MSSante_202611270130.zip", sample)
	if _, err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, at := r.Current()
	for _, tt := range []struct {
		now   time.Time
		stale bool
	}{{at.Add(time.Hour), true}, {at.AddDate(0, 0, 1), false}} {
		rec, err := Reconcile(context.Background(), local, r, &ReconcileOptions{Now: func() time.Time { return tt.now }})
		if err != nil || rec.StaleChecked != tt.stale || rec.Counts[StatusOK] != 1 {
			t.Fatalf("at %v: stale checked %v (%s), %v, %v", tt.now, rec.StaleChecked, rec.StaleNote, rec.Counts, err)
		}
	}
}
