package whitelist

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
)

// testSigner is a signer shaped like the ANS one, issued by the test PKI.
type testSigner struct {
	pki  *testpki.PKI
	leaf *testpki.Leaf
	dn   string
}

var (
	signerOnce sync.Once
	signerVal  *testSigner
	signerErr  error
)

func newTestSigner(t testing.TB) *testSigner {
	t.Helper()
	signerOnce.Do(func() {
		pki, err := testpki.New(&testpki.Options{})
		if err != nil {
			signerErr = err
			return
		}
		leaf, err := pki.Leaf(testpki.ProfileOrgSign, pki.Subject("alb.mssante.fr", nil), nil)
		if err != nil {
			signerErr = err
			return
		}
		signerVal = &testSigner{pki: pki, leaf: leaf, dn: leaf.Cert.Subject.String()}
	})
	if signerErr != nil {
		t.Fatal(signerErr)
	}
	return signerVal
}

func (s *testSigner) opts() *VerifyOptions {
	return &VerifyOptions{Roots: s.pki.Roots(), Signer: s.dn}
}

var testGenerated = time.Date(2025, 2, 28, 15, 42, 7, 0, time.UTC)

func testEntries() []Entry {
	mipih := "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
	upd := time.Date(2024, 6, 7, 10, 24, 42, 0, time.UTC)
	return []Entry{
		{Domain: "adsea29.mssante.fr", Description: "BREST LA SAUVEGARDE", OperatorDNs: []string{mipih},
			Responsable: "08 10  61 50 50, medimail.diffusion@mipih.fr", Support: "08 10  61 50 50, medimail.technique@mipih.fr", Updated: upd},
		{Domain: "ch-test.mssante.fr", Description: "CH <Test> & fils", OperatorDNs: []string{"CN=smtp-1.sante.test,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"}, Updated: upd},
		{Domain: "ch-test.mssante.fr", Description: "CH <Test> & fils", OperatorDNs: []string{"CN=smtp-2.sante.test,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"}, Updated: upd},
		{Domain: "mssante.apicrypt.org", Description: "Apicrypt", OperatorDNs: []string{mipih}},
		{Domain: "école.mssante.fr", Description: "IDN", OperatorDNs: []string{mipih}},
	}
}

