package connector

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // display names decode as the IMAP server decodes them
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
)

// Header errors; both wrap errHeader.
var (
	// errFieldName: a field line the mailbox store's parser cannot read as name ":" value.
	errFieldName = fmt.Errorf("%w: field name", errHeader)
	// errObsField: white space between a field name and its colon, at submission.
	errObsField = fmt.Errorf("%w: white space before the colon", errHeader)
)

// dupFieldError is a field allowed once that appears more than once, at submission.
type dupFieldError struct{ name string }

func (e *dupFieldError) Error() string { return "connector: malformed header: more than one " + e.name }
func (e *dupFieldError) Unwrap() error { return errHeader }

// onceFields are the fields RFC 5322 §3.6 allows at most once in a message (its table: orig-date,
// from, sender, reply-to, to, cc, bcc, message-id, in-reply-to, references, subject), in the
// canonical form textproto gives names.
var onceFields = []string{"Date", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Message-Id", "In-Reply-To", "References", "Subject"}

// parseHeader reads the header block hdr (CRLF lines up to and including the empty line, as
// readHeader returns it; strictCRLF has refused any bare CR or LF) with go-message's
// textproto.ReadHeader, the parser the IMAP server (transport/imapd) reads stored messages
// with, so that the fields checked here are the fields a mailbox shows later. Before that, it
// checks every field line against the rules below.
//
// On both listeners, a field name must be 1*ftext, printable US-ASCII but ':' (RFC 5322
// §3.6.8), and a line that does not continue a field (RFC 5322 §2.2.3) must hold a colon.
// textproto.ReadHeader stops at anything else and the IMAP server then shows an empty header
// (an all-NIL ENVELOPE) for a message delivered as is, while other readers skip the line or
// take the rest for the fields. None of this is obsolete syntax a receiver must accept: the
// obsolete forms keep field-name = 1*ftext (RFC 5322 §4.5.8).
//
// At submission (strict) the message is new, and its author's software must not generate the
// obsolete syntax (RFC 5322 §4). A submission server may refuse a syntactically invalid message
// (RFC 6409 §6.3), and had better refuse it than send it damaged (RFC 6409 §3.2), so it refuses
// two obsolete forms that readers interpret differently:
//   - white space between a field name and its colon (RFC 5322 §4.5, obs-from §4.5.2,
//     obs-optional §4.5.8): textproto trims it while net/mail keeps "From " as another name,
//     so a check and a display reading "From : a" and "From: b" with two readers see two
//     different senders;
//   - a second instance of a field RFC 5322 §3.6 allows once (its table): the meaning of
//     several is unspecified (RFC 5322 §4.5), readers keep the first or the last one, and the
//     IMAP ENVELOPE shows the first.
//
// The relay accepts both forms, which RFC 5322 §4 says a receiver must accept: another
// operator's submission server answers for what its users send, and textproto reads
// "From :" as From, so the mailbox shows what the relay received.
func parseHeader(hdr []byte, strict bool) (textproto.Header, error) {
	for rest, first := hdr, true; len(rest) > 0; first = false {
		line, tail, _ := bytes.Cut(rest, []byte("\r\n"))
		rest = tail
		if len(line) == 0 { // the empty line that ends the header
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if first { // a continuation of no field
				return textproto.Header{}, errFieldName
			}
			continue
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return textproto.Header{}, errFieldName
		}
		if trimmed := bytes.TrimRight(name, " \t"); len(trimmed) != len(name) {
			if strict {
				return textproto.Header{}, errObsField
			}
			name = trimmed
		}
		if !ftext(name) {
			return textproto.Header{}, errFieldName
		}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hdr)))
	if err != nil {
		return textproto.Header{}, errFieldName
	}
	if strict {
		for _, k := range onceFields {
			if len(h.Values(k)) > 1 {
				return textproto.Header{}, &dupFieldError{k}
			}
		}
	}
	return h, nil
}

// ftext reports whether name is 1*ftext (RFC 5322 §3.6.8): %d33-57 / %d59-126.
func ftext(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// checkFrom verifies that the From field holds exactly the authenticated BAL, and Sender too
// when there is one. h comes from parseHeader (strict): each appears at most once.
func (ss *session) checkFrom(h textproto.Header) error {
	mh := mail.Header{Header: message.Header{Header: h}}
	list, err := mh.AddressList("From")
	if err != nil || len(list) != 1 || !strings.EqualFold(list[0].Address, ss.bal) {
		return errFromNotOwned
	}
	if h.Has("Sender") {
		list, err := mh.AddressList("Sender")
		if err != nil || len(list) != 1 || !strings.EqualFold(list[0].Address, ss.bal) {
			return errFromNotOwned
		}
	}
	return nil
}

// Replies to a header parseHeader refused: 554 for a syntactic problem in the data (RFC 6409
// §6.3), X.6.0 other or undefined media error (RFC 3463 §3.7). The texts name the rule
// broken, never a value: a field name is named only when it is one of onceFields.
var (
	replyFieldName = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed header field name (RFC 5322 ftext, then a colon)"}
	replyObsField  = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "White space before the colon of a header field"}
)

// headerReply is the reply and audit reason for an error of parseHeader.
func headerReply(err error) (*smtp.SMTPError, string) {
	var dup *dupFieldError
	switch {
	case errors.As(err, &dup):
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Header field " + dup.name + " appears more than once"},
			"duplicate_header: " + dup.name
	case errors.Is(err, errObsField):
		return replyObsField, "malformed_header: obs_whitespace"
	case errors.Is(err, errFieldName):
		return replyFieldName, "malformed_header: field_name"
	}
	return replyBadHeader, "malformed_header"
}
