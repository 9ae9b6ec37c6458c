package whitelist_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log"
	"time"

	"github.com/mssante-go/sdk/internal/testpki"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/whitelist"
)

// A list signed in the ANS profile, verified against the roots of its PKI, then used as the
// policy of a connector.
func Example() {
	pki, err := testpki.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := pki.Leaf(testpki.ProfileOrgSign, pki.Subject("alb.mssante.fr", nil), nil)
	if err != nil {
		log.Fatal(err)
	}
	operator := "CN=mss.example.fr,OU=12345678200010,O=HOPITAL DE TEST,ST=Haute-Garonne (31),C=FR"
	doc, err := whitelist.Sign(whitelist.NewList(time.Now(), []whitelist.Entry{
		{Domain: "ch-exemple.mssante.fr", OperatorDNs: []string{operator}},
	}), signer.Key, signer.Chain)
	if err != nil {
		log.Fatal(err)
	}

	list, err := whitelist.VerifyBytes(doc, &whitelist.VerifyOptions{
		Roots:  pki.Roots(),                  // in production: the IGC-Santé roots
		Signer: signer.Cert.Subject.String(), // in production: whitelist.DefaultSigner
	})
	if err != nil {
		log.Fatal(err)
	}
	var policy whitelist.Policy = list
	fmt.Println(policy.CheckDomain("CH-Exemple.mssante.fr"))
	fmt.Println(policy.CheckOperator("ch-exemple.mssante.fr", "c=FR, st=Haute-Garonne (31), o=HOPITAL DE TEST, ou=12345678200010, cn=mss.example.fr"))
	fmt.Println(policy.CheckDomain("autre.mssante.fr"))
	// Output:
	// <nil>
	// <nil>
	// whitelist: domain not listed
}

// A Store keeps the list fresh in the background and is the policy the connector enforces.
// (Not run: it reaches the ANS server.)
func ExampleStore() {
	igcSante := x509.NewCertPool()
	igcSante.AddCert(transport.IGCSanteRoot()) // and the intermediates, for the signer chain
	st, err := whitelist.NewStore(&whitelist.StoreOptions{
		CacheFile: "/var/lib/mssante/listeblanche.xml", // the last good list, loaded at start
		Verify:    whitelist.VerifyOptions{Roots: igcSante},
		MaxAge:    48 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	go st.Run(context.Background())
	if err := st.CheckDomain("ch-exemple.mssante.fr"); err != nil {
		fmt.Println(err) // ErrNoList until a list is verified, then nil or ErrDomainNotListed
	}
	s := st.State()
	fmt.Println(s.Generated, s.Age, s.LastSuccess, s.LastError, s.TooOld)
}

// The certificate that signs the ANS list, to pin when the IGC-Santé intermediate that issued
// it is not at hand: whitelist.Verify(f, &whitelist.VerifyOptions{PinnedSigner: cert}).
func ExampleDefaultSignerCertificate() {
	cert := whitelist.DefaultSignerCertificate()
	fmt.Println(cert.Subject)
	fmt.Println(cert.NotAfter.Format(time.DateOnly))
	// Output:
	// CN=alb.mssante.fr,OU=347976684200724,O=CAPGEMINI TECHNOLOGY SERVICES,ST=Hauts-de-Seine (92),C=FR
	// 2026-08-23
}
