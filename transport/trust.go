package transport

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.mozilla.org/pkcs7"
	"software.sslmate.com/src/go-pkcs12"
)

// igcSanteRootPEM is the IGC-Santé root "AC RACINE IGC-SANTE ELEMENTAIRE" (2013-06-25 to
// 2033-06-25), SHA-256 fingerprint 2D:9E:22:CA:19:F7:77:C6:B7:45:25:7C:72:3E:CB:8D:F3:C3:5F:A6:
// F1:F6:EC:36:B8:36:00:C9:73:46:96:7F, as published by the ANS.
//
//go:embed igc-sante-racine-elementaire.pem
var igcSanteRootPEM []byte

// IGCSanteRoot returns the embedded IGC-Santé root certificate.
func IGCSanteRoot() *x509.Certificate {
	certs, err := ParseCertificates(igcSanteRootPEM)
	if err != nil || len(certs) != 1 {
		panic("transport: embedded IGC-Santé root does not parse") // caught by the package tests
	}
	return certs[0]
}

// RevocationPolicy says what verification does when no valid CRL of a certificate's issuer is
// held (none loaded, or the last one is past its NextUpdate).
type RevocationPolicy int

const (
	// RevocationRequired refuses the certificate with ErrNoValidCRL (fail closed, the default).
	RevocationRequired RevocationPolicy = iota
	// RevocationBestEffort accepts it; a valid CRL that lists the certificate still refuses it.
	RevocationBestEffort
)

// TrustOptions configures NewTrustStore.
type TrustOptions struct {
	// NoIGCSanteRoot leaves the embedded IGC-Santé root out (tests and sandboxes trusting a
	// test PKI only).
	NoIGCSanteRoot bool
	// Revocation is the policy when no valid CRL covers a certificate; zero = RevocationRequired.
	Revocation RevocationPolicy
	// CRLGrace is how long past its NextUpdate a CRL is still used (the CA publishes late, the
	// fetch failed); past NextUpdate plus CRLGrace it no longer counts as valid. Zero = none.
	CRLGrace time.Duration
	// OCSP, with OCSPPolicy, asks an OCSP responder about leaf certificates besides the CRLs
	// (transport/revocation.OCSP).
	OCSP       OCSPChecker
	OCSPPolicy OCSPPolicy
}

// OCSPChecker asks an OCSP responder about a certificate.
type OCSPChecker interface {
	// CheckOCSP returns nil when the responder says leaf (issued by issuer) is good at at, an
	// error wrapping ErrRevoked when it says revoked, and another error when it gave no usable
	// answer (unreachable, unknown, stale, unauthorised signer).
	CheckOCSP(leaf, issuer *x509.Certificate, at time.Time) error
}

// OCSPPolicy says how Verify combines OCSP with the CRLs for a leaf certificate.
type OCSPPolicy int

const (
	// OCSPOff checks CRLs only (the default).
	OCSPOff OCSPPolicy = iota
	// OCSPThenCRL asks OCSP first: good accepts without a CRL, revoked refuses, and no usable
	// answer falls back on the CRL (and its policy).
	OCSPThenCRL
	// OCSPAndCRL checks the CRL as usual and asks OCSP too: a revoked answer refuses the
	// certificate even when the CRL held does not list it yet; no usable answer leaves the
	// CRL's verdict.
	OCSPAndCRL
)

// TrustStore holds the roots, intermediates and CRLs that peer certificates are verified
// against. It is safe for concurrent use; certificates and CRLs may be added while connections
// are verified.
type TrustStore struct {
	policy RevocationPolicy
	grace  time.Duration
	ocsp   OCSPChecker
	ocspP  OCSPPolicy
	noCRL  atomic.Pointer[func(*x509.Certificate)]

	mu      sync.RWMutex
	roots   *x509.CertPool
	inters  *x509.CertPool
	cas     map[string][]*x509.Certificate // by RawSubject: every root and intermediate
	crls    map[string]*crlEntry           // by issuer RawSubject
	nroots  int
	ninters int
}

// NewTrustStore returns a trust store holding the embedded IGC-Santé root (unless
// opts.NoIGCSanteRoot).
func NewTrustStore(opts *TrustOptions) *TrustStore {
	var o TrustOptions
	if opts != nil {
		o = *opts
	}
	s := &TrustStore{
		policy: o.Revocation,
		grace:  max(o.CRLGrace, 0),
		ocsp:   o.OCSP,
		ocspP:  o.OCSPPolicy,
		roots:  x509.NewCertPool(),
		inters: x509.NewCertPool(),
		cas:    map[string][]*x509.Certificate{},
		crls:   map[string]*crlEntry{},
	}
	if !o.NoIGCSanteRoot {
		s.AddRoot(IGCSanteRoot())
	}
	return s
}

