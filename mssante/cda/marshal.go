package cda

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Errors of Parse.
var (
	ErrSyntax   = errors.New("cda: not a well-formed CDA document")
	ErrTooLarge = errors.New("cda: document too large")
	ErrInvalid  = errors.New("cda: document does not conform")
)

// Marshal writes the document as UTF-8 XML with the XML declaration the CI-SIS requires and no
// schemaLocation. The output depends only on the document: same document, same bytes.
func Marshal(d *Document) ([]byte, error) {
	var buf bytes.Buffer
	if err := Encode(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Encode writes the document to w (see [Marshal]).
func Encode(w io.Writer, d *Document) error {
	c := *d
	c.XMLNSXSI = NamespaceXSI
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return fmt.Errorf("cda: marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// ParseOptions tune [Parse]. The zero value is tolerant with the default size limit.
type ParseOptions struct {
	// MaxSize bounds the document size in bytes (0 = 64 MiB; -1 = no limit).
	MaxSize int64
	// Strict makes Parse fail with ErrInvalid when [Validate] finds any error.
	Strict bool
}

const defaultMaxSize = 64 << 20

// Parse reads a CDA document. By default it is tolerant: it accepts any well-formed
// ClinicalDocument in the HL7 namespace and ignores elements it does not model; call
// [Validate] for the CI-SIS rules, or set Strict.
func Parse(r io.Reader, opts *ParseOptions) (*Document, error) {
	var o ParseOptions
	if opts != nil {
		o = *opts
	}
	limit := o.MaxSize
	if limit == 0 {
		limit = defaultMaxSize
	}
	var data []byte
	var err error
	if limit > 0 {
		data, err = io.ReadAll(io.LimitReader(r, limit+1))
		if err == nil && int64(len(data)) > limit {
			return nil, fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, limit)
		}
	} else {
		data, err = io.ReadAll(r)
	}
	if err != nil {
		return nil, fmt.Errorf("cda: read: %w", err)
	}
	return ParseBytes(data, &o)
}

// ParseBytes is [Parse] on a byte slice (the size limit is not applied).
func ParseBytes(data []byte, opts *ParseOptions) (*Document, error) {
	// A large encapsulated body is cut out before XML decoding and put back afterwards: base64
	// holds no markup, so decoding the rest is equivalent and much cheaper.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	rest, b64, cut := cutB64(data)
	d := new(Document)
	dec := xml.NewDecoder(bytes.NewReader(rest))
	dec.Strict = true
	dec.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		if strings.EqualFold(label, "utf-8") {
			return in, nil
		}
		return nil, fmt.Errorf("unsupported encoding %q", label)
	}
	if err := decodeRoot(dec, d); err != nil {
		return nil, err
	}
	// Nothing but comments, processing instructions and space may follow.
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, fmt.Errorf("%w: text after the root element", ErrSyntax)
			}
		case xml.StartElement:
			if !d.AutoPresentable {
				return nil, fmt.Errorf("%w: second root element", ErrSyntax)
			}
			if err := dec.Skip(); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
			}
		case xml.EndElement:
			if !d.AutoPresentable {
				return nil, fmt.Errorf("%w: unexpected end element", ErrSyntax)
			}
		}
	}
	if d.XMLName.Space != NamespaceHL7 {
		return nil, fmt.Errorf("%w: root is not {urn:hl7-org:v3}ClinicalDocument", ErrSyntax)
	}
	if cut {
		if d.Component == nil || d.Component.NonXMLBody == nil {
			return nil, fmt.Errorf("%w: misplaced encapsulated text", ErrSyntax)
		}
		if d.Component.NonXMLBody.Text.Data != "" {
			return nil, fmt.Errorf("%w: misplaced encapsulated text", ErrSyntax)
		}
		d.Component.NonXMLBody.Text.Data = string(b64)
		d.Component.NonXMLBody.Text.plain = true
	}
	if opts != nil && opts.Strict {
		if errs := Validate(d).Errors(); len(errs) > 0 {
			return d, &ValidationError{Findings: errs}
		}
	}
	return d, nil
}

// nsXSLT is the namespace of an "auto-présentable" CDA: an XSLT stylesheet that embeds the
// ClinicalDocument (seen in ANS reference packages, e.g. BIO-CR-BIO auto-présentable).
const nsXSLT = "http://www.w3.org/1999/XSL/Transform"

