package hl7v2

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Errors of the reader and the builder. A returned error wraps one of them (errors.Is).
var (
	// ErrMalformed: the bytes are not an ER7 message (no MSH, bad segment name, bad
	// encoding characters).
	ErrMalformed = errors.New("hl7v2: malformed message")
	// ErrTooLarge: a limit of ReadOptions was exceeded.
	ErrTooLarge = errors.New("hl7v2: message exceeds a limit")
	// ErrCharset: MSH-18 names a character set this package does not read, or the bytes are
	// not valid in the one it names.
	ErrCharset = errors.New("hl7v2: unsupported or invalid character set")
	// ErrInvalid: Encode refused a message built with wrong names or delimiters.
	ErrInvalid = errors.New("hl7v2: invalid message")
)

// Delimiters are the encoding characters of a message: MSH-1 and the four of MSH-2.
type Delimiters struct {
	Field, Component, Repetition, Escape, Subcomponent byte
}

// Standard is the usual |^~\& set (HL7 v2 ch. 2 §2.5.4).
func Standard() Delimiters {
	return Delimiters{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&'}
}

func (d Delimiters) valid() bool {
	set := []byte{d.Field, d.Component, d.Repetition, d.Escape, d.Subcomponent}
	for i, c := range set {
		if c <= ' ' || c >= 0x7f || isAlnum(c) {
			return false
		}
		if bytes.IndexByte(set[:i], c) >= 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// Value is one repetition of a field: its components, each a list of subcomponents, unescaped.
type Value [][]string

// Segment is one segment. Fields are numbered as HL7 numbers them: Field 1 of MSH is the field
// separator and field 2 the encoding characters.
type Segment struct {
	Name string
	// fields[n] is field n, a list of repetitions; fields[0] is unused.
	fields [][]Value
}

// Message is a parsed or built HL7v2 message.
type Message struct {
	Delims   Delimiters
	Segments []*Segment
}

// ReadOptions bound what Parse accepts. Zero fields take the defaults.
type ReadOptions struct {
	MaxBytes    int // default 32 MiB
	MaxSegments int // default 10 000
	MaxFields   int // fields per segment, default 500
	MaxParts    int // repetitions, components or subcomponents per level, default 1 000
}

func (o *ReadOptions) limits() ReadOptions {
	var r ReadOptions
	if o != nil {
		r = *o
	}
	if r.MaxBytes <= 0 {
		r.MaxBytes = 32 << 20
	}
	if r.MaxSegments <= 0 {
		r.MaxSegments = 10000
	}
	if r.MaxFields <= 0 {
		r.MaxFields = 500
	}
	if r.MaxParts <= 0 {
		r.MaxParts = 1000
	}
	return r
}

// Parse reads one ER7 message. Segments may end with CR, LF or CRLF; empty lines are skipped.
func Parse(data []byte, opts *ReadOptions) (*Message, error) {
	lim := opts.limits()
	if len(data) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), lim.MaxBytes)
	}
	if len(data) < 8 || string(data[:3]) != "MSH" {
		return nil, fmt.Errorf("%w: does not start with MSH", ErrMalformed)
	}
	d := Delimiters{Field: data[3], Component: data[4], Repetition: data[5], Escape: data[6], Subcomponent: data[7]}
	if !d.valid() || (len(data) > 8 && data[8] != d.Field && data[8] != '\r' && data[8] != '\n') {
		return nil, fmt.Errorf("%w: encoding characters in MSH-1 and MSH-2", ErrMalformed)
	}
	text, err := decodeCharset(data, d)
	if err != nil {
		return nil, err
	}
	m := &Message{Delims: d}
	for rest := text; rest != ""; {
		line := rest
		if i := lineEnd(rest); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if line == "" {
			continue
		}
		if len(m.Segments) >= lim.MaxSegments {
			return nil, fmt.Errorf("%w: more than %d segments", ErrTooLarge, lim.MaxSegments)
		}
		s, err := parseSegment(line, d, lim)
		if err != nil {
			return nil, fmt.Errorf("%w (segment %d)", err, len(m.Segments)+1)
		}
		if s.Name == "MSH" && len(m.Segments) > 0 {
			return nil, fmt.Errorf("%w: a second MSH (one message at a time)", ErrMalformed)
		}
		m.Segments = append(m.Segments, s)
	}
	return m, nil
}

