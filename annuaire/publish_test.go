package annuaire_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/annuaire/annuairetest"
)

func newWriteAPI(t *testing.T) (*annuairetest.WriteAPI, *annuaire.Publisher, *[]time.Duration) {
	t.Helper()
	api := annuairetest.NewWriteAPI("test-key")
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	var slept []time.Duration
	p, err := annuaire.NewPublisher(&annuaire.PublisherOptions{BaseURL: srv.URL + "/fhir/mss", APIKey: "test-key",
		HTTPClient: srv.Client(), Sleep: func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return api, p, &slept
}

func TestPublishTelecomOperations(t *testing.T) {
	api, p, _ := newWriteAPI(t)
	ctx := context.Background()
	dupont := annuaire.Target{RPPS: "10003456789"} // the idNat 810003456789 of the IG's example
	if err := p.Insert(ctx, dupont, &annuaire.Mailbox{Address: "JM.Dupont@ch-dax.mssante.fr", Type: annuaire.PER, Rank: 1}); err != nil {
		t.Fatal(err)
	}
	want := []string{"jm.dupont@ch-dax.mssante.fr", "jean-marie.dupont@infirmier.mssante.fr"}
	if got := api.Telecoms("mss-practitioner-bal-per-dupont"); !slices.Equal(got, want) {
		t.Fatalf("after insert: %v", got)
	}
	if err := p.Replace(ctx, dupont, &annuaire.Mailbox{Address: "jm.dupont@ch-dax.mssante.fr", Type: annuaire.PER, ListeRouge: true}); err != nil {
		t.Fatal(err)
	}
	if got := api.Telecoms("mss-practitioner-bal-per-dupont"); got[0] != "jm.dupont@ch-dax.mssante.fr (liste rouge)" {
		t.Fatalf("after replace: %v", got)
	}
	if err := p.Delete(ctx, dupont, "jm.dupont@ch-dax.mssante.fr"); err != nil {
		t.Fatal(err)
	}
	if got := api.Telecoms("mss-practitioner-bal-per-dupont"); !slices.Equal(got, want[1:]) {
		t.Fatalf("after delete: %v", got)
	}
	// An ORG BAL on the Organization of the IG's conditional PATCH example, by FINESS with its
	// national prefix.
	org := &annuaire.Mailbox{Address: "structure@domain.mssante.fr", Type: annuaire.ORG, Description: "BAL principale de la structure", Service: "Accueil"}
	if err := p.Insert(ctx, annuaire.Target{FINESS: "1123456789"}, org); err != nil {
		t.Fatal(err)
	}
	if got := api.Telecoms("org-123456789"); !slices.Equal(got, []string{"structure@domain.mssante.fr", "ancien@domain.mssante.fr", "voisin@domain.mssante.fr", "publie@domain.mssante.fr"}) {
		t.Fatalf("ORG insert: %v", got)
	}
}

func TestPublishRefusals(t *testing.T) {
	api, p, slept := newWriteAPI(t)
	ctx := context.Background()
	m := &annuaire.Mailbox{Address: "a@domain.mssante.fr", Type: annuaire.ORG}
	if err := p.Insert(ctx, annuaire.Target{FINESS: "999999999"}, m); !errors.Is(err, annuaire.ErrAmbiguousTarget) {
		t.Errorf("two Organizations: %v", err)
	}
	if err := p.Insert(ctx, annuaire.Target{FINESS: "111111111"}, m); !errors.Is(err, annuaire.ErrNoTarget) {
		t.Errorf("no Organization: %v", err)
	}
	for _, tt := range []struct {
		name string
		t    annuaire.Target
		m    *annuaire.Mailbox
	}{
		{"two identifiers", annuaire.Target{RPPS: "10003456789", FINESS: "123456789"}, m},
		{"no identifier", annuaire.Target{}, m},
		{"bad RPPS", annuaire.Target{RPPS: "12"}, m},
		{"situation without system", annuaire.Target{Situation: "S1"}, m},
		{"quote in the address", annuaire.Target{FINESS: "123456789"}, &annuaire.Mailbox{Address: "a')or(true@x.fr", Type: annuaire.ORG}},
		{"bad type", annuaire.Target{FINESS: "123456789"}, &annuaire.Mailbox{Address: "a@x.fr", Type: "XXX"}},
	} {
		if err := p.Insert(ctx, tt.t, tt.m); !errors.Is(err, annuaire.ErrInvalidPublication) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	// Rate limited twice, then served: the client waits the Retry-After each time.
	api.RateLimit(2, "7")
	if err := p.Insert(ctx, annuaire.Target{FINESS: "123456789"}, m); err != nil {
		t.Fatalf("after 429: %v", err)
	}
	if len(*slept) != 2 || (*slept)[0] != 7*time.Second {
		t.Fatalf("slept %v", *slept)
	}
	api.RateLimit(10, "1")
	if err := p.Delete(ctx, annuaire.Target{FINESS: "123456789"}, m.Address); !errors.Is(err, annuaire.ErrRateLimited) {
		t.Fatalf("still limited: %v", err)
	}
	api.RateLimit(0, "")
	bad, _ := annuaire.NewPublisher(&annuaire.PublisherOptions{BaseURL: "https://127.0.0.1:1/fhir", APIKey: "k", MaxRetries: -1})
	if err := bad.Delete(ctx, annuaire.Target{FINESS: "123456789"}, m.Address); err == nil {
		t.Fatal("unreachable API: no error")
	}
	if _, err := annuaire.NewPublisher(&annuaire.PublisherOptions{BaseURL: "http://api.example/fhir"}); !errors.Is(err, annuaire.ErrInvalidPublication) {
		t.Fatalf("plain http: %v", err)
	}
	if _, err := annuaire.NewPublisher(nil); !errors.Is(err, annuaire.ErrInvalidPublication) {
		t.Fatalf("no base URL: %v", err)
	}
}
