package annuaire

import (
	"archive/zip"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/mssante-go/sdk/internal/fold"
)

// Extraction is an extraction file loaded into memory and indexed: by address, by national
// identifier of the person, by structure identifier, and by name key (sorted, for prefix
// searches). It is immutable and safe for concurrent use.
//
// The whole text is kept (the index points into it), so the memory used is about 2.4 times the
// file's size. An address that appears on several lines (the real file has about 169) gives
// one entry per line; a line without an address is skipped.
type Extraction struct {
	data    string       // the text, header included; never modified
	starts  []uint32     // start of each data line in data
	records []lineRecord // of each data line, for Lookup

	// addrSlots is the address index (extraction_addr.go); dups lists the lines of each
	// address found on several lines, in file order.
	addrSlots []uint64
	addrSeed  maphash.Seed
	dups      [][]int32
	byID      map[string]int32 // last line of each person's national identifier
	byStruct  map[string]int32 // last line of each structure identifier
	// nextID and nextStruct chain the lines that share a key, -1 ending a chain.
	nextID, nextStruct []int32

	names []nameRef // every line, sorted by name key then address

	report LoadReport
}

type nameRef struct {
	// prefix and prefix2 are the first 16 bytes of key, big-endian, zero-padded: most
	// comparisons end on them.
	prefix, prefix2 uint64
	key             string
	addr            string
	line            int32
}

// LoadOptions tune [Load] and [LoadFile].
type LoadOptions struct {
	// MaxSize bounds the text of the extraction (0 = 1 GiB; the real file is about 89 MB).
	MaxSize int64
	// MaxBadShare is the share of malformed data lines (too few or too many columns, too long,
	// not UTF-8) above which the file is refused with ErrTooManyBadLines (0 =
	// DefaultMaxBadShare; negative = none). Below it, they are skipped and reported
	// ([Extraction.Report]). A wrong header always refuses the file.
	MaxBadShare float64
}

func (o *LoadOptions) maxSize() int64 {
	if o == nil || o.MaxSize <= 0 {
		return 1 << 30
	}
	return o.MaxSize
}

// ErrTooLarge reports an extraction larger than LoadOptions.MaxSize.
var ErrTooLarge = errors.New("annuaire: extraction larger than the configured maximum")

// LoadFile loads an extraction file: the TXT itself or the ZIP the ANS publishes (which must
// hold exactly one .txt file).
func LoadFile(path string, opts *LoadOptions) (*Extraction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("annuaire: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err == nil && string(magic[:]) == "PK\x03\x04" {
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("annuaire: %w", err)
		}
		return loadZip(f, st.Size(), opts)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("annuaire: %w", err)
	}
	size := int64(0)
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	return loadSized(f, size, opts)
}

func loadZip(r io.ReaderAt, size int64, opts *LoadOptions) (*Extraction, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: zip: %v", ErrFormat, err)
	}
	txt, err := zipTextFile(zr)
	if err != nil {
		return nil, err
	}
	if txt.UncompressedSize64 > uint64(opts.maxSize()) {
		return nil, ErrTooLarge
	}
	rc, err := txt.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: zip: %v", ErrFormat, err)
	}
	defer rc.Close()
	return loadSized(rc, int64(txt.UncompressedSize64), opts)
}

// zipTextFile returns the one file of a published ZIP, which must be a .txt.
func zipTextFile(zr *zip.Reader) (*zip.File, error) {
	var txt *zip.File
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		if txt != nil || !strings.EqualFold(filepath.Ext(f.Name), ".txt") {
			return nil, fmt.Errorf("%w: the zip must hold one .txt file only", ErrFormat)
		}
		txt = f
	}
	if txt == nil {
		return nil, fmt.Errorf("%w: no .txt file in the zip", ErrFormat)
	}
	return txt, nil
}

// OpenFile opens the text of an extraction file, the TXT itself or the one .txt of a ZIP,
// for streaming readers such as [WriteLDIF].
func OpenFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("annuaire: %w", err)
	}
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != "PK\x03\x04" {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("annuaire: %w", err)
		}
		return f, nil
	}
	f.Close()
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("%w: zip: %v", ErrFormat, err)
	}
	txt, err := zipTextFile(&zr.Reader)
	if err != nil {
		zr.Close()
		return nil, err
	}
	rc, err := txt.Open()
	if err != nil {
		zr.Close()
		return nil, fmt.Errorf("%w: zip: %v", ErrFormat, err)
	}
	return &zipText{rc, zr}, nil
}