// AddRoot trusts c as a root.
func (s *TrustStore) AddRoot(c *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addCA(c) {
		// Copy on write: Verify uses the pools without holding the lock.
		pool := s.roots.Clone()
		pool.AddCert(c)
		s.roots = pool
		s.nroots++
	}
}

// AddIntermediate adds c as an intermediate CA: it helps build chains and verify CRLs but is
// trusted only through a root.
func (s *TrustStore) AddIntermediate(c *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addCA(c) {
		pool := s.inters.Clone()
		pool.AddCert(c)
		s.inters = pool
		s.ninters++
	}
}

func (s *TrustStore) addCA(c *x509.Certificate) bool {
	k := string(c.RawSubject)
	for _, have := range s.cas[k] {
		if have.Equal(c) {
			return false
		}
	}
	s.cas[k] = append(s.cas[k], c)
	return true
}

// Add adds the CA certificates of data (PEM, DER or a PKCS#7 .p7b bundle such as the ANS's
// Chaine_de_certification-IGC-Sante.p7b): self-signed ones as roots, the others as
// intermediates. It refuses data holding a certificate that is not a CA, adding nothing.
func (s *TrustStore) Add(data []byte) error {
	certs, err := ParseCertificates(data)
	if err != nil {
		return err
	}
	for _, c := range certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			return errorf("trust store: %s is not a CA certificate", SubjectDN(c))
		}
	}
	for _, c := range certs {
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			s.AddRoot(c)
		} else {
			s.AddIntermediate(c)
		}
	}
	return nil
}

// AddFile is Add with the contents of a file.
func (s *TrustStore) AddFile(path string) error {
	data, err := readFileLimited(path)
	if err != nil {
		return err
	}
	if err := s.Add(data); err != nil {
		return errorf("%s: %w", path, err)
	}
	return nil
}

// Counts returns how many roots and intermediates the store holds.
func (s *TrustStore) Counts() (roots, intermediates int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nroots, s.ninters
}

// Roots returns a copy of the root pool.
func (s *TrustStore) Roots() *x509.CertPool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.roots.Clone()
}

// Intermediates returns a copy of the intermediate pool, for verifications done outside a TLS
// handshake (the liste blanche's signer, for example).
func (s *TrustStore) Intermediates() *x509.CertPool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.inters.Clone()
}

// CRLs returns the CRLs the store holds, the last valid one of each CA, for verifications
// done outside a TLS handshake (the liste blanche's signer, for example). The CRLs are shared
// with the store: callers must not modify them.
func (s *TrustStore) CRLs() []*x509.RevocationList {
	s.mu.RLock()
	defer s.mu.RUnlock()
	crls := make([]*x509.RevocationList, 0, len(s.crls))
	for _, e := range s.crls {
		crls = append(crls, e.crl)
	}
	return crls
}

// knownIssuer reports whether a CA of the store has c's issuer as its subject.
func (s *TrustStore) knownIssuer(c *x509.Certificate) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.cas[string(c.RawIssuer)]) > 0
}

// Verify checks a peer chain (leaf first, then any intermediates the peer sent) at time at for
// the extended key usage usage: it must lead to a root of the store, every certificate must be
// within its validity dates, and no certificate may be revoked by a valid CRL of its issuer (the
// leaf's issuer must have a valid CRL unless the revocation policy is best effort; an
// intermediate is checked when its issuer's CRL is held). It returns the verified chains, or a
// *CertError whose Reason is ErrUnknownAuthority, ErrBadSignature, ErrExpired, ErrNotYetValid,
// ErrWrongEKU, ErrRevoked, ErrNoValidCRL or ErrBadCertificate.
func (s *TrustStore) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage, at time.Time) ([][]*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, ErrNoPeerCertificate
	}
	leaf := chain[0]
	// Dates of the leaf first: x509 reports both cases as "expired".
	if at.Before(leaf.NotBefore) {
		return nil, certErr(ErrNotYetValid, leaf, nil)
	}
	if at.After(leaf.NotAfter) {
		return nil, certErr(ErrExpired, leaf, nil)
	}
	s.mu.RLock()
	roots, inters := s.roots, s.inters
	s.mu.RUnlock()
	if len(chain) > 1 {
		inters = inters.Clone()
		for _, c := range chain[1:] {
			inters.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inters,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return nil, classify(err, at, s.knownIssuer, leaf)
	}
	if err := s.checkRevocation(chains[0], at); err != nil {
		return nil, err
	}
	return chains, nil
}

