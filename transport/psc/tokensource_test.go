package psc_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testpsc"
	"github.com/mssante-go/sdk/transport/psc"
)

// TestPSCTokenSourceRefresh: tokens are reused until their expiry (less the margin), then
// renewed with the rotated refresh token; when the session ends, ErrSessionEnded, for good;
// a provider that is down is a temporary error.
func TestPSCTokenSourceRefresh(t *testing.T) {
	p := testpsc.New(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	ts, err := psc.NewTokenSource(&psc.TokenSourceOptions{TokenURL: p.TokenURL(), ClientID: testpsc.ClientID,
		RefreshToken: p.Login(rpps), HTTPClient: p.HTTPClient(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v := newVerifier(t, p, nil)
	t1, err := ts.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.Verify(ctx, t1); err != nil || id.NationalID != rpps {
		t.Fatalf("token from the source: %+v %v", id, err)
	}
	if t2, _ := ts.Token(ctx); t2 != t1 {
		t.Fatal("token renewed before its expiry")
	}
	now.Add(int64(110 * time.Second))   // within the 20 s margin of the 120 s token
	time.Sleep(1100 * time.Millisecond) // a new iat, so a new token
	t3, err := ts.Token(ctx)
	if err != nil || t3 == t1 {
		t.Fatalf("token not renewed near its expiry: %v", err)
	}
	p.SetDown(true)
	now.Add(int64(110 * time.Second))
	if _, err := ts.Token(ctx); err == nil || errors.Is(err, psc.ErrSessionEnded) {
		t.Fatalf("provider down: %v, want a temporary error", err)
	}
	p.SetDown(false)
	p.EndSessions()
	if _, err := ts.Token(ctx); !errors.Is(err, psc.ErrSessionEnded) {
		t.Fatalf("session ended: %v", err)
	}
	if _, err := ts.Token(ctx); !errors.Is(err, psc.ErrSessionEnded) {
		t.Fatalf("after the end: %v", err)
	}
}