// lineEnd is the index of the first CR or LF in s, or -1; two IndexByte scans are much faster
// than IndexAny on the megabytes of a base64 document.
func lineEnd(s string) int {
	i := strings.IndexByte(s, '\r')
	lim := s
	if i >= 0 {
		lim = s[:i]
	}
	if j := strings.IndexByte(lim, '\n'); j >= 0 {
		return j
	}
	return i
}

// decodeCharset turns the bytes into UTF-8 text according to MSH-18, read from the raw MSH.
func decodeCharset(data []byte, d Delimiters) (string, error) {
	end := lineEnd(string(data[:min(len(data), 4096)]))
	if end < 0 {
		end = min(len(data), 4096)
	}
	fields := bytes.Split(data[:end], []byte{d.Field})
	cs := ""
	if len(fields) > 17 {
		// MSH-18 is fields[17]: MSH-1 is the separator itself; keep the first repetition.
		cs, _, _ = strings.Cut(string(fields[17]), string(d.Repetition))
	}
	switch strings.ToUpper(strings.TrimSpace(cs)) {
	case "", "ASCII", "UNICODE UTF-8", "UTF-8":
		if !utf8.Valid(data) {
			return "", fmt.Errorf("%w: bytes are not UTF-8", ErrCharset)
		}
		return string(data), nil
	case "8859/1", "8859/15":
		cm := charmap.ISO8859_1
		if strings.HasSuffix(cs, "/15") {
			cm = charmap.ISO8859_15
		}
		s, err := cm.NewDecoder().Bytes(data)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrCharset, err)
		}
		return string(s), nil
	default:
		return "", fmt.Errorf("%w: MSH-18 %.20q", ErrCharset, cs)
	}
}

func parseSegment(line string, d Delimiters, lim ReadOptions) (*Segment, error) {
	raw := strings.Split(line, string(d.Field))
	name := raw[0]
	if !validName(name) {
		return nil, fmt.Errorf("%w: segment name %.8q", ErrMalformed, name)
	}
	if len(raw) > lim.MaxFields+1 {
		return nil, fmt.Errorf("%w: more than %d fields in %s", ErrTooLarge, lim.MaxFields, name)
	}
	s := &Segment{Name: name}
	if name == "MSH" {
		// MSH-1 is the separator and MSH-2 the encoding characters, both taken literally.
		s.fields = make([][]Value, len(raw)+1)
		s.fields[1] = []Value{{{string(d.Field)}}}
		if len(raw) > 1 {
			s.fields[2] = []Value{{{raw[1]}}}
		}
		for i := 2; i < len(raw); i++ {
			f, err := parseField(raw[i], d, lim)
			if err != nil {
				return nil, err
			}
			s.fields[i+1] = f
		}
		return s, nil
	}
	s.fields = make([][]Value, len(raw))
	for i := 1; i < len(raw); i++ {
		f, err := parseField(raw[i], d, lim)
		if err != nil {
			return nil, err
		}
		s.fields[i] = f
	}
	return s, nil
}

func parseField(raw string, d Delimiters, lim ReadOptions) ([]Value, error) {
	if raw == "" {
		return nil, nil
	}
	reps, err := split(raw, d.Repetition, lim)
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(reps))
	for i, r := range reps {
		comps, err := split(r, d.Component, lim)
		if err != nil {
			return nil, err
		}
		v := make(Value, len(comps))
		for j, c := range comps {
			subs, err := split(c, d.Subcomponent, lim)
			if err != nil {
				return nil, err
			}
			for k := range subs {
				subs[k] = Unescape(subs[k], d)
			}
			v[j] = subs
		}
		out[i] = v
	}
	return out, nil
}

func split(s string, sep byte, lim ReadOptions) ([]string, error) {
	if strings.Count(s, string(sep)) >= lim.MaxParts {
		return nil, fmt.Errorf("%w: more than %d parts", ErrTooLarge, lim.MaxParts)
	}
	return strings.Split(s, string(sep)), nil
}

