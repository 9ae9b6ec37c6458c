package whitelist

import (
	"errors"
	"testing"
	"time"
)

func TestNormalizeDomain(t *testing.T) {
	cases := []struct{ in, want string }{
		{"adsea29.mssante.fr", "adsea29.mssante.fr"},
		{"ADSEA29.MSSante.FR.", "adsea29.mssante.fr"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"MÜNCHEN.de", "xn--mnchen-3ya.de"},
		{"école.mssante.fr", "xn--cole-9oa.mssante.fr"},
		{"xn--cole-9oa.mssante.fr", "xn--cole-9oa.mssante.fr"},
		// RFC 3492 §7.1 (A) Arabic (Egyptian) and (L) Japanese with ASCII.
		{"\u0644\u064A\u0647\u0645\u0627\u0628\u062A\u0643\u0644\u0645\u0648\u0634\u0639\u0631\u0628\u064A\u061F", "xn--egbpdaj6bu4bxfgehfvwxn"},
		{"3\u5E74B\u7D44\u91D1\u516B\u5148\u751F", "xn--3b-ww4c5e180e575a65lsy2b"},
		{"a_b.fr", "a_b.fr"},
	}
	for _, c := range cases {
		got, err := NormalizeDomain(c.in)
		if err != nil || got != c.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "a b.fr", "a/b", "\xff.fr", string(make([]byte, 64)) + ".fr", "a.fr..", "<x>.fr"} {
		if got, err := NormalizeDomain(bad); err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want an error", bad, got)
		}
	}
}

func TestListPolicy(t *testing.T) {
	l := NewList(testGenerated, testEntries())
	var nilList *List
	cases := []struct {
		p          Policy
		domain, dn string
		domainErr  error
		opErr      error
	}{
		{l, "adsea29.mssante.fr", "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR", nil, nil},
		{l, "Adsea29.mssante.fr.", "C=FR,ST=Haute-Garonne (31),O=GIP MIPIH,OU=318310021300028,CN=medimail-asip.mipih.fr", nil, nil},
		{l, "adsea29.mssante.fr", "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP-MIPIH,ST=Haute-Garonne (31),C=FR", nil, ErrOperatorNotListed},
		{l, "adsea29.mssante.fr", "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31)", nil, ErrOperatorNotListed},
		{l, "adsea29.mssante.fr", "not a DN", nil, ErrOperatorNotListed},
		{l, "mssante.fr", "CN=x", ErrDomainNotListed, ErrDomainNotListed},
		{l, "x.adsea29.mssante.fr", "CN=x", ErrDomainNotListed, ErrDomainNotListed},
		{l, "", "CN=x", ErrDomainNotListed, ErrDomainNotListed},
		{nilList, "adsea29.mssante.fr", "CN=x", ErrNoList, ErrNoList},
	}
	for _, c := range cases {
		if err := c.p.CheckDomain(c.domain); !errors.Is(err, c.domainErr) || (c.domainErr == nil) != (err == nil) {
			t.Errorf("CheckDomain(%q) = %v, want %v", c.domain, err, c.domainErr)
		}
		if err := c.p.CheckOperator(c.domain, c.dn); !errors.Is(err, c.opErr) || (c.opErr == nil) != (err == nil) {
			t.Errorf("CheckOperator(%q, %q) = %v, want %v", c.domain, c.dn, err, c.opErr)
		}
	}
	if err := l.CheckOperatorAny("c=FR,st=Haute-Garonne (31),o=GIP MIPIH,ou=318310021300028,cn=medimail-asip.mipih.fr"); err != nil {
		t.Errorf("CheckOperatorAny(listed) = %v", err)
	}
	if err := l.CheckOperatorAny("CN=unknown,C=FR"); !errors.Is(err, ErrOperatorNotListed) {
		t.Errorf("CheckOperatorAny(unknown) = %v", err)
	}
	if err := nilList.CheckOperatorAny("CN=x"); !errors.Is(err, ErrNoList) {
		t.Errorf("CheckOperatorAny on no list = %v", err)
	}
	// NewList copies: changing the caller's slices does not change the list.
	es := testEntries()
	l2 := NewList(time.Time{}, es)
	es[0].OperatorDNs[0] = "CN=changed"
	if got, _ := l2.Lookup("adsea29.mssante.fr"); got[0].OperatorDNs[0] == "CN=changed" {
		t.Fatal("NewList shares the caller's slices")
	}
}

func TestLookupAllocs(t *testing.T) {
	l := NewList(testGenerated, testEntries())
	if n := testing.AllocsPerRun(100, func() { l.Lookup("adsea29.mssante.fr") }); n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
}

func TestCanonicalDN(t *testing.T) {
	same := [][2]string{
		{"CN=a.fr,OU=1,O=X Y,ST=Paris (75),C=FR", "c=fr, st = paris (75) ,o=x y,OU=1 , cn=A.FR"},
		{"CN=a\\,b,C=FR", "C=FR,CN=a\\2Cb"},
		{"CN=a+OU=b", "OU=b,CN=a"},
		{"CN=x\\ ", "cn=x\\20"},
		{"O=été", "o=ÉTÉ"},
	}
	for _, p := range same {
		a, err1 := CanonicalDN(p[0])
		b, err2 := CanonicalDN(p[1])
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("CanonicalDN(%q) = %q %v, CanonicalDN(%q) = %q %v; want equal", p[0], a, err1, p[1], b, err2)
		}
		if again, err := CanonicalDN(a); err != nil || again != a {
			t.Errorf("CanonicalDN not idempotent on %q: %q %v", a, again, err)
		}
	}
	differ := [][2]string{
		{"O=X Y", "O=X  Y"},
		{"O=X-Y", "O=X Y"},
		{"CN=a,OU=b", "CN=a"},
		{"CN=a,CN=a", "CN=a"},
		{"ST=Paris", "S=Paris"},
		{"CN=x\\ ", "CN=x"},
		{"CN=a\\,b", "CN=a,CN=b"},
	}
	for _, p := range differ {
		a, _ := CanonicalDN(p[0])
		b, _ := CanonicalDN(p[1])
		if a == b {
			t.Errorf("CanonicalDN(%q) == CanonicalDN(%q) = %q", p[0], p[1], a)
		}
	}
	for _, bad := range []string{"", "CN", "CN=", "=x", "CN=a,", ",CN=a", "CN=a\\", "C N=a", "CN=\xff", "CN=a,,O=b"} {
		if got, err := CanonicalDN(bad); err == nil {
			t.Errorf("CanonicalDN(%q) = %q, want an error", bad, got)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	l := NewList(testGenerated, testEntries())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := l.Lookup("ch-test.mssante.fr"); !ok {
			b.Fatal("not found")
		}
	}
}

// BenchmarkLookupReal looks domains up in the real list (4,944 domains).
func BenchmarkLookupReal(b *testing.B) {
	l, err := Verify(readRealReader(b), realOpts(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := l.Lookup("mssante.apicrypt.org"); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkVerifyReal(b *testing.B) {
	data := readReal(b)
	opts := realOpts(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(bytesReaderOf(data), opts); err != nil {
			b.Fatal(err)
		}
	}
}
