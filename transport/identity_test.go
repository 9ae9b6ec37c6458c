package transport_test

import (
	"bufio"
	"crypto/x509/pkix"
	"os"
	"regexp"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
)

func TestSubjectDNRealRoot(t *testing.T) {
	got := transport.SubjectDN(transport.IGCSanteRoot())
	want := "CN=AC RACINE IGC-SANTE ELEMENTAIRE,OU=IGC-SANTE,OU=0002 187512751,O=ASIP-SANTE,C=FR"
	if got != want {
		t.Fatalf("SubjectDN = %q, want %q", got, want)
	}
}

func TestSubjectDNTestPKI(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		got, want string
	}{
		{transport.SubjectDN(f.pki.Root), "CN=TEST AC RACINE IGC-SANTE ELEMENTAIRE,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR"},
		{transport.SubjectDN(f.server.Cert), "CN=localhost,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"},
	} {
		if tc.got != tc.want {
			t.Errorf("SubjectDN = %q, want %q", tc.got, tc.want)
		}
	}
	// Accents, apostrophes and escapes.
	l, err := f.pki.Leaf(testpki.ProfileServer, pkix.Name{
		Country: []string{"FR"}, Province: []string{"Puy-de-Dôme (63)"},
		Organization: []string{"SSR CENTRE DE L'ARCHE, SITE +2"}, OrganizationalUnit: []string{"1720000744"},
		CommonName: "cpsure.asso-prh.fr",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `CN=cpsure.asso-prh.fr,OU=1720000744,O=SSR CENTRE DE L'ARCHE\, SITE \+2,ST=Puy-de-Dôme (63),C=FR`
	if got := transport.SubjectDN(l.Cert); got != want {
		t.Fatalf("SubjectDN = %q, want %q", got, want)
	}
	if !transport.EqualDN(want, `cn=CPSURE.ASSO-PRH.FR, OU=1720000744, o=ssr centre de l'arche\, site \+2, ST=PUY-DE-DÔME (63), C=fr`) {
		t.Fatal("escaped DN not equal to itself in another case")
	}
}

func TestEqualDN(t *testing.T) {
	base := "CN=mss.hopital.fr,OU=12345678200010,O=CHU DE TEST,ST=Haute-Garonne (31),C=FR"
	for _, tc := range []struct {
		other string
		want  bool
	}{
		{base, true},
		{"cn=MSS.HOPITAL.FR,ou=12345678200010,o=chu de test,st=haute-garonne (31),c=fr", true},
		{"CN=mss.hopital.fr, OU=12345678200010 , O = CHU DE TEST,ST=Haute-Garonne (31),  C=FR ", true},
		{"C=FR,ST=Haute-Garonne (31),O=CHU DE TEST,OU=12345678200010,CN=mss.hopital.fr", true},
		{"CN=mss.hopital.fr,OU=12345678200010,O=CHU  DE TEST,ST=Haute-Garonne (31),C=FR", false}, // inner space
		{"CN=mss.hopital.fr,OU=12345678200010,O=CHU-DE-TEST,ST=Haute-Garonne (31),C=FR", false},  // hyphens
		{"CN=mss.hopital.fr,OU=12345678200010,O=CHU DE TEST,ST=Haute-Garonne(31),C=FR", false},   // missing space
		{"CN=mss.hopital.fr,OU=12345678200010,O=CHU DE TEST,L=Haute-Garonne (31),C=FR", false},   // L for ST
		{"CN=mss.hopital.fr,OU=12345678200010,O=CHU DE TEST,C=FR", false},                        // missing attribute
		{base + ",OU=extra", false}, // extra attribute
		{"CN=mss.hopital.fr,OU=12345678200010,O=CHU DE TEST,ST=Haute-Garonne (31),C=FR,C=FR", false}, // duplicate
		{"CN=mss.hopital.fr,OU=12345678200011,O=CHU DE TEST,ST=Haute-Garonne (31),C=FR", false},      // SIRET
		{"", false},
		{"garbage", false},
	} {
		if got := transport.EqualDN(base, tc.other); got != tc.want {
			t.Errorf("EqualDN(base, %q) = %v, want %v", tc.other, got, tc.want)
		}
		if got := transport.EqualDN(tc.other, base); got != tc.want {
			t.Errorf("EqualDN(%q, base) = %v, want %v (not symmetric)", tc.other, got, tc.want)
		}
	}
}

// TestEqualDNWhitelist: every operator DN of the real liste blanche equals itself re-spaced
// and upper-cased, and differs from every other DN of the list.
func TestEqualDNWhitelist(t *testing.T) {
	f, err := os.Open(testenv.SharedData(t, "listeblanchemssante-2025-02-28.xml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`<DNCertificatOperateur>([^<]*)<`)
	seen := map[string]bool{}
	var dns []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for _, m := range re.FindAllStringSubmatch(sc.Text(), -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				dns = append(dns, m[1])
			}
		}
	}
	if len(dns) < 300 {
		t.Fatalf("found %d DNs", len(dns))
	}
	spaced := regexp.MustCompile(`\s*,\s*`)
	var equal []string
	for i, a := range dns {
		if !transport.EqualDN(a, spaced.ReplaceAllString(a, " , ")) {
			t.Errorf("%q not equal to itself re-spaced", a)
		}
		for _, b := range dns[i+1:] {
			if transport.EqualDN(a, b) {
				equal = append(equal, a+" == "+b)
			}
		}
	}
	// The 2025-02-28 list writes one DN twice, once with spaces after the commas; every other
	// pair of distinct strings is a distinct DN.
	want := "CN=mailin.interop-mssante.apicrypt.org,OU=343975235300037,O=APICEM,ST=Nord (59),C=FR == " +
		"CN=mailin.interop-mssante.apicrypt.org, OU=343975235300037, O=APICEM, ST=Nord (59), C=FR"
	if len(equal) != 1 || equal[0] != want {
		t.Fatalf("equal pairs: %q", equal)
	}
}
