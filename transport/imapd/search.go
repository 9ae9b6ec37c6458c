package imapd

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // SEARCH in non-UTF-8 bodies
	"github.com/emersion/go-message/mail"

	"github.com/mssante-go/sdk/transport/mailbox"
)

// candidate is one message being matched against SEARCH criteria (RFC 3501 §6.4.4). The
// index answers flag, size, date and number keys; the content is read only for header and
// text keys, at most once.
type candidate struct {
	s      *session
	seq    uint32
	total  uint32
	maxUID uint32
	msg    *mailbox.Message
	hdr    []byte // indexed header block, nil when not indexed
	c      *content
	// deferred: the content may not be read now (errDeferred instead).
	deferred bool
}

// errDeferred ends a first-pass match that needs the message's content.
var errDeferred = errors.New("imapd: search needs the content")

// matches reports, for each message of the selected folder (by index in sel.uids), whether
// it matches criteria. A first pass answers from the index and the indexed headers; the
// messages whose answer needs their content are then read in one Store.Read walk, which the
// PostgreSQL store serves with a query per batch of bodies rather than one per message. A
// message expunged meanwhile does not match.
func (s *session) matches(criteria *imap.SearchCriteria, idx map[uint32]*mailbox.Message, hdrs map[uint32][]byte) ([]bool, error) {
	sel := s.sel
	total, maxUID := sel.uids.len(), sel.uids.last()
	matched := make([]bool, total)
	if total == 0 {
		return matched, nil
	}
	candidateAt := func(i, uid uint32) *candidate {
		return &candidate{s: s, seq: i + 1, msg: idx[uid], total: total, maxUID: maxUID, hdr: hdrs[uid]}
	}
	var later []uint32
	at := map[uint32]uint32{}
	for i, uid := range sel.uids.all(0) {
		if idx[uid] == nil {
			continue
		}
		c := candidateAt(i, uid)
		c.deferred = true
		ok, err := c.match(criteria)
		c.release()
		switch {
		case errors.Is(err, errDeferred):
			later = append(later, uid)
			at[uid] = i
		case err != nil:
			return nil, err
		default:
			matched[i] = ok
		}
	}
	err := s.store().Read(s.ctx, sel.id, later, func(uid uint32, r io.ReaderAt, size int64) error {
		i := at[uid]
		c := candidateAt(i, uid)
		c.c = &content{s: s, uid: uid, raw: c.hdr, ra: r, size: size}
		ok, err := c.match(criteria)
		matched[i] = ok
		return err
	})
	return matched, err
}

// needsHeader reports whether criteria read header fields (HEADER, FROM, SENTSINCE, …).
func needsHeader(cr *imap.SearchCriteria) bool {
	if len(cr.Header) > 0 || !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		return true
	}
	for i := range cr.Not {
		if needsHeader(&cr.Not[i]) {
			return true
		}
	}
	for i := range cr.Or {
		if needsHeader(&cr.Or[i][0]) || needsHeader(&cr.Or[i][1]) {
			return true
		}
	}
	return false
}

func (c *candidate) release() {
	if c.c != nil {
		c.c.close()
	}
}

func (c *candidate) content() *content {
	if c.c == nil {
		c.c = &content{s: c.s, uid: c.msg.UID, raw: c.hdr}
	}
	return c.c
}