func validName(n string) bool {
	if len(n) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		c := n[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Unescape replaces the escape sequences of HL7 v2 ch. 2 §2.7 that stand for delimiters
// (\F\ \S\ \T\ \R\ \E\) and hexadecimal data (\Xhh…\); formatting and character-set
// sequences, and anything unknown, are kept as written.
func Unescape(s string, d Delimiters) string {
	if strings.IndexByte(s, d.Escape) < 0 {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, d.Escape)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i+1:], d.Escape)
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		seq := s[i+1 : i+1+j]
		if r, ok := unescapeOne(seq, d); ok {
			b.WriteString(r)
		} else {
			b.WriteString(s[i : i+j+2])
		}
		s = s[i+j+2:]
	}
}

func unescapeOne(seq string, d Delimiters) (string, bool) {
	switch seq {
	case "F":
		return string(d.Field), true
	case "S":
		return string(d.Component), true
	case "T":
		return string(d.Subcomponent), true
	case "R":
		return string(d.Repetition), true
	case "E":
		return string(d.Escape), true
	}
	if len(seq) > 1 && seq[0] == 'X' && len(seq)%2 == 1 {
		var out []byte
		for i := 1; i < len(seq); i += 2 {
			n, err := strconv.ParseUint(seq[i:i+2], 16, 8)
			if err != nil {
				return "", false
			}
			out = append(out, byte(n))
		}
		if !utf8.Valid(out) {
			return "", false
		}
		return string(out), true
	}
	return "", false
}

// Escape writes s so that none of its characters reads as a delimiter; CR and LF become \X0D\
// and \X0A\ so that a value never ends a segment.
func Escape(s string, d Delimiters) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case d.Field:
			b.WriteString(string(d.Escape) + "F" + string(d.Escape))
		case d.Component:
			b.WriteString(string(d.Escape) + "S" + string(d.Escape))
		case d.Subcomponent:
			b.WriteString(string(d.Escape) + "T" + string(d.Escape))
		case d.Repetition:
			b.WriteString(string(d.Escape) + "R" + string(d.Escape))
		case d.Escape:
			b.WriteString(string(d.Escape) + "E" + string(d.Escape))
		case '\r':
			b.WriteString(string(d.Escape) + "X0D" + string(d.Escape))
		case '\n':
			b.WriteString(string(d.Escape) + "X0A" + string(d.Escape))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Segment returns the first segment with that name, or nil.
