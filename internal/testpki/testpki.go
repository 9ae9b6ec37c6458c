// Package testpki builds, at test time, a public key infrastructure shaped like IGC-Santé (the
// French health PKI run by the ANS): a root
// "CN=TEST AC RACINE IGC-SANTE ELEMENTAIRE,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR",
// an intermediate "CN=TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS,…" with the same OUs, and leaves
// in the IGC-Santé profiles: server and relay certificates (offer SERV, usage SSL_SERV), the
// client certificate of a BAL applicative (offer ORG, usage AUTH_CLI) and signing certificates
// (offer ORG, usage SIGN, such as the whitelist signer CN=alb.mssante.fr).
//
// Variants on request: expired, not yet valid, revoked (listed by [PKI.CRL]), wrong extended key
// usage, issued by a foreign CA, self-signed. Keys are RSA-2048 by default like IGC-Santé keys,
// ECDSA P-256 on request.
//
// RSA key generation is slow, so in-memory PKIs share their CA keys within a process, and leaf
// RSA keys come from a small per-process pool: two leaves may share a key pair. That is fine for
// tests and nothing else; never use this package outside tests and development sandboxes.
// Generated keys are never committed: they live in memory or in the folder given in [Options.Dir].
package testpki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Default subject values of leaves, used when LeafOptions leaves them empty.
const (
	DefaultSIRET = "12345678200010" // 14 digits with valid Luhn keys (SIREN and SIRET)
	DefaultOrg   = "HOPITAL DE TEST"
	DefaultState = "Haute-Garonne (31)"
)

// Names of the test CAs. Their attributes are one per RDN in the order of the real IGC-Santé
// root (C, O, OU, OU, CN), so they render in the whitelist form as
// "CN=…,OU=IGC-SANTE TEST,OU=0002 187512751,O=ASIP-SANTE,C=FR".
var (
	RootName         = caName("TEST AC RACINE IGC-SANTE ELEMENTAIRE")
	IntermediateName = caName("TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS")
	foreignName      = pkix.Name{
		Country:      []string{"FR"},
		Organization: []string{"FOREIGN TEST CA"},
		CommonName:   "FOREIGN TEST ROOT",
	}
)

func caName(cn string) pkix.Name {
	atv := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	return pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		atv(asn1.ObjectIdentifier{2, 5, 4, 6}, "FR"),
		atv(asn1.ObjectIdentifier{2, 5, 4, 10}, "ASIP-SANTE"),
		atv(asn1.ObjectIdentifier{2, 5, 4, 11}, "0002 187512751"),
		atv(asn1.ObjectIdentifier{2, 5, 4, 11}, "IGC-SANTE TEST"),
		atv(asn1.ObjectIdentifier{2, 5, 4, 3}, cn),
	}}
}

// CA validity: wide on purpose so that tests with a clock far in the past or future still have
// valid CAs (the real root runs 2013–2033).
var (
	caNotBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2099, 12, 31, 0, 0, 0, 0, time.UTC)
)

// Options configures New.
type Options struct {
	// Dir, when not empty, persists the CA keys and certificates (and the revoked serials) as PEM
	// files in that folder and reloads them on the next New with the same Dir. Empty = in memory.
	Dir string
	// ECDSA makes the CAs and the leaves use ECDSA P-256 keys; the default is RSA-2048.
	// A PKI reloaded from Dir keeps the key type it was created with.
	ECDSA bool
	// Now is the clock for leaf validity periods and CRL dates; nil = time.Now.
	Now func() time.Time
	// CRLDistributionPoints and OCSPServer are written in every leaf issued (the addresses
	// where the sandbox publishes the intermediate's CRL and answers OCSP); empty = none.
	CRLDistributionPoints, OCSPServer []string
}

// Profile is an IGC-Santé certificate profile (offer and usage).
type Profile int

const (
	// ProfileServer is SERV/SSL_SERV: an MTA or server host; EKU serverAuth and clientAuth.
	ProfileServer Profile = iota
	// ProfileOrgAuth is ORG/AUTH_CLI: the TLS client certificate of a structure or BAL
	// applicative; EKU clientAuth.
	ProfileOrgAuth
	// ProfileOrgSign is ORG/SIGN: a signing certificate (digitalSignature, nonRepudiation, EKU
	// emailProtection), like the whitelist signer.
	ProfileOrgSign
)

