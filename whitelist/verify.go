package whitelist

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

const (
	// Namespace is the XML namespace of the liste blanche, as the published file declares it.
	Namespace = "https://listeblanche.mssante.fr/schema"
	// DefaultURL is where the ANS publishes the list.
	DefaultURL = "https://espacedeconfiance.mssante.fr/listeblanchemssante.xml"
	// DefaultSigner is the subject of the certificate that signed the list in 2025 (issued by
	// AC IGC-SANTE ELEMENTAIRE ORGANISATIONS, valid 2023-08-23 to 2026-08-23), as the
	// published file carries it. The ANS texts do not say which signer a verifier should
	// expect; the default is this observed one, and VerifyOptions.Signer sets another.
	DefaultSigner = "CN=alb.mssante.fr,OU=347976684200724,O=CAPGEMINI TECHNOLOGY SERVICES,ST=Hauts-de-Seine (92),C=FR"
	// DefaultMaxSize bounds the document (the 2025 list is 3.7 MB).
	DefaultMaxSize = 64 << 20
	// DefaultMaxEntries bounds the number of Domaine elements (6,494 in 2025, 8,655 in 2026).
	DefaultMaxEntries = 200_000
)

// XMLDSig profile of the list as the ANS signs it (the published file; no ANS text describes it).
const (
	nsDSig       = "http://www.w3.org/2000/09/xmldsig#"
	algExcC14N   = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algRSASHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	algEnveloped = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algSHA256    = "http://www.w3.org/2001/04/xmlenc#sha256"
)

const (
	maxFieldText = 64 << 10 // one text field, base64 certificate included
	maxSigText   = 1 << 20  // all the text inside Signature
	maxSigCerts  = 8
	maxDNsEntry  = 16
)

// VerifyOptions says whom to trust and when. A nil *VerifyOptions has no trust anchor, so
// Verify refuses every list: set Roots, PinnedSigner (for the ANS list,
// [DefaultSignerCertificate]), or both.
type VerifyOptions struct {
	// Roots are the trusted roots (IGC-Santé) the signer certificate must chain to at the
	// verification time. Nil: no chain check, PinnedSigner is then required.
	Roots *x509.CertPool
	// Intermediates help build the chain, beside the certificates of the Signature's KeyInfo.
	Intermediates *x509.CertPool
	// PinnedSigner, when set, must be the signer certificate byte for byte.
	PinnedSigner *x509.Certificate
	// Signer is the expected subject DN of the signer, compared with CanonicalDN.
	// "" means DefaultSigner.
	Signer string
	// At returns the verification time for the signer certificate. Nil means time.Now.
	At func() time.Time
	// UseListDate verifies the signer at the list's own DateDeGeneration instead of At. Meant
	// for archived lists: the date is the signer's own claim, so whoever held the key of an
	// expired certificate could backdate a list; a Store's rollback refusal limits that.
	UseListDate bool
	// CRLs are revocation lists; the one issued by the signer's issuer (and signed by it when
	// the chain is known) is checked, a signer revoked at any time is refused.
	CRLs []*x509.RevocationList
	// MaxSize bounds the document in bytes; 0 means DefaultMaxSize.
	MaxSize int64
	// MaxEntries bounds the number of Domaine elements; 0 means DefaultMaxEntries.
	MaxEntries int
}

func (o *VerifyOptions) maxSize() int64 {
	if o == nil || o.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return o.MaxSize
}

func (o *VerifyOptions) maxEntries() int {
	if o == nil || o.MaxEntries <= 0 {
		return DefaultMaxEntries
	}
	return o.MaxEntries
}

// Verify reads a liste blanche from r, checks its signature and signer, and returns the list.
// Every refusal wraps one of the Err* values of this package. The entries come only from the
// bytes the digest covered (see the package documentation).
func Verify(r io.Reader, opts *VerifyOptions) (*List, error) {
	if opts == nil {
		opts = &VerifyOptions{}
	}
	doc, err := parse(r, opts.maxSize(), opts.maxEntries(), nil)
	if err != nil {
		return nil, err
	}
	if err := doc.verify(opts); err != nil {
		return nil, err
	}
	return buildList(doc.generated, doc.entries, true)
}

// VerifyBytes is Verify of a document held in memory.
func VerifyBytes(doc []byte, opts *VerifyOptions) (*List, error) {
	return Verify(bytes.NewReader(doc), opts)
}