func (m *Message) Segment(name string) *Segment {
	for _, s := range m.Segments {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// All returns the segments with that name, in order.
func (m *Message) All(name string) []*Segment {
	var out []*Segment
	for _, s := range m.Segments {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Header returns MSH-f, component c (both 1-based), or "" when there is no MSH.
func (m *Message) Header(f, c int) string {
	if s := m.Segment("MSH"); s != nil {
		return s.Get(f, c)
	}
	return ""
}

// ControlID is MSH-10, the message control id an ACK echoes in MSA-2.
func (m *Message) ControlID() string { return m.Header(10, 1) }

// Type returns MSH-9's message code and trigger event ("MDM", "T02").
func (m *Message) Type() (code, event string) { return m.Header(9, 1), m.Header(9, 2) }

// Fields returns the number of the last field present.
func (s *Segment) Fields() int { return max(len(s.fields)-1, 0) }

// Reps returns the number of repetitions of field f.
func (s *Segment) Reps(f int) int {
	if f <= 0 || f >= len(s.fields) {
		return 0
	}
	return len(s.fields[f])
}

// Get returns field f, component c of its first repetition (first subcomponent).
func (s *Segment) Get(f, c int) string { return s.At(f, 0, c, 1) }

// At returns field f (1-based), repetition r (0-based), component c and subcomponent sc
// (1-based); "" when absent.
func (s *Segment) At(f, r, c, sc int) string {
	if f <= 0 || f >= len(s.fields) || r < 0 || r >= len(s.fields[f]) {
		return ""
	}
	v := s.fields[f][r]
	if c <= 0 || c > len(v) || sc <= 0 || sc > len(v[c-1]) {
		return ""
	}
	return v[c-1][sc-1]
}

// Value returns repetition r of field f, or nil.
func (s *Segment) Value(f, r int) Value {
	if f <= 0 || f >= len(s.fields) || r < 0 || r >= len(s.fields[f]) {
		return nil
	}
	return s.fields[f][r]
}

// New starts a message with the given delimiters and an MSH segment whose MSH-1 and MSH-2 are
// set from them.
func New(d Delimiters) *Message {
	m := &Message{Delims: d}
	msh := m.Add("MSH")
	msh.fields = make([][]Value, 3)
	msh.fields[1] = []Value{{{string(d.Field)}}}
	msh.fields[2] = []Value{{{string([]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent})}}}
	return m
}

// Add appends an empty segment and returns it.
func (m *Message) Add(name string) *Segment {
	s := &Segment{Name: name}
	m.Segments = append(m.Segments, s)
	return s
}

// Set sets field f, first repetition, to the components given (each one subcomponent) and
// returns s for chaining.
func (s *Segment) Set(f int, comps ...string) *Segment {
	v := make(Value, len(comps))
	for i, c := range comps {
		v[i] = []string{c}
	}
	return s.SetValue(f, 0, v)
}

// SetValue sets repetition r of field f; missing fields and repetitions are added empty.
// Invalid positions are ignored (Encode keeps the message well formed regardless).
func (s *Segment) SetValue(f, r int, v Value) *Segment {
	if f <= 0 || r < 0 || f > 10000 || r > 10000 {
		return s
	}
	for len(s.fields) <= f {
		s.fields = append(s.fields, nil)
	}
	for len(s.fields[f]) <= r {
		s.fields[f] = append(s.fields[f], nil)
	}
	s.fields[f][r] = v
	return s
}

// Encode writes the message in ER7 with CR after every segment.
func (m *Message) Encode() ([]byte, error) {
	d := m.Delims
	if !d.valid() {
		return nil, fmt.Errorf("%w: encoding characters", ErrInvalid)
	}
	if len(m.Segments) == 0 || m.Segments[0].Name != "MSH" {
		return nil, fmt.Errorf("%w: first segment must be MSH", ErrInvalid)
	}
	var b bytes.Buffer
	for i, s := range m.Segments {
		if !validName(s.Name) {
			return nil, fmt.Errorf("%w: segment name %.8q", ErrInvalid, s.Name)
		}
		if s.Name == "MSH" && i > 0 {
			return nil, fmt.Errorf("%w: MSH after the first segment", ErrInvalid)
		}
		b.WriteString(s.Name)
		start := 1
		if s.Name == "MSH" {
			b.WriteByte(d.Field)
			b.Write([]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent})
			start = 3
		}
		last := len(s.fields) - 1
		for last >= start && emptyField(s.fields[last]) {
			last--
		}
		for f := start; f <= last; f++ {
			b.WriteByte(d.Field)
			for r, v := range s.fields[f] {
				if r > 0 {
					b.WriteByte(d.Repetition)
				}
				for len(v) > 1 && emptyComponent(v[len(v)-1]) {
					v = v[:len(v)-1]
				}
				for c, subs := range v {
					if c > 0 {
						b.WriteByte(d.Component)
					}
					for sc, x := range subs {
						if sc > 0 {
							b.WriteByte(d.Subcomponent)
						}
						b.WriteString(Escape(x, d))
					}
				}
			}
		}
		b.WriteByte('\r')
	}
	return b.Bytes(), nil
}

// emptyField and emptyComponent let Encode drop trailing empty fields and components, which
// HL7 v2 ch. 2 §2.5.3 allows and receivers expect.
func emptyField(reps []Value) bool {
	for _, v := range reps {
		for _, c := range v {
			if !emptyComponent(c) {
				return false
			}
		}
	}
	return len(reps) <= 1
}

func emptyComponent(subs []string) bool {
	for _, x := range subs {
		if x != "" {
			return false
		}
	}
	return true
}
