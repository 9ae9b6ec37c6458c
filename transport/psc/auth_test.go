package psc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testpsc"
	"github.com/mssante-go/sdk/transport/psc"
)

type holdings map[string][]string

func (h holdings) BALsHeldBy(_ context.Context, id string) ([]string, error) {
	if id == "8down" {
		return nil, errors.New("store closed")
	}
	return h[id], nil
}

func TestPSCAuthenticateBearer(t *testing.T) {
	p := testpsc.New(t)
	a := &psc.Authenticator{Verifier: newVerifier(t, p, nil), Holdings: holdings{
		rpps:           {"dr.martin@hopital.mssante.fr"},
		"810000000002": {"dr.durand@hopital.mssante.fr", "cardio@hopital.mssante.fr"},
	}}
	ctx := context.Background()
	l, err := a.Authenticate(ctx, "", p.Token(t, rpps))
	if err != nil || l.BAL != "dr.martin@hopital.mssante.fr" || l.NationalID != rpps {
		t.Fatalf("one BAL, no authzid: %+v %v", l, err)
	}
	if d := time.Until(l.SessionEnd); d < 3*time.Hour || d > psc.PSCSessionLength {
		t.Fatalf("session end in %v, want the PSC session length", d)
	}
	l, err = a.Authenticate(ctx, "CARDIO@hopital.mssante.fr", p.Token(t, "810000000002"))
	if err != nil || l.BAL != "cardio@hopital.mssante.fr" {
		t.Fatalf("ORG BAL named: %+v %v", l, err)
	}
	for name, c := range map[string]struct{ authzid, id string }{
		"several BALs, none named": {"", "810000000002"},
		"another person's BAL":     {"dr.durand@hopital.mssante.fr", rpps},
		"no BAL held":              {"", "810000000009"},
	} {
		if _, err := a.Authenticate(ctx, c.authzid, p.Token(t, c.id)); !errors.Is(err, psc.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken (as a bad token)", name, err)
		}
	}
	if _, err := a.Authenticate(ctx, "", p.Token(t, "8down")); !errors.Is(err, psc.ErrUnavailable) {
		t.Errorf("store failure: %v, want ErrUnavailable", err)
	}
	a.EndWithToken = true
	l, err = a.Authenticate(ctx, "", p.Token(t, rpps))
	if err != nil || time.Until(l.SessionEnd) > 3*time.Minute {
		t.Fatalf("EndWithToken: %+v %v", l, err)
	}
}