// document is what one pass over the XML yields.
type document struct {
	generated  time.Time
	entries    []Entry
	digest     []byte // SHA-256 of the canonical document minus the Signature
	signedInfo []byte // canonical SignedInfo
	digestB64  string
	sigB64     string
	certsB64   []string
}

type kind uint8

const (
	kRoot kind = iota + 1
	kDate
	kDomains
	kDomain
	kField
	kSig     // an element of the Signature with element children
	kSigLeaf // DigestValue, SignatureValue, X509Certificate
)

// Fields of a Domaine, in the order of the list.
var fieldNames = [...]string{"Nom", "Description", "DNCertificatOperateur", "ResponsableContact", "SupportContact", "DateMAJ"}

const (
	fNom = iota
	fDescription
	fDN
	fResponsable
	fSupport
	fDateMAJ
)

type frame struct {
	name    xml.Name // as written: Space is the prefix
	kind    kind
	field   int
	nsMark  int
	pathLen int
}

// sigShape is the exact sequence of elements of the ANS Signature, in document order, with the
// one attribute each may carry. The last one (X509Certificate) may repeat.
var sigShape = []struct{ path, attr, value string }{
	{"/Signature", "", ""},
	{"/Signature/SignedInfo", "", ""},
	{"/Signature/SignedInfo/CanonicalizationMethod", "Algorithm", algExcC14N},
	{"/Signature/SignedInfo/SignatureMethod", "Algorithm", algRSASHA256},
	{"/Signature/SignedInfo/Reference", "URI", ""},
	{"/Signature/SignedInfo/Reference/Transforms", "", ""},
	{"/Signature/SignedInfo/Reference/Transforms/Transform", "Algorithm", algEnveloped},
	{"/Signature/SignedInfo/Reference/Transforms/Transform", "Algorithm", algExcC14N},
	{"/Signature/SignedInfo/Reference/DigestMethod", "Algorithm", algSHA256},
	{"/Signature/SignedInfo/Reference/DigestValue", "", ""},
	{"/Signature/SignatureValue", "", ""},
	{"/Signature/KeyInfo", "", ""},
	{"/Signature/KeyInfo/X509Data", "", ""},
	{"/Signature/KeyInfo/X509Data/X509Certificate", "", ""},
}

var sigLeaves = map[string]bool{
	"/Signature/SignedInfo/Reference/DigestValue": true,
	"/Signature/SignatureValue":                   true,
	"/Signature/KeyInfo/X509Data/X509Certificate": true,
}

type parser struct {
	dec        *xml.Decoder
	ns         []nsBinding
	stack      []frame
	doc        c14n
	si         c14n
	siBuf      bytes.Buffer
	inSI       bool
	hash       hash.Hash
	text       []byte
	maxEntries int

	rootDone, dateSeen, domainsSeen, sigSeen, sigDone bool
	sigPath                                           string
	sigStep                                           int
	sigText                                           int
	cur                                               Entry
	strs                                              map[string]string
	curSeen                                           [len(fieldNames)]int
	out                                               document
}

// limitReader fails with ErrTooLarge past n bytes instead of truncating silently.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, fmt.Errorf("%w: document larger than the maximum size", ErrTooLarge)
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, fmt.Errorf("%w: document larger than the maximum size", ErrTooLarge)
	}
	return n, err
}

