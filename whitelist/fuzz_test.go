package whitelist

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzVerify feeds arbitrary documents to the verifier: it must return a list or one of the
// package's errors, never panic or hang, and never accept a document the test signer did not sign.
func FuzzVerify(f *testing.F) {
	s := newTestSigner(f)
	signed := signTestList(f, s)
	f.Add(signed)
	f.Add(bytes.Replace(signed, []byte("adsea29"), []byte("adsea28"), 1))
	f.Add(signed[:len(signed)/2])
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><ListeBlancheMSSante xmlns="` + Namespace + `">&a;</ListeBlancheMSSante>`))
	opts := s.opts()
	f.Fuzz(func(t *testing.T, doc []byte) {
		l, err := Verify(bytes.NewReader(doc), opts)
		if err == nil {
			// Only changes outside what the signature covers (KeyInfo spacing, say) may verify:
			// the list must then be the signed one.
			e, d := l.Len()
			got, _ := l.Lookup("ch-test.mssante.fr")
			if e != 5 || d != 4 || !l.Generated().Equal(testGenerated) || len(got) != 2 || got[0].Description != "CH <Test> & fils" {
				t.Fatalf("accepted a list the test signer did not sign")
			}
			return
		}
		for _, known := range []error{ErrFormat, ErrTooLarge, ErrUnsigned, ErrSignatureProfile, ErrDigestMismatch,
			ErrBadSignature, ErrSignerUntrusted, ErrSignerMismatch, ErrSignerExpired, ErrSignerRevoked} {
			if errors.Is(err, known) {
				return
			}
		}
		t.Fatalf("error outside the package's errors: %v", err)
	})
}

// FuzzCanonicalDN: never panics, and the canonical form is a fixed point.
func FuzzCanonicalDN(f *testing.F) {
	for _, s := range []string{"CN=a.fr,OU=1,O=X Y,ST=Paris (75),C=FR", "cn=a\\,b + ou = c", "CN=x\\20", "O=\\e9t\\c3\\a9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dn string) {
		c, err := CanonicalDN(dn)
		if err != nil {
			return
		}
		if again, err := CanonicalDN(c); err != nil || again != c {
			t.Fatalf("CanonicalDN(%q) = %q, then %q, %v", dn, c, again, err)
		}
	})
}

// FuzzNormalizeDomain: never panics, the result is a fixed point, and Lookup agrees with it.
func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{"adsea29.mssante.fr", "ÉCOLE.fr.", "xn--cole-9oa.fr", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		n, err := NormalizeDomain(d)
		if err != nil {
			return
		}
		if again, err := NormalizeDomain(n); err != nil || again != n {
			t.Fatalf("NormalizeDomain(%q) = %q, then %q, %v", d, n, again, err)
		}
		l := NewList(testGenerated, []Entry{{Domain: n, OperatorDNs: []string{"CN=x"}}})
		if _, ok := l.Lookup(d); !ok {
			t.Fatalf("Lookup(%q) misses the entry of %q", d, n)
		}
	})
}
