package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mssante-go/sdk/transport"
)

// casFile keeps, in Options.Dir, the intermediates taken from the CA bundles.
const casFile = "bundle-intermediates.pem"

// refreshBundle fetches the CA bundle at u (the ANS's .p7b of the IGC-Santé chain, PEM or DER
// certificates) and adds to the stores the intermediate CAs it holds that chain to a root the
// stores already trust. A bundle is fetched over plain HTTP and cannot vouch for a new root:
// its self-signed certificates are never added, and nothing is ever removed, so a bundle
// cannot take the embedded IGC-Santé root away. It returns the DNs of the CAs added.
func (f *Fetcher) refreshBundle(ctx context.Context, u string) ([]string, error) {
	data, v, err := f.get(ctx, u)
	if err != nil || data == nil {
		return nil, err
	}
	certs, err := transport.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	f.keep(u, v)
	added := f.addIntermediates(certs)
	if len(added) > 0 && f.o.Dir != "" {
		var b bytes.Buffer
		for _, c := range f.bundleCAs() {
			pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		if err := writeFile(filepath.Join(f.o.Dir, casFile), b.Bytes()); err != nil {
			f.o.Logger.Warn("revocation: bundle intermediates not persisted", "err", err)
		}
	}
	return added, nil
}

// addIntermediates adds the CAs of certs that chain to a trusted root; it returns their DNs.
func (f *Fetcher) addIntermediates(certs []*x509.Certificate) []string {
	store := f.o.Stores[0]
	have := map[string]bool{}
	for _, c := range store.CAs() {
		have[string(c.Raw)] = true
	}
	inters := store.Intermediates()
	for _, c := range certs {
		inters.AddCert(c)
	}
	var added []string
	for _, c := range certs {
		if have[string(c.Raw)] || !c.IsCA || !c.BasicConstraintsValid {
			continue
		}
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			f.o.Logger.Warn("revocation: a root of the bundle is not trusted (add it to tls.ca_files if it must be)",
				"ca", transport.SubjectDN(c))
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: store.Roots(), Intermediates: inters,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			f.o.Logger.Warn("revocation: a CA of the bundle does not chain to a trusted root", "ca", transport.SubjectDN(c), "err", err)
			continue
		}
		for _, st := range f.o.Stores {
			st.AddIntermediate(c)
		}
		f.mu.Lock()
		f.fromBundle = append(f.fromBundle, c)
		f.mu.Unlock()
		have[string(c.Raw)] = true
		added = append(added, transport.SubjectDN(c))
	}
	return added
}

func (f *Fetcher) bundleCAs() []*x509.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*x509.Certificate(nil), f.fromBundle...)
}

// loadBundleCAs adds the intermediates persisted by a previous refreshBundle, checked again.
func (f *Fetcher) loadBundleCAs() {
	data, err := readLimited(filepath.Join(f.o.Dir, casFile), f.o.MaxSize)
	if err != nil {
		if !os.IsNotExist(err) {
			f.o.Logger.Warn("revocation: bundle intermediates not loaded", "err", err)
		}
		return
	}
	if certs, err := transport.ParseCertificates(data); err == nil {
		f.addIntermediates(certs)
	}
}