// parse reads the document once; the canonical form of the document minus the Signature goes to
// the digest and, when tee is not nil, to tee too (tests compare it with other canonicalizers).
func parse(r io.Reader, maxSize int64, maxEntries int, tee io.Writer) (*document, error) {
	p := &parser{hash: sha256.New(), maxEntries: maxEntries}
	br := bufio.NewReaderSize(&limitReader{r: r, n: maxSize}, 64<<10)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		br.Discard(3) // a UTF-8 byte order mark is not part of the document (XML 1.0 §4.3.3)
	}
	p.dec = xml.NewDecoder(br)
	var w io.Writer = p.hash
	if tee != nil {
		w = io.MultiWriter(p.hash, tee)
	}
	p.doc.w = bufio.NewWriterSize(w, 32<<10)
	defer p.doc.w.Flush()
	p.si.w = bufio.NewWriter(&p.siBuf)
	first := true
	for {
		tok, err := p.dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return nil, err
			}
			var se *xml.SyntaxError
			if !p.sigSeen && errors.As(err, &se) && se.Msg == "unexpected EOF" {
				return nil, fmt.Errorf("%w (%w: document truncated)", ErrUnsigned, ErrFormat)
			}
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			err = p.start(&t)
		case xml.EndElement:
			err = p.end(t)
		case xml.CharData:
			err = p.charData(t)
		case xml.Comment:
			// Not in the canonical form (exc-c14n without comments), and not data either.
		case xml.ProcInst:
			if !first || t.Target != "xml" {
				err = fmt.Errorf("%w: processing instruction refused", ErrFormat)
			}
		case xml.Directive:
			err = fmt.Errorf("%w: DTD or directive refused", ErrFormat)
		}
		if err != nil {
			return nil, err
		}
		first = false
	}
	if !p.rootDone {
		if !p.sigSeen {
			return nil, fmt.Errorf("%w (%w: document truncated)", ErrUnsigned, ErrFormat)
		}
		return nil, fmt.Errorf("%w: document truncated", ErrFormat)
	}
	if !p.sigSeen {
		return nil, ErrUnsigned
	}
	p.doc.w.Flush() // writes to a hash (and tee) do not fail
	p.out.digest = p.hash.Sum(nil)
	return &p.out, nil
}

func (p *parser) resolve(prefix string) (string, bool) {
	if prefix == "xml" {
		return nsXML, true
	}
	for i := len(p.ns) - 1; i >= 0; i-- {
		if p.ns[i].prefix == prefix {
			return p.ns[i].uri, true
		}
	}
	return "", prefix == ""
}

func (p *parser) top() *frame {
	if len(p.stack) == 0 {
		return nil
	}
	return &p.stack[len(p.stack)-1]
}

func (p *parser) start(se *xml.StartElement) error {
	if p.rootDone {
		return fmt.Errorf("%w: element after the root element", ErrFormat)
	}
	mark := len(p.ns)
	attrs := 0
	for _, a := range se.Attr {
		if strings.ContainsAny(a.Value, "\t\n\r") {
			// encoding/xml does not normalise attribute values (XML 1.0 §3.3.3).
			return fmt.Errorf("%w: attribute value with a tab or line break", ErrFormat)
		}
		if !isNSDecl(a) {
			attrs++
			continue
		}
		prefix := ""
		if a.Name.Space == "xmlns" {
			prefix = a.Name.Local
			if prefix == "xml" || prefix == "xmlns" || a.Value == "" {
				return fmt.Errorf("%w: invalid namespace declaration", ErrFormat)
			}
		}
		for _, b := range p.ns[mark:] {
			if b.prefix == prefix {
				return fmt.Errorf("%w: namespace declared twice", ErrFormat)
			}
		}
		p.ns = append(p.ns, nsBinding{prefix, a.Value})
	}
	uri, ok := p.resolve(se.Name.Space)
	if !ok {
		return fmt.Errorf("%w: undeclared namespace prefix %q", ErrFormat, se.Name.Space)
	}
	fr := frame{name: se.Name, nsMark: mark, pathLen: len(p.sigPath)}
	var parent kind
	if t := p.top(); t != nil {
		parent = t.kind
	}
	local := se.Name.Local
	if parent != kSig && attrs > 0 {
		if parent == kRoot && uri == nsDSig && local == "Signature" {
			return fmt.Errorf("%w: attribute on Signature", ErrSignatureProfile)
		}
		return fmt.Errorf("%w: unexpected attribute on %s", ErrFormat, local)
	}
	switch parent {
	case 0:
		if uri != Namespace || local != "ListeBlancheMSSante" {
			return fmt.Errorf("%w: root element is not ListeBlancheMSSante in namespace %s", ErrFormat, Namespace)
		}
		fr.kind = kRoot
	case kRoot:
		switch {
		case p.sigSeen && uri == nsDSig && local == "Signature":
			return fmt.Errorf("%w: more than one Signature", ErrSignatureProfile)
		case p.sigSeen:
			return fmt.Errorf("%w: Signature is not the last child of the root", ErrSignatureProfile)
		case uri == Namespace && local == "DateDeGeneration" && !p.dateSeen:
			fr.kind, p.dateSeen = kDate, true
		case uri == Namespace && local == "ListeDomaines" && p.dateSeen && !p.domainsSeen:
			fr.kind, p.domainsSeen = kDomains, true
		case uri == nsDSig && local == "Signature":
			if !p.domainsSeen {
				return fmt.Errorf("%w: Signature is not the last child of the root", ErrSignatureProfile)
			}
			p.sigSeen = true
			if err := p.sigElement(&fr, se); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unexpected element %s in ListeBlancheMSSante", ErrFormat, local)
		}
	case kDomains:
		if uri != Namespace || local != "Domaine" {
			return fmt.Errorf("%w: unexpected element %s in ListeDomaines", ErrFormat, local)
		}
		if len(p.out.entries) >= p.maxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, p.maxEntries)
		}
		fr.kind = kDomain
		p.cur, p.curSeen = Entry{}, [len(fieldNames)]int{}
	case kDomain:
		fr.field = -1
		if uri == Namespace {
			for i, n := range fieldNames {
				if n == local {
					fr.field = i
				}
			}
		}
		if fr.field < 0 {
			return fmt.Errorf("%w: unexpected element %s in Domaine", ErrFormat, local)
		}
		if p.curSeen[fr.field]++; p.curSeen[fr.field] > 1 && (fr.field != fDN || p.curSeen[fDN] > maxDNsEntry) {
			return fmt.Errorf("%w: repeated %s in Domaine", ErrFormat, local)
		}
		fr.kind = kField
		p.text = p.text[:0]
	case kSig:
		if err := p.sigElement(&fr, se); err != nil {
			return err
		}
	case kSigLeaf:
		return fmt.Errorf("%w: element inside %s", ErrSignatureProfile, p.top().name.Local)
	default: // kDate, kField
		return fmt.Errorf("%w: element inside %s", ErrFormat, p.top().name.Local)
	}
	if fr.kind == kDate {
		p.text = p.text[:0]
	}
	p.stack = append(p.stack, fr)
	if fr.kind == kSig || fr.kind == kSigLeaf {
		if p.inSI {
			return p.si.start(se, p.resolve)
		}
		return nil
	}
	return p.doc.start(se, p.resolve)
}