func (p Profile) String() string {
	switch p {
	case ProfileServer:
		return "SERV/SSL_SERV"
	case ProfileOrgAuth:
		return "ORG/AUTH_CLI"
	case ProfileOrgSign:
		return "ORG/SIGN"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// LeafOptions selects the subject values and variants of a leaf. The zero value gives a valid
// leaf with the Default* subject values, valid from an hour ago for three years.
type LeafOptions struct {
	SIRET, Org, State string
	// DNSNames are added to the DNS SANs (Server already adds its host).
	DNSNames []string
	// Variants.
	Expired     bool // valid from two years ago until yesterday
	NotYetValid bool // valid from tomorrow
	Revoked     bool // listed by PKI.CRL
	WrongEKU    bool // EKU emailProtection only: neither serverAuth nor clientAuth
	ForeignCA   bool // issued by a CA outside this PKI (unknown authority)
	SelfSigned  bool // signed by its own key; Chain holds the leaf only
	ECDSA       bool // ECDSA P-256 key even in an RSA PKI
	// NotBefore and NotAfter, when not zero, override the validity period.
	NotBefore, NotAfter time.Time
	// CRLDistributionPoints and OCSPServer are written in the certificate (the sandbox's
	// CRL and OCSP addresses); empty = the PKI's Options of the same names.
	CRLDistributionPoints, OCSPServer []string
}

// PKI is a test CA hierarchy: a root and the intermediate that issues every leaf.
type PKI struct {
	Root, Intermediate *x509.Certificate

	rootKey, interKey crypto.Signer
	ecdsa             bool
	now               func() time.Time
	dir               string
	crlDP, ocsp       []string

	mu      sync.Mutex
	revoked []x509.RevocationListEntry
	crlNum  int64
}

// Leaf is an issued certificate with its key and chain.
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // leaf first, then the issuing CA (absent when self-signed)
}

// ca is the material shared by in-memory PKIs of a process.
type ca struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
}

var (
	cacheMu   sync.Mutex
	caCache   = map[bool]*ca{} // by ECDSA
	foreignCA = map[bool]*ca{}
)

// New returns a PKI: in memory (sharing the CA of other in-memory PKIs of the process with the
// same key type) or persisted in opts.Dir.
func New(opts *Options) (*PKI, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &PKI{now: o.Now, dir: o.Dir, ecdsa: o.ECDSA, crlDP: o.CRLDistributionPoints, ocsp: o.OCSPServer}
	var c *ca
	var err error
	if o.Dir == "" {
		c, err = cachedCA(caCache, o.ECDSA, RootName, IntermediateName)
	} else {
		c, err = p.loadOrCreate(o.Dir)
	}
	if err != nil {
		return nil, err
	}
	p.Root, p.Intermediate, p.rootKey, p.interKey = c.root, c.inter, c.rootKey, c.interKey
	_, p.ecdsa = c.interKey.(*ecdsa.PrivateKey)
	return p, nil
}

func cachedCA(cache map[bool]*ca, ec bool, rootName, interName pkix.Name) (*ca, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c := cache[ec]; c != nil {
		return c, nil
	}
	c, err := newCA(ec, rootName, interName)
	if err != nil {
		return nil, err
	}
	cache[ec] = c
	return c, nil
}

