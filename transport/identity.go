package transport

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"strings"

	"github.com/mssante-go/sdk/whitelist"
)

// attrNames are the short names of the subject attributes, as the liste blanche and RFC 4514
// write them.
var attrNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.5":                    "SERIALNUMBER",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "STREET",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.17":                   "POSTALCODE",
	"2.5.4.42":                   "GN",
	"2.5.4.4":                    "SN",
	"2.5.4.97":                   "organizationIdentifier",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
	"1.2.840.113549.1.9.1":       "emailAddress",
}

// SubjectDN renders the subject of c as the liste blanche writes DNCertificatOperateur: the
// attributes in reverse order of the certificate (RFC 4514 order, so CN first for IGC-Santé
// certificates), "TYPE=value" joined by "," without spaces, for example
// "CN=mss.example.fr,OU=12345678200010,O=HOPITAL,ST=Haute-Garonne (31),C=FR".
//
// Values are written as they are, except that the characters , + " \ < > ; are escaped with a
// backslash so the result stays unambiguous; the real list has none of them. A multi-valued RDN
// is flattened into separate attributes. An attribute without a known short name is written
// with its dotted OID, and a non-string value as "#" and the hex of its DER.
func SubjectDN(c *x509.Certificate) string {
	names := c.Subject.Names
	var b strings.Builder
	for i := len(names) - 1; i >= 0; i-- {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		oid := names[i].Type.String()
		if n, ok := attrNames[oid]; ok {
			b.WriteString(n)
		} else {
			b.WriteString(oid)
		}
		b.WriteByte('=')
		switch v := names[i].Value.(type) {
		case string:
			escapeValue(&b, v)
		default:
			der, err := asn1.Marshal(v)
			if err != nil {
				b.WriteString("#")
				continue
			}
			b.WriteString("#" + hex.EncodeToString(der))
		}
	}
	return b.String()
}

func escapeValue(b *strings.Builder, v string) {
	for _, r := range v {
		switch r {
		case ',', '+', '"', '\\', '<', '>', ';':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
}

// PeerDN returns the subject DN (see [SubjectDN]) of the peer's leaf certificate.
//
// It trusts the connection's verification: call it on connections made with [ServerConfig] or
// [ClientConfig] (whose handshakes fail unless the peer's chain verified), or with any config
// that verifies the peer; it refuses connections whose handshake is not complete.
func PeerDN(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete {
		return "", errorf("peer DN: handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return "", ErrNoPeerCertificate
	}
	return SubjectDN(cs.PeerCertificates[0]), nil
}

// EqualDN reports whether two DNs in whitelist form name the same subject: it ignores the case
// of types and values, spaces around the "," "+" and "=" separators, and the order of the
// attributes, and nothing else (a value that differs by an inner space or a hyphen differs).
// Backslash escapes are decoded before comparing. A DN that does not parse equals nothing.
// It compares the forms of [whitelist.CanonicalDN], so the connector and the whitelist agree.
func EqualDN(a, b string) bool {
	ca, err := whitelist.CanonicalDN(a)
	if err != nil {
		return false
	}
	cb, err := whitelist.CanonicalDN(b)
	return err == nil && ca == cb
}