// sigElement checks the next element of the Signature against sigShape.
func (p *parser) sigElement(fr *frame, se *xml.StartElement) error {
	uri, _ := p.resolve(se.Name.Space)
	if uri != nsDSig {
		return fmt.Errorf("%w: element %s outside the XMLDSig namespace", ErrSignatureProfile, se.Name.Local)
	}
	p.sigPath += "/" + se.Name.Local
	step := p.sigStep
	last := len(sigShape) - 1
	switch {
	case step < len(sigShape) && sigShape[step].path == p.sigPath:
	case step > last && p.sigPath == sigShape[last].path && step-last < maxSigCerts:
		step = last
	default:
		return fmt.Errorf("%w: unexpected element %s in Signature", ErrSignatureProfile, se.Name.Local)
	}
	want := sigShape[step]
	n := 0
	for _, a := range se.Attr {
		if isNSDecl(a) {
			continue
		}
		n++
		if a.Name.Space != "" || a.Name.Local != want.attr || a.Value != want.value {
			return fmt.Errorf("%w: %s has %s=%q", ErrSignatureProfile, se.Name.Local, a.Name.Local, a.Value)
		}
	}
	if (want.attr != "") != (n == 1) || n > 1 {
		return fmt.Errorf("%w: %s attributes", ErrSignatureProfile, se.Name.Local)
	}
	p.sigStep++
	fr.kind = kSig
	if sigLeaves[p.sigPath] {
		fr.kind = kSigLeaf
		p.text = p.text[:0]
	}
	if p.sigPath == "/Signature/SignedInfo" {
		p.inSI = true
	}
	return nil
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

func (p *parser) charData(t xml.CharData) error {
	top := p.top()
	if top == nil {
		if !isSpace(t) {
			return fmt.Errorf("%w: text outside the root element", ErrFormat)
		}
		return nil
	}
	switch top.kind {
	case kRoot, kDomains, kDomain:
		if !isSpace(t) {
			return fmt.Errorf("%w: text in %s", ErrFormat, top.name.Local)
		}
	case kDate, kField:
		if len(p.text)+len(t) > maxFieldText {
			return fmt.Errorf("%w: text of %s too long", ErrTooLarge, top.name.Local)
		}
		p.text = append(p.text, t...)
	case kSig, kSigLeaf:
		if p.sigText += len(t); p.sigText > maxSigText {
			return fmt.Errorf("%w: Signature too long", ErrTooLarge)
		}
		if top.kind == kSig && !isSpace(t) {
			return fmt.Errorf("%w: text in %s", ErrSignatureProfile, top.name.Local)
		}
		if top.kind == kSigLeaf {
			p.text = append(p.text, t...)
		}
		if p.inSI {
			p.si.text(t)
		}
		return nil
	}
	p.doc.text(t)
	return nil
}

func (p *parser) end(ee xml.EndElement) error {
	top := p.top()
	if top == nil || top.name != ee.Name {
		return fmt.Errorf("%w: mismatched end tag %s", ErrFormat, ee.Name.Local)
	}
	fr := *top
	p.stack = p.stack[:len(p.stack)-1]
	p.ns = p.ns[:fr.nsMark]
	switch fr.kind {
	case kSig, kSigLeaf:
		if p.inSI {
			p.si.end(ee.Name)
		}
		return p.sigEnd(&fr)
	case kRoot:
		p.rootDone = true
	case kDate:
		s := strings.TrimSpace(string(p.text))
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return fmt.Errorf("%w: DateDeGeneration %q", ErrFormat, s)
		}
		p.out.generated = t.UTC()
	case kDomains:
		if len(p.out.entries) == 0 {
			return fmt.Errorf("%w: no Domaine", ErrFormat)
		}
	case kField:
		if err := p.field(fr.field); err != nil {
			return err
		}
	case kDomain:
		if p.curSeen[fNom] == 0 || p.curSeen[fDN] == 0 {
			return fmt.Errorf("%w: Domaine %d without Nom or DNCertificatOperateur", ErrFormat, len(p.out.entries)+1)
		}
		p.out.entries = append(p.out.entries, p.cur)
	}
	p.doc.end(ee.Name)
	return nil
}