func (c *candidate) match(cr *imap.SearchCriteria) (bool, error) {
	for _, set := range cr.SeqNum {
		if !seqIn(set, c.seq, c.total) {
			return false, nil
		}
	}
	for _, set := range cr.UID {
		if !uidIn(set, c.msg.UID, c.maxUID) {
			return false, nil
		}
	}
	if !matchDate(c.msg.InternalDate, cr.Since, cr.Before) {
		return false, nil
	}
	for _, f := range cr.Flag {
		if !c.hasFlag(f) {
			return false, nil
		}
	}
	for _, f := range cr.NotFlag {
		if c.hasFlag(f) {
			return false, nil
		}
	}
	if cr.Larger != 0 && c.msg.Size <= cr.Larger {
		return false, nil
	}
	if cr.Smaller != 0 && c.msg.Size >= cr.Smaller {
		return false, nil
	}
	var slow []imap.SearchCriteriaHeaderField
	for _, hf := range cr.Header {
		// address fields also match their normalised form (comments removed), which the raw
		// bytes may not contain: those, and encoded values, take the full parse
		if c.hdr == nil || isAddressHeader(hf.Key) {
			slow = append(slow, hf)
			continue
		}
		ok, decided := rawHeaderMatch(c.hdr, hf.Key, hf.Value)
		if !decided {
			slow = append(slow, hf)
		} else if !ok {
			return false, nil
		}
	}
	if len(slow) > 0 || !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		if c.deferred && c.hdr == nil {
			return false, errDeferred
		}
		h, err := c.content().header()
		if err != nil {
			return false, err
		}
		mh := mail.Header{Header: gomessage.Header{Header: h}}
		for _, hf := range slow {
			if !matchHeader(mh, hf.Key, hf.Value) {
				return false, nil
			}
		}
		if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
			t, err := mh.Date()
			if err != nil || !matchDate(t, cr.SentSince, cr.SentBefore) {
				return false, nil
			}
		}
	}
	for _, text := range cr.Text {
		ok, err := c.contains(text, true)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, text := range cr.Body {
		ok, err := c.contains(text, false)
		if err != nil || !ok {
			return false, err
		}
	}
	for i := range cr.Not {
		ok, err := c.match(&cr.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range cr.Or {
		// Either side may decide without the content that the other needs.
		a, errA := c.match(&cr.Or[i][0])
		if errA != nil && !errors.Is(errA, errDeferred) {
			return false, errA
		}
		if a {
			continue
		}
		b, errB := c.match(&cr.Or[i][1])
		if errB != nil && !errors.Is(errB, errDeferred) {
			return false, errB
		}
		if b {
			continue
		}
		if errA != nil || errB != nil {
			return false, errDeferred
		}
		return false, nil
	}
	return true, nil
}

func (c *candidate) hasFlag(f imap.Flag) bool {
	if strings.EqualFold(string(f), `\Recent`) {
		return c.s.sel.recent[c.msg.UID]
	}
	return c.msg.HasFlag(string(f))
}

// bounds resolves one range of a sequence set (RFC 3501 §9 "seq-range"): 0 stands for "*",
// the largest number in use, and the two ends may come in either order.
func bounds(start, stop, star uint32) (lo, hi uint32) {
	if start == 0 {
		start = star
	}
	if stop == 0 {
		stop = star
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}

func seqIn(set imap.SeqSet, n, total uint32) bool {
	for _, r := range set {
		if lo, hi := bounds(r.Start, r.Stop, total); n >= lo && n <= hi {
			return true
		}
	}
	return false
}

func uidIn(set imap.UIDSet, uid, max uint32) bool {
	for _, r := range set {
		if lo, hi := bounds(uint32(r.Start), uint32(r.Stop), max); uid >= lo && uid <= hi {
			return true
		}
	}
	return false
}

// matchDate compares dates only, ignoring time and zone (RFC 3501 §6.4.4).
func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(time.Date(since.Year(), since.Month(), since.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	if !before.IsZero() && !d.Before(time.Date(before.Year(), before.Month(), before.Day(), 0, 0, 0, 0, time.UTC)) {
		return false
	}
	return true
}

// rawHeaderMatch answers a HEADER search key from the raw header block without parsing it:
// the unfolded values of the fields named key, compared case-insensitively. decided is false
// when a value holds an RFC 2047 encoded word (the full decoder must answer).
func rawHeaderMatch(hdr []byte, key, value string) (ok, decided bool) {
	value = strings.ToLower(value)
	found := false
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i+1], hdr[i+1:]
		} else {
			hdr = nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' || !strings.EqualFold(string(bytes.TrimRight(line[:colon], " \t")), key) {
			continue
		}
		v := string(line[colon+1:])
		for len(hdr) > 0 && (hdr[0] == ' ' || hdr[0] == '\t') { // continuation lines
			next := hdr
			if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
				next, hdr = hdr[:i+1], hdr[i+1:]
			} else {
				hdr = nil
			}
			v += string(next)
		}
		if strings.Contains(v, "=?") {
			return false, false
		}
		found = true
		v = strings.Join(strings.Fields(v), " ")
		if value == "" || strings.Contains(strings.ToLower(v), strings.Join(strings.Fields(value), " ")) {
			return true, true
		}
	}
	return found && value == "", true
}

