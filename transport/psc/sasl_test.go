package psc_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/transport/psc"
)

func TestPSCParseXOAUTH2(t *testing.T) {
	user, tok, err := psc.ParseXOAUTH2([]byte("user=dr.martin@hopital.mssante.fr\x01auth=Bearer abc.def-ghi\x01\x01"))
	if err != nil || user != "dr.martin@hopital.mssante.fr" || tok != "abc.def-ghi" {
		t.Fatalf("= %q %q %v", user, tok, err)
	}
	for _, bad := range []string{
		"", "user=a", "user=a\x01auth=Bearer x\x01", "auth=Bearer x\x01\x01", "user=a\x01auth=Basic x\x01\x01",
		"user=a\x01auth=Bearer \x01\x01", "user=a\x01auth=Bearer a b\x01\x01", "user=a\x01\x01auth=Bearer x\x01\x01",
		"user=a\x01user=b\x01auth=Bearer x\x01\x01", "user=a\x01auth=Bearer " + strings.Repeat("x", psc.MaxResponseBytes) + "\x01\x01",
	} {
		if _, _, err := psc.ParseXOAUTH2([]byte(bad)); !errors.Is(err, psc.ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", bad, err)
		}
	}
}

func TestPSCParseOAUTHBEARER(t *testing.T) {
	az, tok, err := psc.ParseOAUTHBEARER([]byte("n,a=secretariat=2Ccardio@hopital.mssante.fr,\x01host=imap.example\x01port=993\x01auth=Bearer xyz\x01\x01"))
	if err != nil || az != "secretariat,cardio@hopital.mssante.fr" || tok != "xyz" {
		t.Fatalf("= %q %q %v", az, tok, err)
	}
	if az, tok, err := psc.ParseOAUTHBEARER([]byte("n,,\x01auth=bearer xyz\x01\x01")); err != nil || az != "" || tok != "xyz" {
		t.Fatalf("no authzid: %q %q %v", az, tok, err)
	}
	for _, bad := range []string{
		"", "n,,", "p=tls-unique,,\x01auth=Bearer x\x01\x01", "n,b=x,\x01auth=Bearer x\x01\x01",
		"n,a=x=ZZ,\x01auth=Bearer x\x01\x01", "n,,auth=Bearer x\x01\x01", "n,,\x01host=x\x01\x01",
		"n,,\x01auth=Bearer x\x01", "n,,\x01=x\x01auth=Bearer x\x01\x01",
	} {
		if _, _, err := psc.ParseOAUTHBEARER([]byte(bad)); !errors.Is(err, psc.ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", bad, err)
		}
	}
}

// TestPSCSASLServer runs the exchange: accept, refusal after the error challenge, temporary
// failure and brake refusal at once, no initial response.
func TestPSCSASLServer(t *testing.T) {
	ok := func(az, tok string) error { return nil }
	refuse := func(az, tok string) error { return fmt.Errorf("%w: expired", psc.ErrInvalidToken) }
	down := func(az, tok string) error { return fmt.Errorf("%w: timeout", psc.ErrUnavailable) }
	ir := []byte("n,,\x01auth=Bearer xyz\x01\x01")

	s := psc.NewServer(psc.OAUTHBEARER, ok, nil)
	if ch, done, err := s.Next(ir); err != nil || !done || ch != nil {
		t.Fatalf("accept: %q %v %v", ch, done, err)
	}
	s = psc.NewServer(psc.OAUTHBEARER, refuse, nil)
	ch, done, err := s.Next(ir)
	if err != nil || done || !strings.Contains(string(ch), "invalid_token") {
		t.Fatalf("refusal, first step: %q %v %v", ch, done, err)
	}
	if _, done, err := s.Next([]byte{0x01}); !done || !errors.Is(err, psc.ErrInvalidToken) {
		t.Fatalf("refusal, second step: %v %v", done, err)
	}
	s = psc.NewServer(psc.XOAUTH2, down, nil)
	if _, done, err := s.Next([]byte("user=a@b.fr\x01auth=Bearer xyz\x01\x01")); !done || !errors.Is(err, psc.ErrUnavailable) {
		t.Fatalf("temporary: %v %v", done, err)
	}
	braked := func(az, tok string) error { return fmt.Errorf("%w: locked", psc.ErrThrottled) }
	s = psc.NewServer(psc.OAUTHBEARER, braked, nil)
	if ch, done, err := s.Next(ir); !done || ch != nil || !errors.Is(err, psc.ErrThrottled) {
		t.Fatalf("braked: %q %v %v", ch, done, err)
	}
	s = psc.NewServer(psc.XOAUTH2, ok, nil)
	if ch, done, err := s.Next(nil); err != nil || done || len(ch) != 0 {
		t.Fatalf("no initial response: %q %v %v", ch, done, err)
	}
	if _, done, err := s.Next([]byte("user=a@b.fr\x01auth=Bearer xyz\x01\x01")); err != nil || !done {
		t.Fatalf("after empty challenge: %v %v", done, err)
	}
	if psc.NewServer("PLAIN", ok, nil) != nil {
		t.Fatal("NewServer(PLAIN) is not nil")
	}
}