func (p *parser) field(f int) error {
	b := bytes.TrimSpace(p.text)
	switch f {
	case fNom:
		p.cur.Domain = string(b)
	case fDescription:
		p.cur.Description = p.intern(b)
	case fDN:
		p.cur.OperatorDNs = append(p.cur.OperatorDNs, p.intern(b))
	case fResponsable:
		p.cur.Responsable = p.intern(b)
	case fSupport:
		p.cur.Support = p.intern(b)
	case fDateMAJ:
		t, err := time.Parse(time.RFC3339, string(b))
		if err != nil {
			return fmt.Errorf("%w: Domaine %d: DateMAJ %q", ErrFormat, len(p.out.entries)+1, b)
		}
		p.cur.Updated = t.UTC()
	}
	return nil
}

// intern returns one string per distinct value: operators, contacts and descriptions repeat
// across thousands of entries.
func (p *parser) intern(b []byte) string {
	if s, ok := p.strs[string(b)]; ok {
		return s
	}
	if p.strs == nil {
		p.strs = make(map[string]string)
	}
	s := string(b)
	p.strs[s] = s
	return s
}

func (p *parser) sigEnd(fr *frame) error {
	path := p.sigPath
	p.sigPath = p.sigPath[:fr.pathLen]
	switch path {
	case "/Signature/SignedInfo":
		p.inSI = false
		if err := p.si.w.Flush(); err != nil {
			return err
		}
		p.out.signedInfo = p.siBuf.Bytes()
	case "/Signature/SignedInfo/Reference/DigestValue":
		p.out.digestB64 = string(p.text)
	case "/Signature/SignatureValue":
		p.out.sigB64 = string(p.text)
	case "/Signature/KeyInfo/X509Data/X509Certificate":
		p.out.certsB64 = append(p.out.certsB64, string(p.text))
	case "/Signature":
		if p.sigStep < len(sigShape) {
			return fmt.Errorf("%w: Signature incomplete", ErrSignatureProfile)
		}
		p.sigDone = true
	}
	return nil
}

// decodeB64 decodes base64 text that may be split by line breaks (the ANS writes &#13;\n).
func decodeB64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}