// checkRevocation checks every non-root certificate of a verified chain against its issuer's CRL.
func (s *TrustStore) checkRevocation(chain []*x509.Certificate, at time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		if i == 0 && s.ocsp != nil && s.ocspP != OCSPOff {
			err := s.ocsp.CheckOCSP(c, issuer, at)
			if errors.Is(err, ErrRevoked) {
				return certErr(ErrRevoked, c, err)
			}
			if err == nil && s.ocspP == OCSPThenCRL {
				continue
			}
		}
		s.mu.RLock()
		e := s.crls[string(issuer.RawSubject)]
		s.mu.RUnlock()
		if e == nil || !sameCA(e.issuer, issuer) || !e.validAt(at, s.grace) {
			if f := s.noCRL.Load(); i == 0 && f != nil {
				(*f)(c)
			}
			if i == 0 && s.policy == RevocationRequired {
				return certErr(ErrNoValidCRL, c, nil)
			}
			continue
		}
		if _, revoked := e.serials[string(c.SerialNumber.Bytes())]; revoked {
			return certErr(ErrRevoked, c, nil)
		}
	}
	return nil
}

// sameCA reports whether two CA certificates are the same authority: same name and key (a CA
// certificate re-issued with the same key signs the same CRLs).
func sameCA(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubject, b.RawSubject) && bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

// crlEntry is the last valid CRL of one CA.
type crlEntry struct {
	crl        *x509.RevocationList
	issuer     *x509.Certificate
	number     *big.Int
	thisUpdate time.Time
	nextUpdate time.Time
	serials    map[string]struct{}
}

func (e *crlEntry) validAt(at time.Time, grace time.Duration) bool {
	if at.Before(e.thisUpdate) {
		return false
	}
	return e.nextUpdate.IsZero() || !at.After(e.nextUpdate.Add(grace))
}

// CRLGrace returns how long past its NextUpdate a CRL is still used (TrustOptions.CRLGrace).
func (s *TrustStore) CRLGrace() time.Duration { return s.grace }

// OnNoCRL sets f to be called, from Verify, with each verified leaf whose issuer has no valid
// CRL: a CRL fetcher learns there the distribution points of CAs it was not told about. f must
// not block.
func (s *TrustStore) OnNoCRL(f func(leaf *x509.Certificate)) { s.noCRL.Store(&f) }

// CAs returns the roots and intermediates of the store (shared: callers must not modify them),
// for instance to find the CRL distribution points to fetch.
func (s *TrustStore) CAs() []*x509.Certificate {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*x509.Certificate
	for _, cs := range s.cas {
		out = append(out, cs...)
	}
	return out
}

// maxCRLSize bounds a CRL (the IGC-Santé ORGANISATIONS CRL is a few hundred kilobytes).
const maxCRLSize = 64 << 20