type zipText struct {
	io.ReadCloser
	zr *zip.ReadCloser
}

func (z *zipText) Close() error {
	z.ReadCloser.Close()
	return z.zr.Close()
}

// Load reads a TXT extraction from r and indexes it.
func Load(r io.Reader, opts *LoadOptions) (*Extraction, error) { return loadSized(r, 0, opts) }

func loadSized(r io.Reader, hint int64, opts *LoadOptions) (*Extraction, error) {
	max := opts.maxSize()
	b := make([]byte, 0, min(max, hint)+bytes.MinRead)
	adviseHugePages(b) // before the pages are first touched
	buf := bytes.NewBuffer(b)
	if _, err := buf.ReadFrom(io.LimitReader(r, max+1)); err != nil {
		return nil, fmt.Errorf("annuaire: reading the extraction: %w", err)
	}
	if int64(buf.Len()) > max {
		return nil, ErrTooLarge
	}
	b = buf.Bytes()
	// The bytes are never modified from here on: the index keeps strings pointing into them.
	return index(unsafe.String(unsafe.SliceData(b), len(b)), opts)
}

// hugeSlice returns n zero Ts (a type without pointers, whose size divides 2 MB) for a table
// read at random, such as the address slots and the line records: their memory starts on a 2 MB
// boundary and is advised to be backed by huge pages (see adviseHugePages), so that none of it
// is left on small pages at an unaligned start. It allocates up to 2 MB more, never touched.
func hugeSlice[T any](n int) []T {
	const huge = 2 << 20
	var zero T
	size := int(unsafe.Sizeof(zero))
	if n*size < huge {
		return make([]T, n)
	}
	s := make([]T, n+huge/size)
	skip := (huge - int(uintptr(unsafe.Pointer(unsafe.SliceData(s))))%huge) % huge / size
	s = s[skip : skip+n : skip+n]
	adviseHugePages(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n*size))
	return s
}

// chunk is what one goroutine extracts from a part of the file, into its window of the
// shared arrays.
type chunk struct {
	starts     []uint32
	records    []lineRecord
	ids, strus []span
	names      []nameRef
	keys       []byte // name keys, sliced by names[i].key after the fact
	keyEnds    []uint32
	n          int // lines found

	lines, skipped int       // data lines read (blank ones excepted) and malformed ones skipped
	bad            []BadLine // numbered from the chunk's first line, 0
	cut            error     // the malformed last line of a file without a final line end
	cutLine        int
}