func signTestList(t testing.TB, s *testSigner) []byte {
	t.Helper()
	b, err := Sign(NewList(testGenerated, testEntries()), s.leaf.Key, s.leaf.Chain)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignVerifyRoundTrip(t *testing.T) {
	s := newTestSigner(t)
	data := signTestList(t, s)
	l, err := Verify(bytes.NewReader(data), s.opts())
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if e, d := l.Len(); e != 5 || d != 4 {
		t.Fatalf("Len = %d, %d", e, d)
	}
	es, ok := l.Lookup("xn--cole-9oa.mssante.fr")
	if !ok || es[0].Domain != "école.mssante.fr" {
		t.Fatalf("IDN lookup: %v %v", es, ok)
	}
	if _, ok := l.Lookup("ÉCOLE.mssante.fr."); !ok {
		t.Fatal("IDN lookup by U-label with upper case and trailing dot failed")
	}
	es, _ = l.Lookup("ch-test.mssante.fr")
	if len(es) != 2 || es[0].Description != "CH <Test> & fils" || es[0].Responsable != "" {
		t.Fatalf("entries: %+v", es)
	}
	if err := l.CheckOperator("ch-test.mssante.fr", "CN=smtp-2.sante.test,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"); err != nil {
		t.Fatal(err)
	}
	// A byte order mark is not part of the document.
	if _, err := Verify(bytes.NewReader(append([]byte("\xef\xbb\xbf"), data...)), s.opts()); err != nil {
		t.Fatalf("with a BOM: %v", err)
	}
	// Signing the verified list again gives the same bytes but the signature (PKCS#1 v1.5 is
	// deterministic): the parse loses nothing the format carries.
	again, err := Sign(l, s.leaf.Key, s.leaf.Chain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Fatal("sign(verify(sign(l))) differs from sign(l)")
	}
}

// TestCanonicalFormMatchesGoxmldsig checks the streaming exc-c14n against goxmldsig's
// canonicalizer over an etree of the same document with the Signature removed.
func TestCanonicalFormMatchesGoxmldsig(t *testing.T) {
	s := newTestSigner(t)
	docs := map[string][]byte{"signed test list": signTestList(t, s)}
	docs["real list"] = readReal(t)
	// Prefixes, default namespace changes and attributes exercise the namespace rules.
	docs["prefixes"] = []byte(`<?xml version="1.0"?>
<ListeBlancheMSSante xmlns="` + Namespace + `" xmlns:x="urn:unused"><DateDeGeneration>2025-01-01T00:00:00Z</DateDeGeneration>
<ListeDomaines><Domaine><Nom>a.fr</Nom><DNCertificatOperateur>CN=a &amp; b&#13;&#10;c</DNCertificatOperateur></Domaine></ListeDomaines>
<ds:Signature xmlns:ds="` + nsDSig + `"/></ListeBlancheMSSante>`)
	for name, data := range docs {
		t.Run(name, func(t *testing.T) {
			var ours bytes.Buffer
			_, err := parse(bytes.NewReader(data), DefaultMaxSize, DefaultMaxEntries, &ours)
			if err != nil && !errors.Is(err, ErrSignatureProfile) {
				t.Fatal(err)
			}
			doc := etree.NewDocument()
			if err := doc.ReadFromBytes(data); err != nil {
				t.Fatal(err)
			}
			root := doc.Root()
			for _, c := range root.ChildElements() {
				if c.Tag == "Signature" {
					root.RemoveChild(c)
				}
			}
			want, err := dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("").Canonicalize(root)
			if err != nil {
				t.Fatal(err)
			}
			if name == "prefixes" {
				// The parse stops at the empty Signature: the root end tag is missing.
				if !bytes.HasPrefix(want, ours.Bytes()) || !bytes.Equal(want[ours.Len():], []byte("</ListeBlancheMSSante>")) {
					t.Fatalf("ours:\n%s\ngoxmldsig:\n%s", ours.Bytes(), want)
				}
				return
			}
			if !bytes.Equal(ours.Bytes(), want) {
				i := 0
				for i < len(want) && i < ours.Len() && want[i] == ours.Bytes()[i] {
					i++
				}
				t.Fatalf("canonical forms differ at byte %d: ours %q, goxmldsig %q", i, snippet(ours.Bytes(), i), snippet(want, i))
			}
		})
	}
}

func snippet(b []byte, i int) string {
	lo, hi := max(0, i-40), min(len(b), i+40)
	return string(b[lo:hi])
}

// tamper edits of a signed document, each refused with its own error.
type tamper struct {
	name   string
	edit   func(t *testing.T, doc []byte) []byte
	want   error
	xmlsec bool // xmlsec1 must refuse it too (the change is in what the signature covers)
}

func replaceOnce(old, new string) func(t *testing.T, doc []byte) []byte {
	return func(t *testing.T, doc []byte) []byte {
		t.Helper()
		if !bytes.Contains(doc, []byte(old)) {
			t.Fatalf("tamper: %q not found", old)
		}
		return bytes.Replace(doc, []byte(old), []byte(new), 1)
	}
}

// domaines returns the byte ranges of the first two Domaine elements (with their indentation).
func domaines(t *testing.T, doc []byte) (a, b []byte, i int) {
	i = bytes.Index(doc, []byte("        <Domaine>"))
	j := i + bytes.Index(doc[i:], []byte("</Domaine>\n")) + len("</Domaine>\n")
	k := j + bytes.Index(doc[j:], []byte("</Domaine>\n")) + len("</Domaine>\n")
	if i < 0 || j <= i || k <= j {
		t.Fatal("tamper: no two Domaine")
	}
	return doc[i:j], doc[j:k], i
}

func sigBlock(t *testing.T, doc []byte) []byte {
	i := bytes.Index(doc, []byte("<Signature "))
	j := bytes.Index(doc, []byte("</Signature>"))
	if i < 0 || j < i {
		t.Fatal("tamper: no Signature")
	}
	return doc[i : j+len("</Signature>")]
}

// tampers lists the edits; nom is the start of a Nom text and ws a text holding a space, both
// present in the document, to be changed.
func tampers(nom, ws string) []tamper {
	return []tamper{
		{"changed character in Nom", replaceOnce("<Nom>"+nom, "<Nom>x"+nom[1:]), ErrDigestMismatch, true},
		{"Domaine added", func(t *testing.T, d []byte) []byte {
			a, _, i := domaines(t, d)
			return append(append(append([]byte{}, d[:i]...), a...), d[i:]...)
		}, ErrDigestMismatch, true},
		{"Domaine removed", func(t *testing.T, d []byte) []byte {
			a, _, i := domaines(t, d)
			return append(append([]byte{}, d[:i]...), d[i+len(a):]...)
		}, ErrDigestMismatch, true},
		{"Domaine moved", func(t *testing.T, d []byte) []byte {
			a, b, i := domaines(t, d)
			out := append([]byte{}, d[:i]...)
			out = append(append(out, b...), a...)
			return append(out, d[i+len(a)+len(b):]...)
		}, ErrDigestMismatch, true},
		{"whitespace inside a text node", replaceOnce(ws, strings.Replace(ws, " ", "  ", 1)), ErrDigestMismatch, true},
		{"signature value changed", func(t *testing.T, d []byte) []byte {
			i := bytes.Index(d, []byte("<SignatureValue>")) + len("<SignatureValue>")
			out := append([]byte{}, d...)
			if out[i] == 'A' {
				out[i] = 'B'
			} else {
				out[i] = 'A'
			}
			return out
		}, ErrBadSignature, true},
		{"SignedInfo changed", replaceOnce("<SignedInfo>", "<SignedInfo> "), ErrBadSignature, true},
		{"signature removed", func(t *testing.T, d []byte) []byte {
			return bytes.Replace(d, sigBlock(t, d), nil, 1)
		}, ErrUnsigned, true},
		{"unsigned and truncated like the GitHub mirror", func(t *testing.T, d []byte) []byte {
			_, _, i := domaines(t, d)
			return d[:i]
		}, ErrUnsigned, true},
		{"second Signature", func(t *testing.T, d []byte) []byte {
			s := sigBlock(t, d)
			return bytes.Replace(d, s, append(append([]byte{}, s...), s...), 1)
		}, ErrSignatureProfile, false},
		{"wrapped copy of the signed content in the Signature", func(t *testing.T, d []byte) []byte {
			i := bytes.Index(d, []byte("<ListeBlancheMSSante"))
			j := bytes.Index(d, []byte("<Signature "))
			fake := bytes.Replace(d[i:j], []byte("adsea29"), []byte("evil"), 1)
			obj := append(append([]byte("<Object>"), fake...), "</ListeBlancheMSSante></Object></Signature>"...)
			return bytes.Replace(d, []byte("</Signature>"), obj, 1)
		}, ErrSignatureProfile, false},
		{"wrapped copy of the signed content beside the list", func(t *testing.T, d []byte) []byte {
			i := bytes.Index(d, []byte("<ListeDomaines>"))
			j := bytes.Index(d, []byte("</ListeDomaines>")) + len("</ListeDomaines>")
			fake := bytes.Replace(d[i:j], []byte("adsea29"), []byte("evil"), 1)
			return append(append(append([]byte{}, d[:i]...), fake...), d[i:]...)
		}, ErrFormat, false},
		{"digest algorithm SHA-1", replaceOnce("xmlenc#sha256", "xmldsig#sha1"), ErrSignatureProfile, true},
		{"inclusive canonicalization", replaceOnce(`<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>`, `<CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"/>`), ErrSignatureProfile, true},
		{"reference to an id", replaceOnce(`<Reference URI="">`, `<Reference URI="#x">`), ErrSignatureProfile, true},
		{"extra transform", replaceOnce(`</Transforms>`, `<Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"/></Transforms>`), ErrSignatureProfile, true},
		{"DTD with an entity", func(t *testing.T, d []byte) []byte {
			d = bytes.Replace(d, []byte("?>"), []byte("?><!DOCTYPE ListeBlancheMSSante [<!ENTITY e \"adsea29\">]>"), 1)
			return d
		}, ErrFormat, false},
		{"processing instruction", replaceOnce("<ListeDomaines>", "<ListeDomaines><?pi x?>"), ErrFormat, false},
		{"attribute on Domaine", replaceOnce("<Domaine>", `<Domaine id="x">`), ErrFormat, false},
		{"unknown field", replaceOnce("<Nom>", "<Extra/><Nom>"), ErrFormat, false},
		{"namespace declared twice", replaceOnce(`<ListeBlancheMSSante xmlns="`+Namespace+`"`, `<ListeBlancheMSSante xmlns="`+Namespace+`" xmlns="urn:x"`), ErrFormat, false},
		{"syntax error", replaceOnce("</Nom>", "</Nom"), ErrFormat, false},
	}
}

func TestTamperedSignedList(t *testing.T) {
	s := newTestSigner(t)
	data := signTestList(t, s)
	xmlsec := testenv.Require(t, "xmlsec1")
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, s.pki.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	xmlsecArgs := []string{"--trusted-pem", root}
	if ok, out := runXmlsec(t, xmlsec, dir, data, xmlsecArgs); !ok {
		t.Fatalf("xmlsec1 refuses our signed list:\n%s\n%s", out, data)
	}
	for _, tc := range tampers("adsea29", "BREST LA") {
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.edit(t, data)
			_, err := Verify(bytes.NewReader(bad), s.opts())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if tc.xmlsec {
				if ok, out := runXmlsec(t, xmlsec, dir, bad, xmlsecArgs); ok {
					t.Fatalf("xmlsec1 accepts it:\n%s", out)
				}
			}
		})
	}
}

