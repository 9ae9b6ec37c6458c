package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestMembersOfORGBAL(t *testing.T) { forEachStore(t, testMembersOfORGBAL) }

func testMembersOfORGBAL(t *testing.T, open opener) {
	ctx := context.Background()
	s := open(t, nil).(registry)
	for _, b := range []*BAL{
		{Address: "jean.dupont@hopital.mssante.fr", Type: PER, Owner: "810000000001"},
		{Address: "paul.martin@hopital.mssante.fr", Type: PER, Owner: "10000000003"}, // RPPS without the 8
		{Address: "secretariat@hopital.mssante.fr", Type: ORG, Owner: "1010000001"},
		{Address: "dpi@hopital.mssante.fr", Type: APP, Owner: "1010000001", CertDN: "CN=dpi,O=CH DEV,C=FR"},
	} {
		if err := s.AddBAL(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddMember(ctx, "Secretariat@hopital.mssante.fr", "810000000001"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMember(ctx, "secretariat@hopital.mssante.fr", "810000000001"); err != nil {
		t.Fatalf("adding twice: %v", err)
	}
	held, err := s.BALsHeldBy(ctx, "810000000001")
	if err != nil || !slices.Equal(held, []string{"jean.dupont@hopital.mssante.fr", "secretariat@hopital.mssante.fr"}) {
		t.Fatalf("BALsHeldBy = %v, %v", held, err)
	}
	if held, _ := s.BALsHeldBy(ctx, "810000000003"); !slices.Equal(held, []string{"paul.martin@hopital.mssante.fr"}) {
		t.Fatalf("owner written as the bare RPPS: %v", held)
	}
	if held, _ := s.BALsHeldBy(ctx, "1010000001"); len(held) != 0 {
		t.Fatalf("a structure id holds %v, want nothing (ORG and APP BALs are not held by their owner)", held)
	}
	// Refusals.
	if err := s.AddMember(ctx, "jean.dupont@hopital.mssante.fr", "810000000002"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("member of a PER BAL: %v", err)
	}
	if err := s.AddMember(ctx, "dpi@hopital.mssante.fr", "810000000002"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("member of an APP BAL: %v", err)
	}
	if err := s.AddMember(ctx, "nobody@hopital.mssante.fr", "810000000002"); !errors.Is(err, ErrNoBAL) {
		t.Fatalf("member of no BAL: %v", err)
	}
	if err := s.AddMember(ctx, "secretariat@hopital.mssante.fr", "8100' OR 1=1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad national id: %v", err)
	}
	if err := s.RemoveMember(ctx, "secretariat@hopital.mssante.fr", "810000000009"); !errors.Is(err, ErrNotMember) {
		t.Fatalf("remove a non-member: %v", err)
	}
	ms, err := s.Members(ctx, "secretariat@hopital.mssante.fr")
	if err != nil || len(ms) != 1 || ms[0].NationalID != "810000000001" {
		t.Fatalf("Members = %v, %v", ms, err)
	}
	if err := s.RemoveMember(ctx, "secretariat@hopital.mssante.fr", "810000000001"); err != nil {
		t.Fatal(err)
	}
	if held, _ := s.BALsHeldBy(ctx, "810000000001"); len(held) != 1 {
		t.Fatalf("after removal: %v", held)
	}
	au, _ := s.Audit(ctx, time.Now().Add(-time.Hour))
	var events []string
	for _, e := range au {
		if e.BAL == "secretariat@hopital.mssante.fr" {
			events = append(events, e.Event)
		}
	}
	if !slices.Equal(events, []string{"bal-add", "member-add", "member-remove"}) {
		t.Fatalf("audit = %v", events)
	}
}

// TestMembersMigration opens a store whose index predates the members table.
func TestMembersMigration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	if err := s.AddBAL(ctx, &BAL{Address: "accueil@cabinet.mssante.fr", Type: ORG, Owner: "1010000002"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE bal_member`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s = openTest(t, dir, nil)
	if err := s.AddMember(ctx, "accueil@cabinet.mssante.fr", "810000000002"); err != nil {
		t.Fatalf("after reopening an old store: %v", err)
	}
}