func index(data string, opts *LoadOptions) (*Extraction, error) {
	nl := strings.IndexByte(data, '\n')
	if nl < 0 {
		nl = len(data)
	}
	if err := checkHeader(data[:nl]); err != nil {
		return nil, err
	}
	body := min(nl+1, len(data))
	if len(data) >= addrMany {
		return nil, ErrTooLarge
	}

	// Split the body in parts that end at line ends, one per worker, and count their lines
	// so that every array is allocated once, at its final size (give or take blank lines).
	const workers = 2
	bounds := []int{body}
	for w := 1; w < workers; w++ {
		at := body + (len(data)-body)*w/workers
		if i := strings.IndexByte(data[at:], '\n'); i >= 0 && at+i+1 > bounds[len(bounds)-1] {
			bounds = append(bounds, at+i+1)
		}
	}
	bounds = append(bounds, len(data))
	chunks := make([]chunk, len(bounds)-1)
	counts := make([]int, len(chunks))
	var wg sync.WaitGroup
	for i := range chunks {
		wg.Go(func() { counts[i] = strings.Count(data[bounds[i]:bounds[i+1]], "\n") + 1 })
	}
	wg.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	x := &Extraction{data: data, starts: make([]uint32, total), records: hugeSlice[lineRecord](total),
		names: make([]nameRef, total)}
	ids, strus := make([]span, total), make([]span, total)
	base := 0
	for i := range chunks {
		w := func(s []span) []span { return s[base : base+counts[i]] }
		chunks[i] = chunk{starts: x.starts[base : base+counts[i]], records: x.records[base : base+counts[i]],
			names: x.names[base : base+counts[i]], ids: w(ids), strus: w(strus)}
		base += counts[i]
		wg.Go(func() { chunks[i].scan(data, bounds[i], bounds[i+1]) })
	}
	wg.Wait()

	firsts := make([]int, len(chunks)) // the line number of each chunk's first line
	firsts[0] = 2
	for i := 1; i < len(chunks); i++ {
		firsts[i] = firsts[i-1] + counts[i-1] - 1
	}
	if err := x.judge(chunks, firsts, opts); err != nil {
		return nil, err
	}
	// Close the gaps the blank and bad lines left between the windows.
	n := 0
	for i := range chunks {
		c := &chunks[i]
		keys := unsafe.String(unsafe.SliceData(c.keys), len(c.keys))
		from := uint32(0)
		for j := range c.n {
			c.names[j].key = keys[from:c.keyEnds[j]]
			c.names[j].prefix, c.names[j].prefix2 = prefixes(c.names[j].key)
			c.names[j].line += int32(n)
			from = c.keyEnds[j]
		}
		copy(x.starts[n:], c.starts[:c.n])
		copy(x.records[n:], c.records[:c.n])
		copy(x.names[n:], c.names[:c.n])
		copy(ids[n:], c.ids[:c.n])
		copy(strus[n:], c.strus[:c.n])
		n += c.n
	}
	x.starts, x.records, x.names = x.starts[:n], x.records[:n], x.names[:n]
	ids, strus = ids[:n], strus[:n]
	// One worker sorts the names, the other builds the maps.
	wg.Go(func() { slices.SortFunc(x.names, x.compareNames) })
	wg.Go(func() {
		x.indexAddresses()
		x.byID, x.nextID = chain(n, func(i int) string { return ids[i].in(data) })
		x.byStruct, x.nextStruct = chain(n, func(i int) string { return strus[i].in(data) })
	})
	wg.Wait()
	return x, nil
}

// compareNames orders the name index as [sortEntries] orders results.
func (x *Extraction) compareNames(a, b nameRef) int {
	if a.prefix != b.prefix {
		return cmp.Compare(a.prefix, b.prefix)
	}
	if a.prefix2 != b.prefix2 {
		return cmp.Compare(a.prefix2, b.prefix2)
	}
	if c := strings.Compare(a.key, b.key); c != 0 {
		return c
	}
	if c := strings.Compare(a.addr, b.addr); c != 0 {
		return c
	}
	ea, eb := x.entry(a.line), x.entry(b.line) // the same name and address: rare
	fa, fb := ea.Fields(), eb.Fields()
	return compareFields(&fa, &fb)
}