// decodeRoot decodes the ClinicalDocument: the root element, or the first ClinicalDocument
// inside an XSLT stylesheet root (auto-présentable).
func decodeRoot(dec *xml.Decoder, d *Document) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSyntax, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == NamespaceHL7 && t.Name.Local == "ClinicalDocument" {
				d.AutoPresentable = depth > 0
				if err := dec.DecodeElement(d, &t); err != nil {
					return fmt.Errorf("%w: %v", ErrSyntax, err)
				}
				return nil
			}
			if depth == 0 && !(t.Name.Space == nsXSLT && t.Name.Local == "stylesheet") {
				return fmt.Errorf("%w: root is not {urn:hl7-org:v3}ClinicalDocument", ErrSyntax)
			}
			depth++
		case xml.EndElement:
			depth--
			if depth <= 0 {
				return fmt.Errorf("%w: no ClinicalDocument in the stylesheet", ErrSyntax)
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) != 0 {
				return fmt.Errorf("%w: text before the root element", ErrSyntax)
			}
		}
	}
}

// b64Open finds the start tag of the encapsulated text: <text …representation="B64"…> inside
// nonXMLBody, with or without a namespace prefix.
var b64Open = regexp.MustCompile(`<(?:[A-Za-z_][\w.-]*:)?nonXMLBody\b[^<>]*>\s*<((?:[A-Za-z_][\w.-]*:)?text)\b[^<>]*>`)

// cutB64 removes the content of the nonXMLBody text element when it is long and pure base64
// (letters, digits, +, /, = and white space), returning the rest and the content. Anything
// else (entities, CDATA, comments) is left to the XML decoder.
func cutB64(data []byte) (rest, b64 []byte, ok bool) {
	if len(data) < 1<<16 {
		return data, nil, false
	}
	// Exactly one nonXMLBody element (its start and end tags), so a look-alike in a comment
	// cannot be taken for it: then the decoded document has no body and Parse fails.
	if bytes.Count(data, []byte("nonXMLBody")) != 2 {
		return data, nil, false
	}
	i := bytes.Index(data, []byte("nonXMLBody"))
	lo, hi := max(0, i-64), min(len(data), i+4096)
	idx := b64Open.FindSubmatchIndex(data[lo:hi])
	if idx == nil {
		return data, nil, false
	}
	start := lo + idx[1]
	name := data[lo+idx[2] : lo+idx[3]]
	end := len(data)
	if i := bytes.IndexByte(data[start:], '<'); i >= 0 {
		end = start + i
	}
	// Character data without entity references is its own text; any byte that is not base64
	// makes Content fail later.
	if bytes.IndexByte(data[start:end], '&') >= 0 {
		return data, nil, false
	}
	closing := append(append([]byte("</"), name...), '>')
	if !bytes.HasPrefix(data[end:], closing) {
		return data, nil, false
	}
	rest = make([]byte, 0, len(data)-(end-start))
	rest = append(append(rest, data[:start]...), data[end:]...)
	return rest, data[start:end], true
}

// Content returns the encapsulated document of an N1 body, decoded.
func (d *Document) Content() (mediaType string, data []byte, err error) {
	if d.Component == nil || d.Component.NonXMLBody == nil {
		return "", nil, errors.New("cda: no nonXMLBody")
	}
	t := &d.Component.NonXMLBody.Text
	if t.Representation != RepresentationB64 {
		return "", nil, fmt.Errorf("cda: representation %q is not B64", t.Representation)
	}
	s := t.Data
	if !t.plain && strings.ContainsAny(s, "&<") {
		// Entities or markup: decode the element text properly.
		var v struct {
			Text string `xml:",chardata"`
		}
		if err := xml.Unmarshal([]byte("<t>"+s+"</t>"), &v); err != nil {
			return "", nil, fmt.Errorf("cda: encapsulated text: %w", err)
		}
		s = v.Text
	}
	// The decoder skips CR and LF itself; spaces and tabs, rare, are removed on failure.
	data, err = base64.StdEncoding.DecodeString(s)
	if err != nil && strings.ContainsAny(s, " \t") {
		data, err = base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, s))
	}
	if err != nil {
		return "", nil, fmt.Errorf("cda: encapsulated text is not base64: %w", err)
	}
	return t.MediaType, data, nil
}

// uuidFor derives a stable UUID (name-based, SHA-1, RFC 9562 version 5 layout) for a part of a
// document, so that building the same input twice gives the same bytes.
func uuidFor(seed, name string) string {
	h := sha1.Sum([]byte(seed + "\x00" + name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16]))
}

var (
	oidRE  = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)
	uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
)

func validOID(s string) bool  { return len(s) <= 64 && oidRE.MatchString(s) }
func validUUID(s string) bool { return uuidRE.MatchString(s) }