// mayContain is a conservative pre-filter for SEARCH: it returns false only when raw cannot
// contain the lower-case ASCII needle once decoded — no word of the needle is in the raw bytes,
// and nothing in them is encoded (no base64, quoted-printable or RFC 2047 encoded word).
// Folding only happens at white space, so it never splits a word.
func mayContain(raw []byte, needle string) bool {
	for i := 0; i < len(needle); i++ {
		if needle[i] >= 0x80 {
			return true // non-ASCII: charsets may differ, let the full decoder decide
		}
	}
	lraw := bytes.ToLower(raw)
	if bytes.Contains(lraw, []byte("base64")) || bytes.Contains(lraw, []byte("quoted-printable")) || bytes.Contains(lraw, []byte("=?")) {
		return true
	}
	for _, w := range strings.Fields(needle) {
		if !bytes.Contains(lraw, []byte(w)) {
			return false
		}
	}
	return true
}

func matchHeader(h mail.Header, key, value string) bool {
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	value = strings.ToLower(value)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), value) {
			return true
		}
		if isAddressHeader(key) && strings.Contains(strings.ToLower(addressText(fields.Value())), value) {
			return true
		}
	}
	return false
}

// contains searches the decoded text parts of the message (and its header when withHeader).
func (c *candidate) contains(text string, withHeader bool) (bool, error) {
	if text == "" {
		return true, nil
	}
	if c.deferred {
		return false, errDeferred
	}
	b, err := c.content().bytes()
	if err != nil {
		return false, err
	}
	return messageContains(b, strings.ToLower(text), withHeader), nil
}

// messageContains searches the raw message b for the lower-case needle in its decoded text
// parts (and its header fields when withHeader). A message whose header does not parse is
// searched as it is.
func messageContains(b []byte, needle string, withHeader bool) bool {
	if !mayContain(b, needle) {
		return false
	}
	e, err := gomessage.Read(bytes.NewReader(b))
	if !readable(err) {
		return strings.Contains(strings.ToLower(string(b)), needle)
	}
	return entityContains(e, needle, withHeader, 0)
}

// readable reports whether the entity go-message returned with err can be searched. It can
// when err only says that a charset or Content-Transfer-Encoding is unknown (go-message then
// returns the entity with that body left as it is, and an error that IsUnknownCharset or
// IsUnknownEncoding reports): the body is searched undecoded, and the other parts of the
// message as usual.
func readable(err error) bool {
	return err == nil || gomessage.IsUnknownCharset(err) || gomessage.IsUnknownEncoding(err)
}

func entityContains(e *gomessage.Entity, needle string, withHeader bool, depth int) bool {
	if withHeader {
		f := e.Header.Fields()
		for f.Next() {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			if strings.Contains(strings.ToLower(v), needle) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth > 20 {
			return false
		}
		for {
			p, err := mr.NextPart()
			if !readable(err) { // io.EOF after the last part
				return false
			}
			if entityContains(p, needle, withHeader, depth+1) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(e.Body, 64<<20))
	if err != nil && len(body) == 0 {
		return false
	}
	return strings.Contains(strings.ToLower(string(body)), needle)
}