func prefixes(s string) (uint64, uint64) {
	var b [16]byte
	copy(b[:], s)
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// chain builds a map from each non-empty key to its last line and, in next, the chains of
// lines with the same key, so that walking from the map's value visits every line, last
// first. Keys are inserted blindly (one map access each); the lines of the keys seen twice
// are chained in a second pass over a map of those keys only.
func chain(n int, key func(int) string) (map[string]int32, []int32) {
	size := 0
	for line := range n {
		if key(line) != "" {
			size++
		}
	}
	m := make(map[string]int32, size)
	next := make([]int32, n)
	shared := make(map[string]int32) // keys on several lines → their last line so far
	for line := range n {
		next[line] = -1
		k := key(line)
		if k == "" {
			continue
		}
		before := len(m)
		m[k] = int32(line)
		if len(m) == before {
			shared[k] = -1
		}
	}
	if len(shared) == 0 {
		return m, next
	}
	for line := range n {
		k := key(line)
		if prev, ok := shared[k]; ok && k != "" {
			next[line] = prev
			shared[k] = int32(line)
		}
	}
	return m, next
}

// scan indexes the lines of data[from:to], which starts and ends at line boundaries, into
// the chunk's windows.
func (c *chunk) scan(data string, from, to int) {
	c.keyEnds = make([]uint32, 0, len(c.starts))
	c.keys = make([]byte, 0, len(c.starts)*24)
	var f Fields
	for at, ln := from, -1; at < to; {
		ln++
		end := strings.IndexByte(data[at:to], '\n')
		next := at + end + 1
		if end < 0 {
			end, next = to-at, to
		}
		line := strings.TrimSuffix(data[at:at+end], "\r")
		if line == "" {
			at = next
			continue
		}
		c.lines++
		if _, err := splitInto(&f, line); err != nil {
			if next == len(data) && data[next-1] != '\n' {
				c.cut, c.cutLine = err, ln
				return
			}
			c.badLine(ln, err)
			at = next
			continue
		}
		addr := strings.TrimSpace(f[ColAddress])
		if addr == "" {
			at = next // no BAL without an address (WriteLDIF skips these lines too)
			continue
		}
		i := c.n
		c.n++
		c.starts[i] = uint32(at)
		c.records[i] = recordOf(&f)
		c.names[i] = nameRef{addr: addr, line: int32(i)}
		c.ids[i] = spanOf(data, strings.TrimSpace(f[ColNationalID]))
		if c.ids[i].n == 0 {
			// No idNat column: derived from the identifier's type and value (rare).
			c.ids[i] = spanOf(data, strings.TrimSpace(f[ColPPID]))
			if typ := ppIDTypeName(strings.TrimSpace(f[ColPPIDType])); typ == "RPPS" || typ == "ADELI" {
				c.ids[i].prefix = nationalIDOf(typ, "")[0]
			}
		}
		c.strus[i] = spanOf(data, strings.TrimSpace(f[ColStructureID]))
		if last := strings.TrimSpace(f[ColLastName]); last != "" {
			c.keys = fold.AppendNameKey(c.keys, last, strings.TrimSpace(f[ColFirstName]))
		} else {
			c.keys = fold.AppendKey(c.keys, strings.TrimSpace(f[ColStructureName]))
		}
		c.keyEnds = append(c.keyEnds, uint32(len(c.keys)))
		at = next
	}
}

// span is a value of the text, by position: half the size of a string header.
type span struct {
	at     uint32
	n      uint16
	prefix byte // when not 0, a one-byte prefix of the value (a derived idNat)
}

// spanOf returns the span of v, a substring of data.
func spanOf(data, v string) span {
	if v == "" {
		return span{}
	}
	at := uintptr(unsafe.Pointer(unsafe.StringData(v))) - uintptr(unsafe.Pointer(unsafe.StringData(data)))
	return span{at: uint32(at), n: uint16(len(v))}
}

func (s span) in(data string) string {
	if s.n == 0 {
		return ""
	}
	v := data[s.at : s.at+uint32(s.n)]
	if s.prefix != 0 {
		return string(s.prefix) + v
	}
	return v
}

// Len returns the number of data lines.
func (x *Extraction) Len() int { return len(x.starts) }

// fields parses data line i (which was validated at load time).
func (x *Extraction) fields(i int32) Fields {
	var f Fields
	x.fieldsAt(x.starts[i], &f)
	return f
}

// fieldsAt cuts the line that starts at byte at of data (validated at load) into f.
func (x *Extraction) fieldsAt(at uint32, f *Fields) {
	var s fieldStarts
	cut(x.data, at, &s)
	s.fields(x.data, at, f)
}

func (x *Extraction) entry(i int32) Entry {
	var e Entry
	x.entryAt(x.starts[i], &e)
	return e
}

// Lookup appends the entries of an address to dst (several when it appears on several
// lines, in file order) and returns the extended slice: the fastest query of the index, with
// no allocation when dst has room. The address is compared ASCII case-insensitively. The
// strings of the entries share the memory of the index.
func (x *Extraction) Lookup(dst []Entry, address string) []Entry {
	s, flags, ok := x.lookupSlot(address, x.hashAddress(address))
	if !ok {
		return dst
	}
	return x.entriesOf(dst, s, flags)
}

// entriesOf appends the entries of the address of slot s, whose first line has flags.
func (x *Extraction) entriesOf(dst []Entry, s uint64, flags byte) []Entry {
	if s&addrMany == 0 {
		dst = slices.Grow(dst, 1)
		dst = dst[:len(dst)+1]
		x.entryOf(uint32(s&addrRef), int(s>>lineShift&noLine), flags, &dst[len(dst)-1])
		return dst
	}
	lines := x.dups[s&addrRef]
	dst = slices.Grow(dst, len(lines))
	for _, i := range lines {
		dst = dst[:len(dst)+1]
		x.entryOf(x.starts[i], int(i), x.recordFlags(int(i)), &dst[len(dst)-1])
	}
	return dst
}

// TypeOf reports whether address (ASCII case-insensitive) is a BAL of the extraction, and its
// type: the check a relay makes for each recipient, at the cost of the index alone (no line is
// parsed, nothing is allocated). An address on several lines gives the type of its first line.
func (x *Extraction) TypeOf(address string) (BALType, bool) {
	j, ok := x.findSlot(address, x.hashAddress(address))
	if !ok {
		return "", false
	}
	line := x.data[x.slotStart(x.addrSlots[j]):]
	return BALType(trim(line[:strings.IndexByte(line, '|')])), true
}

// recordFlags returns [0] of the record of data line i, its flags: recordLong for a line that
// has no usable record (an index of noLine or more, offsets past a byte).
func (x *Extraction) recordFlags(i int) byte {
	if i >= noLine {
		return recordLong
	}
	return x.records[i][0]
}

// entryOf fills *e (every field) from data line i, which starts at byte at, from its record,
// whose flags (see recordFlags) the caller read: the line itself is not read (but for its first
// bytes, which Lookup compared with the address). A line without a usable record is cut by
// entryAt.
func (x *Extraction) entryOf(at uint32, i int, flags byte, e *Entry) {
	if flags&recordLong != 0 {
		x.entryAt(at, e)
		return
	}
	setEntry((*[32]byte)(&x.records[i]), unsafe.Add(unsafe.Pointer(unsafe.StringData(x.data)), at), e)
	if flags&recordTrim != 0 {
		e.trimStrings()
	}
	e.finishFrom(flags)
}

// entryAt fills *e (every field) from the line that starts at byte at of data, which it cuts.
func (x *Extraction) entryAt(at uint32, e *Entry) {
	var s fieldStarts
	cut(x.data, at, &s)
	setEntry((*[32]uint32)(s[:32]), unsafe.Add(unsafe.Pointer(unsafe.StringData(x.data)), at), e)
	if !s.plain(x.data, at) {
		e.trimStrings()
	}
	e.finish()
}

// Search implements [Directory]. It never blocks: ctx is only checked during full scans.
func (x *Extraction) Search(ctx context.Context, q Query) (*Result, error) {
	offset, err := q.checkOffset()
	if err != nil {
		return nil, err
	}
	limit := q.limit()
	if q.Name != "" {
		return x.searchByName(ctx, &q, offset, limit)
	}
	if offset >= len(x.starts) { // past every line (and offset+limit cannot overflow below)
		return &Result{}, nil
	}
	sel := selection{x: x, k: offset + limit}
	var e Entry // reused: only the entries of the page are returned
	var f Fields
	add := func(at uint32) {
		x.fieldsAt(at, &f)
		if !q.matchesFields(&f) {
			return
		}
		f.entryInto(&e)
		if q.matches(&e, "") {
			sel.add(at)
		}
	}
	id, idOK := q.nationalID()
	switch {
	case !idOK:
	case q.Address != "":
		x.eachAddressLine(q.Address, add)
	case id != "":
		x.walk(x.byID, x.nextID, id, add)
	case q.StructureID != "":
		x.walk(x.byStruct, x.nextStruct, q.StructureID, add)
		for _, p := range structureIDTypes {
			x.walk(x.byStruct, x.nextStruct, p[0]+q.StructureID, add)
		}
	case q == (Query{Limit: q.Limit, Cursor: q.Cursor}): // no criterion: every line matches
		for i, at := range x.starts {
			if i%4096 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			sel.add(at)
		}
	default:
		for i, at := range x.starts {
			if i%4096 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			add(at)
		}
	}
	return sel.page(offset), nil
}

// eachAddressLine calls f with the start of each line of address (ASCII case-insensitive).
func (x *Extraction) eachAddressLine(address string, f func(uint32)) {
	j, ok := x.findSlot(address, x.hashAddress(address))
	if !ok {
		return
	}
	s := x.addrSlots[j]
	if s&addrMany == 0 {
		f(uint32(s & addrRef))
		return
	}
	for _, i := range x.dups[s&addrRef] {
		f(x.starts[i])
	}
}

// selection keeps, among the lines it is given (by their start), the k first in the order of
// [sortEntries] (address, then every column), in a max-heap: memory in k, not in the number
// of matches, and no Entry built until the page is cut.
type selection struct {
	x     *Extraction
	k     int
	heap  []uint32 // the k first lines so far; heap[0] is the last of them
	total int      // lines given
}

// compareLines orders two lines as [sortEntries] orders their entries.
func (x *Extraction) compareLines(a, b uint32) int {
	if c := strings.Compare(lineAddress(x.data, a), lineAddress(x.data, b)); c != 0 || a == b {
		return c
	}
	var ea, eb Entry // the same address on several lines: rare
	x.entryAt(a, &ea)
	x.entryAt(b, &eb)
	fa, fb := ea.Fields(), eb.Fields()
	return compareFields(&fa, &fb)
}

func (s *selection) add(at uint32) {
	s.total++
	h := s.heap
	if len(h) < s.k {
		h = append(h, at)
		for i := len(h) - 1; i > 0; { // sift up
			p := (i - 1) / 2
			if s.x.compareLines(h[p], h[i]) >= 0 {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
		s.heap = h
		return
	}
	if s.k == 0 || s.x.compareLines(at, h[0]) >= 0 {
		return
	}
	h[0] = at
	for i := 0; ; { // sift down
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if c+1 < len(h) && s.x.compareLines(h[c+1], h[c]) > 0 {
			c++
		}
		if s.x.compareLines(h[i], h[c]) >= 0 {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// page sorts the lines kept and builds the entries of [offset, k), with the cursor of the
// next page as [page] sets it.
func (s *selection) page(offset int) *Result {
	slices.SortFunc(s.heap, s.x.compareLines)
	r := &Result{}
	if offset < len(s.heap) {
		r.Entries = make([]Entry, len(s.heap)-offset)
		for i, at := range s.heap[offset:] {
			s.x.entryAt(at, &r.Entries[i])
		}
	}
	if end := min(s.k, s.total); end < s.total {
		r.Next = strconv.Itoa(end)
	}
	return r
}

func (x *Extraction) walk(m map[string]int32, next []int32, key string, f func(uint32)) {
	i, ok := m[key]
	if !ok {
		return
	}
	var lines []int32
	for ; i >= 0; i = next[i] {
		lines = append(lines, i)
	}
	for j := len(lines) - 1; j >= 0; j-- {
		f(x.starts[lines[j]])
	}
}

func (x *Extraction) searchByName(ctx context.Context, q *Query, offset, limit int) (*Result, error) {
	key := q.nameKey
	p, p2 := prefixes(key)
	// The first name whose key is >= the queried key.
	i, _ := slices.BinarySearchFunc(x.names, key, func(n nameRef, k string) int {
		if n.prefix != p {
			return cmp.Compare(n.prefix, p)
		}
		if n.prefix2 != p2 {
			return cmp.Compare(n.prefix2, p2)
		}
		return strings.Compare(n.key, k)
	})
	has := func(j int) bool { return j < len(x.names) && strings.HasPrefix(x.names[j].key, key) }
	r := &Result{}
	skipped := 0
	for ; has(i); i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n := &x.names[i]
		var e Entry
		x.entryOf(x.starts[n.line], int(n.line), x.recordFlags(int(n.line)), &e) // from the line's record: the line is not read
		if !q.matches(&e, n.key) {
			continue
		}
		if skipped < offset {
			skipped++
			continue
		}
		if len(r.Entries) == limit {
			r.Next = fmt.Sprint(offset + limit)
			break
		}
		if r.Entries == nil {
			// The page is at most limit long, or as long as the names with the prefix from here:
			// allocated once. Looking at the limit-th name first spares a binary search over the
			// rest of the index (some 20 memory reads at random).
			size := limit
			if !has(i + limit - 1) {
				size = sort.Search(limit, func(j int) bool { return !has(i + j) })
			}
			r.Entries = make([]Entry, 0, size)
		}
		r.Entries = append(r.Entries, e)
	}
	return r, nil
}

// matchesFields rejects a line on the raw columns that need no conversion, before the
// cost of building its Entry.
func (q *Query) matchesFields(f *Fields) bool {
	eq := func(want string, c Column) bool { return want == "" || strings.TrimSpace(f[c]) == want }
	return eq(string(q.Type), ColType) && eq(q.PostalCode, ColPostalCode) &&
		eq(q.Departement, ColDepartement) && eq(q.Profession, ColProfessionCode)
}
