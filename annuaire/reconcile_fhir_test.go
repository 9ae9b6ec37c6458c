package annuaire

import (
	"context"
	"net/http"
	"testing"
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
