package imapd

import (
	"net/mail"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// stripComments removes RFC 5322 comments (CFWS "( … )", nested) outside quoted strings and
// the spaces around '@', so net/mail can parse "<user (c)@ (c) domain.org>". Input is bounded
// by the caller (a header field).
func stripComments(s string) string {
	var b strings.Builder
	depth := 0
	quoted := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && (quoted || depth > 0) && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case quoted:
			b.WriteByte(c)
			if c == '"' {
				quoted = false
			}
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '"':
			quoted = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	for strings.Contains(out, " @") || strings.Contains(out, "@ ") {
		out = strings.ReplaceAll(strings.ReplaceAll(out, " @", "@"), "@ ", "@")
	}
	return out
}

// stripRoutes removes the obsolete source routes of an address header, "<@a.org,@b.org:user@c.org>"
// becoming "<user@c.org>" (RFC 5322 §4.4 obs-angle-addr: the route is to be ignored; net/mail does
// not parse it). Quoted strings and comments are left alone. The IMAP envelope cannot show the
// route either: go-imap's imap.Address has no at-domain-list (RFC 3501 §7.4.2), so it is NIL.
func stripRoutes(v string) string {
	if !strings.Contains(v, "<@") && !strings.Contains(v, "< @") {
		return v
	}
	var b strings.Builder
	var l addrLex
	for i := 0; i < len(v); i++ {
		if copyEscape(&b, v, i) {
			i++
			continue
		}
		c := v[i]
		free := l.free(c)
		b.WriteByte(c)
		if free || c != '<' || !l.angle {
			continue
		}
		rest := strings.TrimLeft(v[i+1:], " \t")
		end := strings.IndexAny(rest, ":>")
		if strings.HasPrefix(rest, "@") && end > 0 && rest[end] == ':' && !strings.ContainsAny(rest[:end], "\"(<\\") {
			i = len(v) - len(rest) + end // the ':' that ends the route
		}
	}
	return b.String()
}

// addressText returns the addresses of an address header in the form "Name <local@domain>",
// one per line, for SEARCH FROM/TO/CC/BCC; "" when the value does not parse.
func addressText(v string) string {
	v = stripRoutes(v)
	list, err := mail.ParseAddressList(v)
	if err != nil {
		list, err = mail.ParseAddressList(stripComments(v))
		if err != nil {
			return ""
		}
	}
	var b strings.Builder
	for _, a := range list {
		if a.Name != "" {
			b.WriteString(a.Name)
			b.WriteByte(' ')
		}
		b.WriteString("<" + a.Address + ">\n")
	}
	return b.String()
}

func isAddressHeader(key string) bool {
	switch strings.ToLower(key) {
	case "from", "to", "cc", "bcc", "sender", "reply-to":
		return true
	}
	return false
}

// addrLex follows an address header byte by byte (RFC 5322 §3.2.4, §3.2.2, §3.4): inside a
// quoted string, a (nested) comment, or angle brackets. The caller handles backslash escapes.
type addrLex struct {
	quoted, angle bool
	depth         int
}

// free updates the state with c and reports whether c stands outside quoted strings and
// comments without being one of their delimiters or an angle bracket: a byte that may carry
// structure (',', ':', ';') when l.angle is false.
func (l *addrLex) free(c byte) bool {
	switch {
	case l.quoted:
		l.quoted = c != '"'
	case c == '"':
		l.quoted = true
	case c == '(':
		l.depth++
	case c == ')' && l.depth > 0:
		l.depth--
	case l.depth > 0:
	case c == '<':
		l.angle = true
	case c == '>':
		l.angle = false
	default:
		return true
	}
	return false
}

// copyEscape writes the quoted pair at v[i] (a backslash and the byte after it) to b and
// reports whether there was one.
func copyEscape(b *strings.Builder, v string, i int) bool {
	if v[i] != '\\' || i+1 >= len(v) {
		return false
	}
	b.WriteString(v[i : i+2])
	return true
}

// hasGroup reports whether an address header uses the group syntax "name: a, b;" (RFC 5322
// §3.4), which the envelope must show with group start and end markers (RFC 3501 §7.4.2).
func hasGroup(v string) bool {
	var l addrLex
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' {
			i++
			continue
		}
		if l.free(c) && c == ':' && !l.angle {
			return true
		}
	}
	return false
}

// groupAddresses parses an address list with groups into envelope addresses: a group is
// (NIL NIL "name" NIL), its members, then (NIL NIL NIL NIL).
func groupAddresses(v string) []imap.Address {
	var out []imap.Address
	var cur strings.Builder
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		a, err := mail.ParseAddress(s)
		if err != nil {
			if a, err = mail.ParseAddress(stripComments(s)); err != nil {
				return
			}
		}
		local, host, _ := strings.Cut(a.Address, "@")
		out = append(out, imap.Address{Name: a.Name, Mailbox: local, Host: host})
	}
	var l addrLex
	inGroup := false
	for i := 0; i < len(v); i++ {
		if copyEscape(&cur, v, i) {
			i++
			continue
		}
		c := v[i]
		if l.free(c) && !l.angle {
			switch {
			case c == ':' && !inGroup:
				name := strings.TrimSpace(stripComments(cur.String()))
				cur.Reset()
				out = append(out, imap.Address{Mailbox: strings.Trim(name, `"`)})
				inGroup = true
				continue
			case c == ',':
				flush()
				continue
			case c == ';' && inGroup:
				flush()
				out = append(out, imap.Address{})
				inGroup = false
				continue
			}
		}
		cur.WriteByte(c)
	}
	flush()
	if inGroup {
		out = append(out, imap.Address{})
	}
	return out
}

// envelopeAddressFields are the address fields of an envelope, in RFC 3501 §7.4.2 order.
var envelopeAddressFields = []string{"From", "Sender", "Reply-To", "To", "Cc", "Bcc"}

// envelope is imapserver.ExtractEnvelope with the group syntax kept in address lists and the
// obsolete source routes ignored (instead of losing the whole address list).
func envelope(h textproto.Header) *imap.Envelope {
	routed := false
	for _, key := range envelopeAddressFields {
		if v := h.Get(key); v != stripRoutes(v) {
			routed = true
		}
	}
	if routed {
		h = h.Copy()
		for _, key := range envelopeAddressFields {
			if v := h.Get(key); v != "" {
				h.Set(key, stripRoutes(v))
			}
		}
	}
	env := imapserver.ExtractEnvelope(h)
	for i, dst := range []*[]imap.Address{&env.From, &env.Sender, &env.ReplyTo, &env.To, &env.Cc, &env.Bcc} {
		if v := h.Get(envelopeAddressFields[i]); v != "" && hasGroup(v) {
			*dst = groupAddresses(v)
		}
	}
	return env
}