func TestTamperedRealList(t *testing.T) {
	data := readReal(t)
	xmlsec := testenv.Require(t, "xmlsec1")
	dir := t.TempDir()
	// These edits run on the real file too (each verification of it is slow under -race); the
	// others run on the test list only.
	named := map[string]bool{"changed character in Nom": true, "Domaine added": true, "Domaine removed": true,
		"Domaine moved": true, "whitespace inside a text node": true, "signature removed": true,
		"second Signature": true, "wrapped copy of the signed content in the Signature": true}
	for _, tc := range tampers("1001-services", "SAAD 1001") {
		if !named[tc.name] {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			bad := tc.edit(t, data)
			_, err := Verify(bytes.NewReader(bad), realOpts(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if tc.xmlsec {
				if ok, out := runXmlsec(t, xmlsec, dir, bad, []string{"--insecure"}); ok {
					t.Fatalf("xmlsec1 accepts it:\n%s", out)
				}
			}
		})
	}
}

func runXmlsec(t *testing.T, xmlsec, dir string, doc []byte, args []string) (bool, string) {
	t.Helper()
	f := filepath.Join(dir, "doc.xml")
	if err := os.WriteFile(f, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(xmlsec, append(append([]string{"--verify"}, args...), f)...).CombinedOutput()
	return err == nil, string(out)
}

func TestSignerChecks(t *testing.T) {
	s := newTestSigner(t)
	data := signTestList(t, s)
	other, err := s.pki.Leaf(testpki.ProfileOrgSign, s.pki.Subject("alb.mssante.fr", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := s.pki.Leaf(testpki.ProfileOrgSign, s.pki.Subject("alb.mssante.fr", nil), &testpki.LeafOptions{ForeignCA: true})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := s.pki.Leaf(testpki.ProfileOrgSign, s.pki.Subject("alb.mssante.fr", nil), &testpki.LeafOptions{Revoked: true})
	if err != nil {
		t.Fatal(err)
	}
	crlDER, err := s.pki.CRL()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(crlDER)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(l *testpki.Leaf) []byte {
		b, err := Sign(NewList(testGenerated, testEntries()), l.Key, l.Chain)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	future := func() time.Time { return time.Now().AddDate(4, 0, 0) }
	cases := []struct {
		name string
		doc  []byte
		opts func(o *VerifyOptions)
		want error
	}{
		{"good", data, func(o *VerifyOptions) {}, nil},
		{"default expected signer is the ANS one", data, func(o *VerifyOptions) { o.Signer = "" }, ErrSignerMismatch},
		{"other expected subject", data, func(o *VerifyOptions) {
			o.Signer = "CN=alb.mssante.fr,OU=347976684200724,O=CAPGEMINI TECHNOLOGY SERVICES,ST=Hauts-de-Seine (92),C=FR"
		}, ErrSignerMismatch},
		{"subject compared as a DN", data, func(o *VerifyOptions) {
			o.Signer = "c=FR, st=Haute-Garonne (31), o=HOPITAL DE TEST, ou=12345678200010, cn=ALB.mssante.fr"
		}, nil},
		{"pinned certificate", data, func(o *VerifyOptions) { o.PinnedSigner = s.leaf.Cert }, nil},
		{"pinned other certificate", data, func(o *VerifyOptions) { o.PinnedSigner = other.Cert }, ErrSignerMismatch},
		{"pinned only", data, func(o *VerifyOptions) { o.Roots, o.PinnedSigner = nil, s.leaf.Cert }, nil},
		{"no trust anchor", data, func(o *VerifyOptions) { o.Roots = nil }, ErrSignerUntrusted},
		{"foreign CA", sign(foreign), func(o *VerifyOptions) {}, ErrSignerUntrusted},
		{"after the signer expired", data, func(o *VerifyOptions) { o.At = future }, ErrSignerExpired},
		{"list date chosen", data, func(o *VerifyOptions) { o.At, o.UseListDate = future, true }, ErrSignerExpired}, // the test signer is younger than the list date
		{"revoked signer", sign(revoked), func(o *VerifyOptions) { o.CRLs = []*x509.RevocationList{crl} }, ErrSignerRevoked},
		{"CRL not revoking this signer", data, func(o *VerifyOptions) { o.CRLs = []*x509.RevocationList{crl} }, nil},
		{"size limit", data, func(o *VerifyOptions) { o.MaxSize = 1000 }, ErrTooLarge},
		{"entry limit", data, func(o *VerifyOptions) { o.MaxEntries = 2 }, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := s.opts()
			tc.opts(o)
			_, err := Verify(bytes.NewReader(tc.doc), o)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}
