package psc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mssante-go/sdk/transport/psc"
)

func FuzzSASLResponse(f *testing.F) {
	f.Add([]byte("user=a@b.fr\x01auth=Bearer abc\x01\x01"))
	f.Add([]byte("n,a=a@b.fr,\x01host=x\x01port=993\x01auth=Bearer abc\x01\x01"))
	f.Add([]byte("n,,\x01\x01"))
	f.Add([]byte("y,a==3D=2C,\x01auth=Bearer a\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) (string, string, error){psc.ParseXOAUTH2, psc.ParseOAUTHBEARER} {
			_, tok, err := parse(b)
			if err != nil && !errors.Is(err, psc.ErrMalformed) {
				t.Fatalf("unnamed error %v", err)
			}
			if err == nil && tok == "" {
				t.Fatal("empty token accepted")
			}
		}
		for _, mech := range []string{psc.XOAUTH2, psc.OAUTHBEARER} {
			s := psc.NewServer(mech, func(string, string) error { return psc.ErrInvalidToken }, nil)
			for range 3 {
				if _, done, _ := s.Next(b); done {
					break
				}
			}
		}
	})
}

// FuzzTokenParse feeds arbitrary tokens to the verifier: never a panic, never an accept. The
// key fetch goes to an address that refuses at once, so the fuzzer needs no network.
func FuzzTokenParse(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJleHAiOjF9.c2ln")
	f.Add("a.b.c.d.e")
	f.Add("")
	v, err := psc.New(&psc.Options{Issuer: "https://127.0.0.1:1/realm", ClientIDs: []string{"c"},
		Now: func() time.Time { return time.Unix(1_800_000_000, 0) }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(context.Background(), tok)
		if err == nil || id != nil {
			t.Fatalf("accepted %q", tok)
		}
		if !errors.Is(err, psc.ErrInvalidToken) && !errors.Is(err, psc.ErrUnavailable) {
			t.Fatalf("unnamed error %v", err)
		}
	})
}
