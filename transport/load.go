package transport

import (
	"crypto/x509"
	"os"

	"github.com/mssante-go/sdk/whitelist"
)

// LoadTrustStore returns NewTrustStore(opts) holding, in this order, the CA certificates of
// caFiles (PEM, DER or PKCS#7 .p7b bundles such as the ANS's
// Chaine_de_certification-IGC-Sante.p7b; see [TrustStore.Add]) and the CRLs of crlFiles (see
// [TrustStore.AddCRL]): every CA is in the store before the CRLs it signs are checked. This is
// the set-up of a BAL, a relay or a tool at start, with the trust material its configuration
// names (Réf. #2 ECO.1.1.6 and ECO.1.1.7: IGC-Santé chain and revocation lists). Empty names
// are skipped, so that optional settings can be passed as they are.
func LoadTrustStore(opts *TrustOptions, caFiles, crlFiles []string) (*TrustStore, error) {
	s := NewTrustStore(opts)
	for _, f := range caFiles {
		if f == "" {
			continue
		}
		if err := s.AddFile(f); err != nil {
			return nil, err
		}
	}
	for _, f := range crlFiles {
		if f == "" {
			continue
		}
		if err := s.AddCRLFile(f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// WhitelistOptions returns a copy of opts (nil = zero options) that verifies the liste
// blanche's signer against the store, as a peer certificate is: Roots and Intermediates are
// the store's, and the store's CRLs follow opts.CRLs, so a revoked signer is refused. The
// other fields (Signer, PinnedSigner, At, UseListDate, limits) are kept. The result is what
// [whitelist.Verify] takes, or the Verify field of a [whitelist.StoreOptions] for a list
// fetched from [whitelist.DefaultURL].
func (s *TrustStore) WhitelistOptions(opts *whitelist.VerifyOptions) *whitelist.VerifyOptions {
	var o whitelist.VerifyOptions
	if opts != nil {
		o = *opts
	}
	o.Roots = s.Roots()
	o.Intermediates = s.Intermediates()
	o.CRLs = append(append([]*x509.RevocationList(nil), o.CRLs...), s.CRLs()...)
	return &o
}

// VerifyWhitelistFile reads the liste blanche file at path and verifies it with
// s.WhitelistOptions(opts): its signature, and its signer against the store's CAs and CRLs.
// Errors wrap those of [whitelist.Verify].
func (s *TrustStore) VerifyWhitelistFile(path string, opts *whitelist.VerifyOptions) (*whitelist.List, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	defer f.Close()
	l, err := whitelist.Verify(f, s.WhitelistOptions(opts))
	if err != nil {
		return nil, errorf("%s: %w", path, err)
	}
	return l, nil
}