func (d *document) verify(opts *VerifyOptions) error {
	want, err := decodeB64(d.digestB64)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%w: DigestValue is not a base64 SHA-256", ErrSignatureProfile)
	}
	if subtle.ConstantTimeCompare(want, d.digest) != 1 {
		return ErrDigestMismatch
	}
	certs := make([]*x509.Certificate, len(d.certsB64))
	for i, b := range d.certsB64 {
		der, err := decodeB64(b)
		if err != nil {
			return fmt.Errorf("%w: X509Certificate is not base64", ErrSignatureProfile)
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("%w: X509Certificate: %v", ErrSignatureProfile, err)
		}
	}
	signer := certs[0]
	pub, ok := signer.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() < 2048 {
		return fmt.Errorf("%w: signer key is not RSA of at least 2048 bits", ErrSignatureProfile)
	}
	sig, err := decodeB64(d.sigB64)
	if err != nil {
		return fmt.Errorf("%w: SignatureValue is not base64", ErrSignatureProfile)
	}
	h := sha256.Sum256(d.signedInfo)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
		return ErrBadSignature
	}
	return checkSigner(signer, certs[1:], d.generated, opts)
}

func checkSigner(signer *x509.Certificate, extra []*x509.Certificate, generated time.Time, opts *VerifyOptions) error {
	at := time.Now()
	switch {
	case opts.UseListDate:
		at = generated
	case opts.At != nil:
		at = opts.At()
	}
	if at.Before(signer.NotBefore) || at.After(signer.NotAfter) {
		return fmt.Errorf("%w: valid %s to %s, checked at %s", ErrSignerExpired,
			signer.NotBefore.UTC().Format(time.RFC3339), signer.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	if opts.PinnedSigner != nil && !bytes.Equal(opts.PinnedSigner.Raw, signer.Raw) {
		return fmt.Errorf("%w: not the pinned certificate", ErrSignerMismatch)
	}
	expected := opts.Signer
	if expected == "" {
		expected = DefaultSigner
	}
	we, err := CanonicalDN(expected)
	if err != nil {
		return fmt.Errorf("%w: expected signer %q is not a DN", ErrSignerMismatch, expected)
	}
	if got, err := CanonicalDN(signer.Subject.String()); err != nil || got != we {
		return fmt.Errorf("%w: signer subject %q, expected %q", ErrSignerMismatch, signer.Subject.String(), expected)
	}
	var issuer *x509.Certificate
	switch {
	case opts.Roots != nil:
		inter := x509.NewCertPool()
		if opts.Intermediates != nil {
			inter = opts.Intermediates.Clone()
		}
		for _, c := range extra {
			inter.AddCert(c)
		}
		chains, err := signer.Verify(x509.VerifyOptions{
			Roots: opts.Roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSignerUntrusted, err)
		}
		if len(chains[0]) > 1 {
			issuer = chains[0][1]
		}
	case opts.PinnedSigner == nil:
		return fmt.Errorf("%w: no roots nor pinned certificate configured", ErrSignerUntrusted)
	}
	for _, crl := range opts.CRLs {
		if !bytes.Equal(crl.RawIssuer, signer.RawIssuer) {
			continue
		}
		if issuer != nil {
			if err := crl.CheckSignatureFrom(issuer); err != nil {
				return fmt.Errorf("%w: CRL of the signer's issuer does not verify: %v", ErrSignerUntrusted, err)
			}
		}
		for _, rc := range crl.RevokedCertificateEntries {
			if rc.SerialNumber.Cmp(signer.SerialNumber) == 0 {
				return ErrSignerRevoked
			}
		}
	}
	return nil
}

// buildList indexes entries; strict refuses an invalid domain or DN.
func buildList(generated time.Time, entries []Entry, strict bool) (*List, error) {
	l := &List{
		generated: generated.UTC(),
		entries:   len(entries),
		byDomain:  make(map[string][]Entry, len(entries)),
		dns:       make(map[string][]string, len(entries)),
		operators: make(map[string]struct{}),
	}
	canon := make(map[string]string) // the list has a few hundred distinct DNs
	for i, e := range entries {
		key, err := NormalizeDomain(e.Domain)
		if err != nil {
			if strict {
				return nil, fmt.Errorf("%w: Domaine %d: %v", ErrFormat, i+1, err)
			}
			key = strings.ToLower(strings.TrimSpace(e.Domain))
		}
		l.byDomain[key] = append(l.byDomain[key], e)
		for _, dn := range e.OperatorDNs {
			c, ok := canon[dn]
			if !ok {
				if c, err = CanonicalDN(dn); err != nil {
					if strict {
						return nil, fmt.Errorf("%w: Domaine %d: invalid DNCertificatOperateur", ErrFormat, i+1)
					}
					continue
				}
				canon[dn] = c
				l.operators[c] = struct{}{}
			}
			l.dns[key] = append(l.dns[key], c)
		}
	}
	return l, nil
}