func newCA(ec bool, rootName, interName pkix.Name) (*ca, error) {
	rootKey, err := newKey(ec)
	if err != nil {
		return nil, err
	}
	interKey, err := newKey(ec)
	if err != nil {
		return nil, err
	}
	root, err := sign(&x509.Certificate{
		Subject:               rootName,
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	inter, err := sign(&x509.Certificate{
		Subject:               interName,
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, root, interKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	return &ca{root: root, inter: inter, rootKey: rootKey, interKey: interKey}, nil
}

// Files of a persisted PKI.
const (
	rootCertFile  = "root.crt.pem"
	rootKeyFile   = "root.key.pem"
	interCertFile = "intermediate.crt.pem"
	interKeyFile  = "intermediate.key.pem"
	revokedFile   = "revoked.txt"
)

func (p *PKI) loadOrCreate(dir string) (*ca, error) {
	if _, err := os.Stat(filepath.Join(dir, interKeyFile)); err == nil {
		return p.load(dir)
	}
	c, err := newCA(p.ecdsa, RootName, IntermediateName)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{rootCertFile, certPEM(c.root), 0o644},
		{rootKeyFile, keyPEM(c.rootKey), 0o600},
		{interCertFile, certPEM(c.inter), 0o644},
		{interKeyFile, keyPEM(c.interKey), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return nil, fmt.Errorf("testpki: %w", err)
		}
	}
	return c, nil
}

func (p *PKI) load(dir string) (*ca, error) {
	var c ca
	var err error
	if c.root, err = readCert(filepath.Join(dir, rootCertFile)); err != nil {
		return nil, err
	}
	if c.inter, err = readCert(filepath.Join(dir, interCertFile)); err != nil {
		return nil, err
	}
	if c.rootKey, err = readKey(filepath.Join(dir, rootKeyFile)); err != nil {
		return nil, err
	}
	if c.interKey, err = readKey(filepath.Join(dir, interKeyFile)); err != nil {
		return nil, err
	}
	if err := c.inter.CheckSignatureFrom(c.root); err != nil {
		return nil, fmt.Errorf("testpki: %s: intermediate not signed by root: %w", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, revokedFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	for _, line := range strings.Fields(string(data)) {
		b, err := hex.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("testpki: %s: bad serial %q", revokedFile, line)
		}
		p.revoked = append(p.revoked, x509.RevocationListEntry{
			SerialNumber: new(big.Int).SetBytes(b), RevocationTime: p.now(),
		})
	}
	return &c, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("testpki: %s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("testpki: %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("testpki: %s: no PEM PKCS#8 key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("testpki: %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("testpki: %s: unsupported key type %T", path, k)
	}
	return s, nil
}

// Roots returns a pool holding the test root only.
func (p *PKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root)
	return pool
}

// Intermediates returns a pool holding the test intermediate.
func (p *PKI) Intermediates() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Intermediate)
	return pool
}

// RootPEM returns the test root in PEM.
func (p *PKI) RootPEM() []byte { return certPEM(p.Root) }

// IntermediatePEM returns the test intermediate in PEM.
func (p *PKI) IntermediatePEM() []byte { return certPEM(p.Intermediate) }

// Server issues a SERV/SSL_SERV certificate for an MTA or server: CN=host, OU=SIRET, O, ST,
// C=FR, a DNS SAN for host (and the 127.0.0.1 and ::1 IP SANs when host is localhost-like),
// EKU serverAuth and clientAuth.
func (p *PKI) Server(host string, o *LeafOptions) (*Leaf, error) {
	return p.Leaf(ProfileServer, p.Subject(host, o), withDNS(o, host))
}

// Org issues an ORG/AUTH_CLI client certificate of a BAL applicative or structure: CN=cn (the
// BAL address or the organisation name), OU=SIRET, O, ST, C=FR, EKU clientAuth. When cn is an
// e-mail address it is also an rfc822Name SAN.
func (p *PKI) Org(cn string, o *LeafOptions) (*Leaf, error) {
	return p.Leaf(ProfileOrgAuth, p.Subject(cn, o), o)
}

// Subject returns the subject of a leaf as IGC-Santé writes it: CN=cn, OU=SIRET, O, ST, C=FR,
// with the Default* values for empty options. It renders as "CN=…,OU=…,O=…,ST=…,C=FR".
func (p *PKI) Subject(cn string, o *LeafOptions) pkix.Name {
	var lo LeafOptions
	if o != nil {
		lo = *o
	}
	return pkix.Name{
		Country:            []string{"FR"},
		Province:           []string{def(lo.State, DefaultState)},
		Organization:       []string{def(lo.Org, DefaultOrg)},
		OrganizationalUnit: []string{def(lo.SIRET, DefaultSIRET)},
		CommonName:         cn,
	}
}

func def(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func cmpOr(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}

func withDNS(o *LeafOptions, host string) *LeafOptions {
	var lo LeafOptions
	if o != nil {
		lo = *o
	}
	lo.DNSNames = append([]string{host}, lo.DNSNames...)
	return &lo
}

// Leaf issues a certificate of the given profile and subject (the general form of Server and
// Org; for example the whitelist signer: ProfileOrgSign with CN=alb.mssante.fr). A subject
// parsed from a certificate (Names set, ExtraNames empty) is copied attribute by attribute in its
// original order, so Leaf(p, pki.Intermediate.Subject, &LeafOptions{SelfSigned: true}) carries
// exactly the intermediate's name.
func (p *PKI) Leaf(profile Profile, subject pkix.Name, o *LeafOptions) (*Leaf, error) {
	var lo LeafOptions
	if o != nil {
		lo = *o
	}
	if len(subject.ExtraNames) == 0 && len(subject.Names) > 0 {
		subject = pkix.Name{ExtraNames: subject.Names}
	}
	now := p.now()
	tmpl := &x509.Certificate{
		Subject:   subject,
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.AddDate(3, 0, 0),
		DNSNames:  lo.DNSNames,

		CRLDistributionPoints: cmpOr(lo.CRLDistributionPoints, p.crlDP),
		OCSPServer:            cmpOr(lo.OCSPServer, p.ocsp),
	}
	switch {
	case lo.Expired:
		tmpl.NotBefore, tmpl.NotAfter = now.AddDate(-2, 0, 0), now.AddDate(0, 0, -1)
	case lo.NotYetValid:
		tmpl.NotBefore, tmpl.NotAfter = now.AddDate(0, 0, 1), now.AddDate(3, 0, 0)
	}
	if !lo.NotBefore.IsZero() {
		tmpl.NotBefore = lo.NotBefore
	}
	if !lo.NotAfter.IsZero() {
		tmpl.NotAfter = lo.NotAfter
	}
	for _, h := range lo.DNSNames {
		if h == "localhost" || strings.HasSuffix(h, ".localhost") {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
			break
		}
	}
	if strings.Contains(subject.CommonName, "@") {
		tmpl.EmailAddresses = []string{subject.CommonName}
	}
	switch profile {
	case ProfileServer:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case ProfileOrgAuth:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case ProfileOrgSign:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	default:
		return nil, fmt.Errorf("testpki: unknown profile %v", profile)
	}
	if lo.WrongEKU {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	}
	key, err := leafKey(p.ecdsa || lo.ECDSA)
	if err != nil {
		return nil, err
	}
	issuer, issuerKey := p.Intermediate, p.interKey
	switch {
	case lo.SelfSigned:
		issuer, issuerKey = nil, key
	case lo.ForeignCA:
		f, err := cachedCA(foreignCA, false, foreignName, foreignName)
		if err != nil {
			return nil, err
		}
		issuer, issuerKey = f.root, f.rootKey
	}
	cert, err := sign(tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		return nil, err
	}
	l := &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{cert}}
	if issuer != nil {
		l.Chain = append(l.Chain, issuer)
	}
	if lo.Revoked {
		if err := p.Revoke(cert); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Revoke adds c to the revoked certificates that CRL lists (persisted when the PKI has a Dir).
func (p *PKI) Revoke(c *x509.Certificate) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked = append(p.revoked, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: p.now()})
	if p.dir == "" {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(p.dir, revokedFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	_, err = fmt.Fprintf(f, "%x\n", c.SerialNumber.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("testpki: %w", err)
	}
	return nil
}

// CRL returns a DER CRL signed by the intermediate listing every revoked leaf, issued now and
// valid for seven days.
func (p *PKI) CRL() ([]byte, error) {
	now := p.now()
	return p.CRLAt(now.Add(-time.Minute), now.AddDate(0, 0, 7))
}

// CRLAt is CRL with explicit thisUpdate and nextUpdate dates (for stale-CRL tests).
func (p *PKI) CRLAt(thisUpdate, nextUpdate time.Time) ([]byte, error) {
	p.mu.Lock()
	p.crlNum++
	if p.dir != "" {
		// Other processes sign CRLs of a persisted PKI too (mssante dev revoke): numbers
		// from the clock keep them increasing across processes.
		p.crlNum = max(p.crlNum, p.now().UnixMilli())
	}
	tmpl := &x509.RevocationList{
		RevokedCertificateEntries: append([]x509.RevocationListEntry(nil), p.revoked...),
		Number:                    big.NewInt(p.crlNum),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
	}
	p.mu.Unlock()
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.Intermediate, p.interKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: CRL: %w", err)
	}
	return der, nil
}

// Issued reports whether c was issued by this PKI's intermediate with the CRL distribution
// points and OCSP addresses the PKI writes now (a sandbox moved to other ports re-issues).
func (p *PKI) Issued(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(p.Intermediate) == nil && slices.Equal(c.CRLDistributionPoints, p.crlDP) &&
		slices.Equal(c.OCSPServer, p.ocsp)
}

// OCSPResponse answers the DER OCSP request req (RFC 6960) as the intermediate: revoked
// for a certificate Revoke listed, good for any other serial, valid for validity, signed by
// the intermediate itself.
func (p *PKI) OCSPResponse(req []byte, validity time.Duration) ([]byte, error) {
	r, err := ocsp.ParseRequest(req)
	if err != nil {
		return nil, fmt.Errorf("testpki: OCSP request: %w", err)
	}
	now := p.now()
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: r.SerialNumber, ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(validity)}
	p.mu.Lock()
	for _, e := range p.revoked {
		if e.SerialNumber.Cmp(r.SerialNumber) == 0 {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, e.RevocationTime, ocsp.Unspecified
		}
	}
	p.mu.Unlock()
	der, err := ocsp.CreateResponse(p.Intermediate, p.Intermediate, tmpl, p.interKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: OCSP: %w", err)
	}
	return der, nil
}

// TLSCertificate returns the leaf with its chain (without the root) and key for tls.Config.
func (l *Leaf) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{PrivateKey: l.Key, Leaf: l.Cert}
	for _, c := range l.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// CertPEM returns the leaf followed by its issuer, in PEM.
func (l *Leaf) CertPEM() []byte {
	var b bytes.Buffer
	for _, c := range l.Chain {
		b.Write(certPEM(c))
	}
	return b.Bytes()
}

// KeyPEM returns the private key in PKCS#8 PEM.
func (l *Leaf) KeyPEM() []byte { return keyPEM(l.Key) }

// WriteFiles writes dir/base.crt.pem (CertPEM) and dir/base.key.pem (KeyPEM, mode 0600).
func (l *Leaf) WriteFiles(dir, base string) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, base+".crt.pem")
	keyPath = filepath.Join(dir, base+".key.pem")
	if err := os.WriteFile(certPath, l.CertPEM(), 0o644); err != nil {
		return "", "", fmt.Errorf("testpki: %w", err)
	}
	if err := os.WriteFile(keyPath, l.KeyPEM(), 0o600); err != nil {
		return "", "", fmt.Errorf("testpki: %w", err)
	}
	return certPath, keyPath, nil
}

func sign(tmpl, issuer *x509.Certificate, pub crypto.PublicKey, issuerKey crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	if issuer == nil {
		issuer = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, issuerKey)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	return c, nil
}

func newKey(ec bool) (crypto.Signer, error) {
	var k crypto.Signer
	var err error
	if ec {
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	return k, nil
}

// rsaPoolSize is how many distinct RSA leaf keys a process generates before reusing them.
const rsaPoolSize = 4

var (
	rsaPoolMu sync.Mutex
	rsaPool   []crypto.Signer
	rsaNext   int
)

func leafKey(ec bool) (crypto.Signer, error) {
	if ec {
		return newKey(true)
	}
	rsaPoolMu.Lock()
	defer rsaPoolMu.Unlock()
	if len(rsaPool) < rsaPoolSize {
		k, err := newKey(false)
		if err != nil {
			return nil, err
		}
		rsaPool = append(rsaPool, k)
		return k, nil
	}
	rsaNext = (rsaNext + 1) % rsaPoolSize
	return rsaPool[rsaNext], nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic("testpki: marshal key: " + err.Error()) // only our own RSA/ECDSA keys reach here
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
