package mailbox

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestListingMigratesAnEarlierStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	if err := s.AddBAL(ctx, &BAL{Address: "cardio@ch-dax.mssante.fr", Type: ORG, Owner: "400780284"}); err != nil {
		t.Fatal(err)
	}
	// A store of the version before listings: no such tables.
	if _, err := s.db.ExecContext(ctx, `DROP TABLE bal_listing; DROP TABLE publication`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir, nil)
	ls, err := s.Listings(ctx)
	if err != nil || len(ls) != 1 {
		t.Fatalf("listings %v, %v", ls, err)
	}
	if l := ls[0]; l.Structure != "400780284" || l.ListeRouge || l.Suspended || l.Type != ORG {
		t.Fatalf("migrated listing %+v", l)
	}
}

func TestListingBalLifecycleJournal(t *testing.T) { forEachStore(t, testListingBalLifecycleJournal) }

func testListingBalLifecycleJournal(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil).(registry)
	addr := "helene.lefevre@ch-dax.mssante.fr"
	if err := s.AddBAL(ctx, &BAL{Address: addr, Type: PER, Owner: "10003456786"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Journal(ctx, PublishBAL, addr); err != nil {
		t.Fatal(err)
	}
	structure, yes := "1400780284", true
	if _, err := s.ChangeListing(ctx, addr, ListingChange{Structure: &structure}); err != nil {
		t.Fatal(err)
	}
	l, err := s.ChangeListing(ctx, addr, ListingChange{Suspended: &yes})
	if err != nil || !l.Suspended || l.Structure != structure {
		t.Fatalf("suspend: %+v %v", l, err)
	}
	if _, err := s.ChangeListing(ctx, "nobody@ch-dax.mssante.fr", ListingChange{Suspended: &yes}); !errors.Is(err, ErrNoBAL) {
		t.Fatalf("unknown BAL: %v", err)
	}
	if err := s.Journal(ctx, WithdrawBAL, addr); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveBAL(ctx, addr); err != nil {
		t.Fatal(err)
	}
	p, err := s.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []PublicationAction
	for _, e := range p {
		got = append(got, e.Action)
	}
	if len(p) != 4 || got[0] != PublishBAL || got[1] != UpdateBAL || got[2] != WithdrawBAL || got[3] != WithdrawBAL ||
		p[3].Owner != "10003456786" || p[3].Structure != structure {
		t.Fatalf("journal %v: %+v", got, p)
	}
	// The removed BAL stays owned (its withdrawal is ours to do); another is not.
	if ok, _ := s.Owned(ctx, addr); !ok {
		t.Error("a removed BAL is no longer owned")
	}
	if ok, _ := s.Owned(ctx, "autre@ch-dax.mssante.fr"); ok {
		t.Error("a BAL never served is owned")
	}
	// A BAL added again under the same address starts with a fresh listing.
	if err := s.AddBAL(ctx, &BAL{Address: addr, Type: PER}); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Listing(ctx, addr); l.Suspended || l.Structure != "" {
		t.Fatalf("listing survived the removal: %+v", l)
	}
	if err := s.Done(ctx, p[0].ID, p[1].ID); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Pending(ctx); len(p) != 2 {
		t.Fatalf("pending after Done: %d", len(p))
	}
	n := 0
	au, _ := s.Audit(ctx, time.Time{})
	for _, e := range au {
		if e.Event == "bal-update" || e.Event == "bal-withdraw" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d audit rows for the listing changes", n)
	}
}
