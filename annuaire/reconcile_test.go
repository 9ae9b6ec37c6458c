package annuaire_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/annuaire"
)

func line(e annuaire.Entry) string {
	f := e.Fields()
	return strings.Join(f[:], "|") + "\n"
}

func org(addr, structure, service string) annuaire.Entry {
	return annuaire.Entry{Address: addr, Type: annuaire.ORG,
		Structure: annuaire.Structure{IDType: "FINESS", ID: structure, Name: "CH DE DAX", Service: service}}
}

func per(addr, rpps, structure string) annuaire.Entry {
	return annuaire.Entry{Address: addr, Type: annuaire.PER,
		Person:    annuaire.Person{NationalID: "8" + rpps, IDType: "RPPS", ID: rpps, LastName: "LEFÈVRE", FirstName: "Hélène"},
		Structure: annuaire.Structure{IDType: "FINESS", ID: structure}}
}

// reconcileFixture is a national extraction and a registry that covers every verdict.
func reconcileFixture(t *testing.T, text string) *annuaire.Extraction {
	t.Helper()
	x, err := annuaire.Load(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

var (
	paris, _  = time.LoadLocation("Europe/Paris")
	today     = time.Date(2026, 12, 7, 1, 30, 0, 0, paris)
	reconText = annuaire.HeaderLine() + "\n" +
		line(org("cardio@ch-dax.mssante.fr", "1400780284", "Cardiologie")) +
		line(per("helene.lefevre@ch-dax.mssante.fr", "10003456786", "1400780284")) +
		line(org("urgences@ch-dax.mssante.fr", "1400780292", "Urgences")) +
		line(per("jean@ch-dax.mssante.fr", "10003456794", "1400780284")) +
		line(org("ancien@ch-dax.mssante.fr", "1400780284", "Ancien service")) +
		line(org("autre@ch-dax.mssante.fr", "1400780284", "Pas à nous")) +
		line(org("autre@ch-dax.mssante.fr", "1400780284", "Pas à nous, un autre service")) +
		line(org("suspendu@ch-dax.mssante.fr", "1400780284", "Suspendu")) +
		line(org("rouge@ch-dax.mssante.fr", "1400780284", "Rouge publié")) +
		line(org("voisin@autre-ch.mssante.fr", "1400000001", "Un autre domaine"))
	reconLocal = []annuaire.Local{
		{Address: "cardio@ch-dax.mssante.fr", Type: annuaire.ORG, StructureID: "400780284"},
		{Address: "Helene.Lefevre@ch-dax.mssante.fr", Type: annuaire.PER, Owner: "10003456786", StructureID: "1400780284"},
		{Address: "urgences@ch-dax.mssante.fr", Type: annuaire.ORG, StructureID: "400780284"},             // structure differs
		{Address: "jean@ch-dax.mssante.fr", Type: annuaire.PER, Owner: "810003456786"},                    // owner differs
		{Address: "nouveau@ch-dax.mssante.fr", Type: annuaire.ORG, StructureID: "400780284"},              // missing
		{Address: "suspendu@ch-dax.mssante.fr", Type: annuaire.ORG, Suspended: true},                      // stale
		{Address: "secret@ch-dax.mssante.fr", Type: annuaire.PER, Owner: "10003456802", ListeRouge: true}, // unlisted
		{Address: "rouge@ch-dax.mssante.fr", Type: annuaire.ORG, ListeRouge: true},                        // published despite
		{Address: "dpi@ch-dax.mssante.fr", Type: annuaire.APP},                                            // not in the file
	}
)

func TestReconcileExtraction(t *testing.T) {
	x := reconcileFixture(t, reconText)
	owned := func(a string) bool { return a == "ancien@ch-dax.mssante.fr" }
	rec, err := annuaire.Reconcile(context.Background(), reconLocal, x, &annuaire.ReconcileOptions{
		ExtractionTime: today, Now: func() time.Time { return today.Add(8 * time.Hour) }, Owned: owned})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range rec.Findings {
		got[f.Address] = string(f.Status) + " " + strings.Join(f.Differences, ",")
		if f.Published != nil && f.Published.Address != f.Address {
			t.Errorf("%s: the published entry of %s", f.Address, f.Published.Address)
		}
		if f.Status == annuaire.StatusStale && f.Owned != (f.Address != "autre@ch-dax.mssante.fr") {
			t.Errorf("%s: owned %v", f.Address, f.Owned)
		}
	}
	want := map[string]string{
		"cardio@ch-dax.mssante.fr":         "ok ",
		"helene.lefevre@ch-dax.mssante.fr": "ok ",
		"urgences@ch-dax.mssante.fr":       "different structure",
		"jean@ch-dax.mssante.fr":           "different owner",
		"nouveau@ch-dax.mssante.fr":        "missing ",
		"suspendu@ch-dax.mssante.fr":       "stale ",
		"ancien@ch-dax.mssante.fr":         "stale ",
		"autre@ch-dax.mssante.fr":          "stale ",
		"secret@ch-dax.mssante.fr":         "unlisted ",
		"rouge@ch-dax.mssante.fr":          "different listeRouge",
		"dpi@ch-dax.mssante.fr":            "unchecked ",
	}
	for a, w := range want {
		if got[a] != w {
			t.Errorf("%s: %q, want %q", a, got[a], w)
		}
	}
	if len(got) != len(want) || !rec.StaleChecked {
		t.Errorf("findings %v, stale checked %v", got, rec.StaleChecked)
	}
	if rec.Counts[annuaire.StatusStale] != 3 || rec.Counts[annuaire.StatusOK] != 2 || rec.Counts[annuaire.StatusDifferent] != 3 {
		t.Errorf("counts %v", rec.Counts)
	}
	// The report meant for others has no liste rouge BAL, nor any detail.
	shared := rec.ForOthers()
	b, _ := json.Marshal(shared)
	for _, a := range []string{"secret@", "rouge@", "10003456802", "LEFÈVRE"} {
		if strings.Contains(string(b), a) {
			t.Errorf("shared report exposes %s: %s", a, b)
		}
	}
	if shared.Counts[annuaire.StatusUnlisted] != 0 || shared.Counts[annuaire.StatusDifferent] != 2 || !shared.Shared {
		t.Errorf("shared counts %v", shared.Counts)
	}
}

func TestReconcileNeverStaleFromAnOldOrPartialFile(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		at         time.Time
		note       string
	}{
		{"yesterday", reconText, today.AddDate(0, 0, -1), "not of today"},
		{"unknown day", reconText, time.Time{}, "unknown"},
		{"cut after a whole line", strings.TrimSuffix(reconText, "\n"), today, "partial"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := reconcileFixture(t, tt.text)
			rec, err := annuaire.Reconcile(context.Background(), reconLocal, x, &annuaire.ReconcileOptions{
				ExtractionTime: tt.at, Now: func() time.Time { return today.Add(time.Hour) }})
			if err != nil {
				t.Fatal(err)
			}
			if rec.StaleChecked || !strings.Contains(rec.StaleNote, tt.note) || rec.Counts[annuaire.StatusStale] != 0 {
				t.Fatalf("stale checked %v (%q), counts %v", rec.StaleChecked, rec.StaleNote, rec.Counts)
			}
			if rec.Counts[annuaire.StatusMissing] != 1 || rec.Counts[annuaire.StatusOK] != 2 {
				t.Fatalf("counts %v", rec.Counts)
			}
		})
	}
}
