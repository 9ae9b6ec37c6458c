package whitelist

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
)

// Exclusive XML Canonicalization 1.0 without comments (https://www.w3.org/TR/xml-exc-c14n/),
// written as a stream over the raw tokens of encoding/xml. The caller resolves prefixes (it
// keeps the in-scope namespaces of the input) and feeds only the nodes of the node-set: the
// document minus the Signature element for the Reference, the SignedInfo element for the
// signature. Comments are not output; the caller refuses processing instructions and DTDs, and
// attribute values holding a literal tab, CR or LF (their XML normalisation is not done by
// encoding/xml), so what is canonicalized here is exactly what a conforming parser sees.

const nsXML = "http://www.w3.org/XML/1998/namespace"

type nsBinding struct{ prefix, uri string }

type c14nAttr struct{ uri, local, qname, value string }

// resolver returns the namespace URI bound to prefix in the input ("" prefix: the default
// namespace, "" when none).
type resolver func(prefix string) (string, bool)

type c14n struct {
	w        *bufio.Writer
	rendered []nsBinding // namespace declarations output by the open elements
	marks    []int       // len(rendered) before each open element
	decls    []nsBinding // scratch
	attrs    []c14nAttr  // scratch
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func isNSDecl(a xml.Attr) bool {
	return (a.Name.Space == "" && a.Name.Local == "xmlns") || a.Name.Space == "xmlns"
}

// utilize adds prefix to the declarations to render on the current element when the nearest
// output ancestor did not render the same binding (exc-c14n §3, "visibly utilized").
func (c *c14n) utilize(prefix string, resolve resolver) error {
	if prefix == "xml" {
		return nil
	}
	for _, d := range c.decls {
		if d.prefix == prefix {
			return nil
		}
	}
	uri, ok := resolve(prefix)
	if !ok {
		return fmt.Errorf("%w: undeclared namespace prefix %q", ErrFormat, prefix)
	}
	for i := len(c.rendered) - 1; i >= 0; i-- {
		if c.rendered[i].prefix == prefix {
			if c.rendered[i].uri == uri {
				return nil
			}
			c.decls = append(c.decls, nsBinding{prefix, uri})
			return nil
		}
	}
	if prefix == "" && uri == "" {
		return nil // no default namespace in the output context: nothing to undeclare
	}
	c.decls = append(c.decls, nsBinding{prefix, uri})
	return nil
}

func (c *c14n) start(se *xml.StartElement, resolve resolver) error {
	c.decls, c.attrs = c.decls[:0], c.attrs[:0]
	if err := c.utilize(se.Name.Space, resolve); err != nil {
		return err
	}
	for _, a := range se.Attr {
		if isNSDecl(a) {
			continue
		}
		uri := ""
		if a.Name.Space != "" {
			if err := c.utilize(a.Name.Space, resolve); err != nil {
				return err
			}
			if a.Name.Space == "xml" {
				uri = nsXML
			} else {
				uri, _ = resolve(a.Name.Space)
			}
		}
		c.attrs = append(c.attrs, c14nAttr{uri, a.Name.Local, qname(a.Name), a.Value})
	}
	if len(c.decls) > 1 {
		slices.SortFunc(c.decls, func(a, b nsBinding) int { return strings.Compare(a.prefix, b.prefix) })
	}
	if len(c.attrs) > 1 {
		slices.SortFunc(c.attrs, func(a, b c14nAttr) int {
			if a.uri != b.uri {
				return strings.Compare(a.uri, b.uri)
			}
			return strings.Compare(a.local, b.local)
		})
	}
	for i := 1; i < len(c.attrs); i++ {
		if c.attrs[i].uri == c.attrs[i-1].uri && c.attrs[i].local == c.attrs[i-1].local {
			return fmt.Errorf("%w: duplicate attribute %s", ErrFormat, c.attrs[i].qname)
		}
	}
	c.marks = append(c.marks, len(c.rendered))
	w := c.w
	w.WriteByte('<')
	w.WriteString(qname(se.Name))
	for _, d := range c.decls {
		if d.prefix == "" {
			w.WriteString(` xmlns="`)
		} else {
			w.WriteString(` xmlns:`)
			w.WriteString(d.prefix)
			w.WriteString(`="`)
		}
		escapeAttr(w, d.uri)
		w.WriteByte('"')
		c.rendered = append(c.rendered, d)
	}
	for _, a := range c.attrs {
		w.WriteByte(' ')
		w.WriteString(a.qname)
		w.WriteString(`="`)
		escapeAttr(w, a.value)
		w.WriteByte('"')
	}
	w.WriteByte('>')
	return nil
}

func (c *c14n) end(name xml.Name) {
	c.w.WriteString("</")
	c.w.WriteString(qname(name))
	c.w.WriteByte('>')
	n := len(c.marks) - 1
	c.rendered = c.rendered[:c.marks[n]]
	c.marks = c.marks[:n]
}

// text writes character data, escaped as exc-c14n §2.3 / C14N 1.0 §2.3 say.
func (c *c14n) text(b []byte) {
	w := c.w
	last := 0
	for i, ch := range b {
		var esc string
		switch ch {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\r':
			esc = "&#xD;"
		default:
			continue
		}
		w.Write(b[last:i])
		w.WriteString(esc)
		last = i + 1
	}
	w.Write(b[last:])
}

func escapeAttr(w *bufio.Writer, s string) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '"':
			esc = "&quot;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			continue
		}
		w.WriteString(s[last:i])
		w.WriteString(esc)
		last = i + 1
	}
	w.WriteString(s[last:])
}
