package whitelist

import (
	"errors"
	"testing"
	"time"
)

// TestNilList checks that every method of a nil *List behaves as an empty list that is not
// held: lookups find nothing, checks fail with ErrNoList, nothing panics.
func TestNilList(t *testing.T) {
	var l *List
	const dn = "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
	cases := []struct {
		name string
		call func() error
	}{
		{"Generated", func() error {
			if g := l.Generated(); !g.Equal(time.Time{}) {
				return errors.New("non-zero generation date")
			}
			return nil
		}},
		{"Len", func() error {
			if e, d := l.Len(); e != 0 || d != 0 {
				return errors.New("non-zero length")
			}
			return nil
		}},
		{"Lookup", func() error {
			if es, ok := l.Lookup("adsea29.mssante.fr"); ok || es != nil {
				return errors.New("found an entry")
			}
			return nil
		}},
		{"Lookup invalid name", func() error {
			if _, ok := l.Lookup("A..B"); ok {
				return errors.New("found an entry")
			}
			return nil
		}},
		{"Domains", func() error {
			n := 0
			l.Domains(func(string, []Entry) bool { n++; return true })
			if n != 0 {
				return errors.New("visited a domain")
			}
			return nil
		}},
		{"CheckDomain", func() error { return wantNoList(l.CheckDomain("adsea29.mssante.fr")) }},
		{"CheckOperator", func() error { return wantNoList(l.CheckOperator("adsea29.mssante.fr", dn)) }},
		{"CheckOperatorAny", func() error { return wantNoList(l.CheckOperatorAny(dn)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The same calls on a real list pass or find, so the checks above can fail.
	listed := NewList(testGenerated, testEntries())
	if _, ok := listed.Lookup("adsea29.mssante.fr"); !ok {
		t.Fatal("Lookup on the test list found nothing")
	}
	if err := listed.CheckOperatorAny(dn); err != nil {
		t.Fatalf("CheckOperatorAny on the test list: %v", err)
	}
}

func wantNoList(err error) error {
	if !errors.Is(err, ErrNoList) {
		return errors.New("got " + errString(err) + ", want ErrNoList")
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
