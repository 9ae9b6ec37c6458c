package whitelist

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Sign writes l as the ANS publishes it (same layout, same enveloped XMLDSig profile), signed
// with key, for tests and the dev sandbox. key must be an RSA key (the profile is RSA-SHA256);
// chain is the signer certificate first, then its intermediates, all embedded in KeyInfo.
// Entries are written by domain, in byte order of their normalised name.
func Sign(l *List, key crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	if l == nil || len(chain) == 0 {
		return nil, errors.New("whitelist: Sign needs a list and the signer certificate")
	}
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		return nil, errors.New("whitelist: Sign needs an RSA key (the ANS profile is RSA-SHA256)")
	}
	domains := make([]string, 0, len(l.byDomain))
	for d := range l.byDomain {
		domains = append(domains, d)
	}
	slices.Sort(domains)

	// The canonical form of the document minus the Signature is exactly what is written from
	// the root start tag to the Signature, plus the root end tag: the layout below has no
	// declaration to drop, no empty element to expand, and text escaped as exc-c14n does.
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>`)
	start := b.Len()
	b.WriteString(`<ListeBlancheMSSante xmlns="` + Namespace + `">` + "\n")
	b.WriteString("    <DateDeGeneration>" + l.generated.UTC().Format(time.RFC3339) + "</DateDeGeneration>\n")
	b.WriteString("    <ListeDomaines>\n")
	for _, d := range domains {
		for _, e := range l.byDomain[d] {
			b.WriteString("        <Domaine>\n")
			if err := writeField(&b, "Nom", e.Domain); err != nil {
				return nil, err
			}
			if err := writeField(&b, "Description", e.Description); err != nil {
				return nil, err
			}
			for _, dn := range e.OperatorDNs {
				if err := writeField(&b, "DNCertificatOperateur", dn); err != nil {
					return nil, err
				}
			}
			if err := writeField(&b, "ResponsableContact", e.Responsable); err != nil {
				return nil, err
			}
			if err := writeField(&b, "SupportContact", e.Support); err != nil {
				return nil, err
			}
			if !e.Updated.IsZero() {
				b.WriteString("            <DateMAJ>" + e.Updated.UTC().Format(time.RFC3339) + "</DateMAJ>\n")
			}
			b.WriteString("        </Domaine>\n")
		}
	}
	b.WriteString("    </ListeDomaines>\n")
	h := sha256.New()
	h.Write(b.Bytes()[start:])
	h.Write([]byte("</ListeBlancheMSSante>"))
	digest := base64.StdEncoding.EncodeToString(h.Sum(nil))

	signedInfo := func(canonical bool) string {
		ns, closeEmpty := "", func(n string) string { return "/>" }
		if canonical {
			ns = ` xmlns="` + nsDSig + `"`
			closeEmpty = func(n string) string { return "></" + n + ">" }
		}
		return `<SignedInfo` + ns + `>` +
			`<CanonicalizationMethod Algorithm="` + algExcC14N + `"` + closeEmpty("CanonicalizationMethod") +
			`<SignatureMethod Algorithm="` + algRSASHA256 + `"` + closeEmpty("SignatureMethod") +
			`<Reference URI=""><Transforms>` +
			`<Transform Algorithm="` + algEnveloped + `"` + closeEmpty("Transform") +
			`<Transform Algorithm="` + algExcC14N + `"` + closeEmpty("Transform") +
			`</Transforms><DigestMethod Algorithm="` + algSHA256 + `"` + closeEmpty("DigestMethod") +
			`<DigestValue>` + digest + `</DigestValue></Reference></SignedInfo>`
	}
	sum := sha256.Sum256([]byte(signedInfo(true)))
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("whitelist: sign: %w", err)
	}
	b.WriteString(`<Signature xmlns="` + nsDSig + `">` + signedInfo(false))
	b.WriteString("<SignatureValue>" + wrapB64(sig) + "</SignatureValue><KeyInfo><X509Data>")
	for _, c := range chain {
		b.WriteString("<X509Certificate>" + wrapB64(c.Raw) + "</X509Certificate>")
	}
	b.WriteString("</X509Data></KeyInfo></Signature></ListeBlancheMSSante>")
	return b.Bytes(), nil
}

// wrapB64 encodes as the ANS does: 76-character lines separated by a character reference to CR
// and a line feed.
func wrapB64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76])
		out.WriteString("&#13;\n")
		s = s[76:]
	}
	out.WriteString(s)
	return out.String()
}

func writeField(b *bytes.Buffer, name, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("whitelist: %s is not UTF-8", name)
	}
	b.WriteString("            <" + name + ">")
	for _, r := range v {
		switch {
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '\r':
			b.WriteString("&#xD;")
		case r == '\t' || r == '\n' || (r >= 0x20 && r != 0xFFFE && r != 0xFFFF && !(r >= 0xD800 && r <= 0xDFFF)):
			b.WriteRune(r)
		default:
			return fmt.Errorf("whitelist: %s holds a character XML cannot carry", name)
		}
	}
	b.WriteString("</" + name + ">\n")
	return nil
}