// AddCRL loads a CRL (DER or PEM) after verifying its signature by a CA of the store (so the
// issuing intermediate, e.g. from the ANS .p7b bundle, must be added first). It becomes
// the CRL of that CA unless the store already holds a newer one (higher CRL number, or later
// thisUpdate when numbers are absent): an older CRL is refused and the held one kept, so a
// replayed CRL cannot un-revoke a certificate. On any error the held CRL stays in use.
func (s *TrustStore) AddCRL(data []byte) error {
	if len(data) > maxCRLSize {
		return errorf("CRL: larger than %d bytes", maxCRLSize)
	}
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "X509 CRL" {
			return errorf("CRL: PEM block %q, want X509 CRL", b.Type)
		}
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return errorf("CRL: %w", err)
	}
	s.mu.RLock()
	candidates := s.cas[string(crl.RawIssuer)]
	s.mu.RUnlock()
	var issuer *x509.Certificate
	var sigErr error
	for _, c := range candidates {
		if sigErr = crl.CheckSignatureFrom(c); sigErr == nil {
			issuer = c
			break
		}
	}
	if issuer == nil {
		if sigErr != nil {
			return errorf("CRL: signature: %w", sigErr)
		}
		return errorf("CRL: issuer not in the trust store: %w", ErrUnknownAuthority)
	}
	e := &crlEntry{
		crl:        crl,
		issuer:     issuer,
		number:     crl.Number,
		thisUpdate: crl.ThisUpdate,
		nextUpdate: crl.NextUpdate,
		serials:    make(map[string]struct{}, len(crl.RevokedCertificateEntries)),
	}
	for _, r := range crl.RevokedCertificateEntries {
		e.serials[string(r.SerialNumber.Bytes())] = struct{}{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.crls[string(issuer.RawSubject)]; old != nil && sameCA(old.issuer, issuer) && older(e, old) {
		return errorf("CRL: %w for %s", ErrOlderCRL, SubjectDN(issuer))
	}
	s.crls[string(issuer.RawSubject)] = e
	return nil
}

func older(e, old *crlEntry) bool {
	if e.number != nil && old.number != nil {
		return e.number.Cmp(old.number) < 0
	}
	return e.thisUpdate.Before(old.thisUpdate)
}

// AddCRLFile is AddCRL with the contents of a file.
func (s *TrustStore) AddCRLFile(path string) error {
	data, err := readFileLimited(path)
	if err != nil {
		return err
	}
	if err := s.AddCRL(data); err != nil {
		return errorf("%s: %w", path, err)
	}
	return nil
}

// maxCertFileSize bounds a certificate, bundle or CRL file read from disk.
const maxCertFileSize = maxCRLSize

func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFileSize+1))
	if err != nil {
		return nil, errorf("%s: %w", path, err)
	}
	if len(data) > maxCertFileSize {
		return nil, errorf("%s: larger than %d bytes", path, maxCertFileSize)
	}
	return data, nil
}

// maxCerts bounds how many certificates one input may hold.
const maxCerts = 1000

// ParseCertificates reads certificates from PEM (every CERTIFICATE block; a PKCS7 block is
// read as a bundle), DER, or a DER or PEM PKCS#7 bundle (.p7b/.p7c). It never panics on bad
// input and refuses inputs holding no certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(data)
	sawPEM := false
	for len(rest) > 0 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		switch b.Type {
		case "CERTIFICATE", "TRUSTED CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, errorf("certificate %d: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		case "PKCS7", "CMS":
			cs, err := parsePKCS7(b.Bytes)
			if err != nil {
				return nil, err
			}
			certs = append(certs, cs...)
		}
		if len(certs) > maxCerts {
			return nil, errorf("more than %d certificates", maxCerts)
		}
	}
	if !sawPEM {
		if c, err := x509.ParseCertificate(data); err == nil {
			return []*x509.Certificate{c}, nil
		}
		cs, err := parsePKCS7(data)
		if err != nil {
			return nil, errorf("neither PEM, DER certificate nor PKCS#7 bundle: %w", err)
		}
		certs = cs
	}
	if len(certs) == 0 {
		return nil, errorf("no certificate found")
	}
	return certs, nil
}

func parsePKCS7(der []byte) (certs []*x509.Certificate, err error) {
	defer func() {
		// go.mozilla.org/pkcs7 v0.10.0 fixed the BER panics known to date; stay safe anyway.
		if r := recover(); r != nil {
			certs, err = nil, errorf("PKCS#7: malformed bundle")
		}
	}()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, errorf("PKCS#7: %w", err)
	}
	if len(p7.Certificates) > maxCerts {
		return nil, errorf("PKCS#7: more than %d certificates", maxCerts)
	}
	return p7.Certificates, nil
}

// ParsePKCS12 reads a PKCS#12 (.p12/.pfx) file: the private key with its certificate and CA
// chain, as the IGC-Santé delivers software certificates, or a certificates-only trust store
// (then key and leaf are nil and chain holds the certificates).
func ParsePKCS12(data []byte, password string) (key any, leaf *x509.Certificate, chain []*x509.Certificate, err error) {
	defer func() {
		if r := recover(); r != nil {
			key, leaf, chain, err = nil, nil, nil, errorf("PKCS#12: malformed file")
		}
	}()
	key, leaf, chain, err = pkcs12.DecodeChain(data, password)
	if err == nil {
		return key, leaf, chain, nil
	}
	certs, err2 := pkcs12.DecodeTrustStore(data, password)
	if err2 == nil && len(certs) > 0 {
		return nil, nil, certs, nil
	}
	return nil, nil, nil, errorf("PKCS#12: %w", err)
}
