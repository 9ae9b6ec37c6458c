package annuaire

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Local is one BAL of an operator's registry, as [Reconcile] compares it with the national
// view.
type Local struct {
	Address string  `json:"address"`
	Type    BALType `json:"type"`
	// Owner is the holder's national identifier for a PER BAL: idNat ("8" + RPPS, "0" +
	// ADELI) or the 11-digit RPPS alone.
	Owner string `json:"owner,omitempty"`
	// StructureID is the structure the BAL is published under (FINESS, SIRET…, with or
	// without its national prefix); "" is not compared.
	StructureID string `json:"structure,omitempty"`
	// ListeRouge is the holder's wish not to appear in public directories.
	ListeRouge bool `json:"listeRouge,omitempty"`
	// Suspended is a BAL the connector keeps but no longer serves: it should not be published.
	Suspended bool `json:"suspended,omitempty"`
}

// Status is the verdict of a reconciliation on one BAL.
type Status string

// Verdicts of [Reconcile].
const (
	StatusOK        Status = "ok"        // published and right
	StatusMissing   Status = "missing"   // served, not published
	StatusStale     Status = "stale"     // published, no longer served
	StatusDifferent Status = "different" // published with another type, owner or structure
	// StatusUnlisted is a liste rouge BAL rightly absent from the public view.
	StatusUnlisted Status = "unlisted"
	// StatusUnchecked is a BAL the source cannot tell about (APP BALs are not in the
	// extraction file).
	StatusUnchecked Status = "unchecked"
)

// Statuses lists the verdicts in the order reports print them.
func Statuses() []Status {
	return []Status{StatusOK, StatusMissing, StatusStale, StatusDifferent, StatusUnlisted, StatusUnchecked}
}

// Finding is the verdict on one BAL.
type Finding struct {
	Address string `json:"address"`
	Status  Status `json:"status"`
	// Differences names what differs for StatusDifferent: "type", "owner", "structure" or
	// "listeRouge" (published although the holder asked not to be).
	Differences []string `json:"differences,omitempty"`
	// Local is the registry's BAL (nil for a stale BAL the registry no longer has);
	// Published the national entry of a stale or different BAL.
	Local     *Local `json:"local,omitempty"`
	Published *Entry `json:"published,omitempty"`
	// Owned reports, for a stale BAL, that the connector served it once: only those may be
	// withdrawn.
	Owned bool `json:"owned,omitempty"`
}

// Reconciliation is the outcome of [Reconcile].
type Reconciliation struct {
	Findings []Finding      `json:"findings"`
	Counts   map[Status]int `json:"counts"`
	// StaleChecked reports that published BALs no longer served were looked for; when false,
	// StaleNote says why (a source that cannot list a domain's BALs, an extraction of another
	// day or a partial one): no BAL is then called stale.
	StaleChecked bool   `json:"staleChecked"`
	StaleNote    string `json:"staleNote,omitempty"`
	// ExtractionTime is the generation time of the extraction compared with (zero for FHIR).
	ExtractionTime time.Time `json:"extractionTime,omitzero"`
	// Shared reports a report without the liste rouge BALs (see [Reconciliation.ForOthers]).
	Shared bool `json:"shared,omitempty"`
}

// ReconcileOptions tune [Reconcile].
type ReconcileOptions struct {
	// Domains are the mail domains of the connector: a published BAL of these domains that the
	// registry does not serve is stale. Empty = the domains of the registry's BALs.
	Domains []string
	// ExtractionTime is the generation time of an [Extraction] given as the national view
	// (for a [Refresher], its own). Stale BALs are looked for only in an extraction of the
	// day of Now (Europe/Paris): an older one still lists BALs withdrawn since.
	ExtractionTime time.Time
	// Now is the clock (nil = time.Now).
	Now func() time.Time
	// Owned reports whether the connector once served an address it no longer has (nil =
	// none): a stale BAL is withdrawn only when owned.
	Owned func(address string) bool
}

// Reconcile compares an operator's registry with the national view and gives a verdict per
// BAL, sorted by address. The national view is an [*Extraction] or a [*Refresher] (every BAL
// of the operator's domains is then listed, and stale ones found), or any other [Directory],
// such as the FHIR API, asked address by address (no stale BAL can be found that way).
func Reconcile(ctx context.Context, local []Local, national Directory, opts *ReconcileOptions) (*Reconciliation, error) {
	var o ReconcileOptions
	if opts != nil {
		o = *opts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if r, ok := national.(*Refresher); ok {
		x, at := r.Current()
		if x == nil {
			return nil, ErrNotLoaded
		}
		national, o.ExtractionTime = x, at
	}
	rec := &Reconciliation{Counts: map[Status]int{}, Findings: make([]Finding, 0, len(local))}
	x, _ := national.(*Extraction)
	if x != nil {
		rec.ExtractionTime = o.ExtractionTime
		rec.StaleChecked, rec.StaleNote = x.canTellStale(o.ExtractionTime, o.Now())
	} else {
		rec.StaleNote = "the source is asked address by address: it cannot list the BALs no longer served"
	}
	var judged lineSet // the lines of the registry's BALs, and of the stale ones found
	if rec.StaleChecked {
		judged = newLineSet(x)
	}
	var buf []Entry
	for i := range local {
		if i%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		l := &local[i]
		addr := strings.ToLower(strings.TrimSpace(l.Address))
		var err error
		if buf, err = lookup(ctx, national, x, judged, buf[:0], addr); err != nil {
			return nil, err
		}
		// A live source tells that a suspended BAL is still published; an extraction only when
		// it is today's and whole.
		if f, ok := judgeLocal(l, buf, x != nil, x == nil || rec.StaleChecked); ok {
			rec.Findings = append(rec.Findings, f)
		}
	}
	nLocal := len(rec.Findings)
	if rec.StaleChecked {
		stale := x.staleLines(judged, newDomainSet(o.Domains, local))
		for _, at := range stale {
			addr := lineAddress(x.data, at)
			key := addr
			if hasUpperASCII(addr) {
				key = strings.ToLower(addr)
			}
			buf = x.Lookup(buf[:0], addr)
			f := Finding{Address: key, Status: StatusStale, Published: copyEntry(&buf[0])}
			f.Owned = o.Owned != nil && o.Owned(key)
			rec.Findings = append(rec.Findings, f)
		}
	}
	rec.Findings = sortFindings(rec.Findings, nLocal)
	rec.count()
	return rec, nil
}

func compareFindings(a, b Finding) int { return cmp.Compare(a.Address, b.Address) }

// sortFindings sorts by address the findings of the registry (f[:n], in the registry's order,
// which is often sorted already) and the stale ones (f[n:], in file order), then merges
// them. Addresses are unique: the registry's are, and a published one is judged once.
func sortFindings(f []Finding, n int) []Finding {
	a, b := f[:n], f[n:]
	for _, part := range [][]Finding{a, b} {
		if !slices.IsSortedFunc(part, compareFindings) {
			slices.SortFunc(part, compareFindings)
		}
	}
	if len(a) == 0 || len(b) == 0 || a[len(a)-1].Address < b[0].Address {
		return f
	}
	out := make([]Finding, 0, len(f))
	for len(a) > 0 && len(b) > 0 {
		if a[0].Address < b[0].Address {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// canTellStale reports whether x may show that a BAL is no longer published, and why not.
func (x *Extraction) canTellStale(at, now time.Time) (bool, string) {
	rep := x.Report()
	switch {
	case !rep.Complete():
		return false, "the extraction may be partial (its last line has no line end)"
	case at.IsZero():
		return false, "the extraction's generation time is unknown"
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.UTC
	}
	if y1, m1, d1 := at.In(paris).Date(); !time.Date(y1, m1, d1, 0, 0, 0, 0, paris).Equal(dayOf(now, paris)) {
		return false, fmt.Sprintf("the extraction is of %04d-%02d-%02d, not of today", y1, m1, d1)
	}
	return true, ""
}

func dayOf(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc)
}

// lookup appends the published entries of addr to buf (and adds their lines to judged).
func lookup(ctx context.Context, d Directory, x *Extraction, judged lineSet, buf []Entry, addr string) ([]Entry, error) {
	if x != nil {
		return x.lookupMarked(buf, addr, judged), nil
	}
	r, err := d.Search(ctx, Query{Address: addr, Limit: MaxLimit})
	if err != nil {
		return buf, fmt.Errorf("annuaire: reconcile %s: %w", addr, err)
	}
	return append(buf, r.Entries...), nil
}

// judgeLocal gives the verdict on a registry BAL from its published entries; ok is false for a
// suspended BAL rightly absent.
func judgeLocal(l *Local, pub []Entry, extraction, canStale bool) (Finding, bool) {
	f := Finding{Address: strings.ToLower(strings.TrimSpace(l.Address)), Local: l}
	switch {
	case l.Suspended && len(pub) == 0:
		return f, false
	case l.Suspended && !canStale:
		f.Status = StatusUnchecked
	case l.Suspended:
		f.Status, f.Published, f.Owned = StatusStale, copyEntry(&pub[0]), true
	case len(pub) == 0 && l.ListeRouge:
		f.Status = StatusUnlisted
	case len(pub) == 0 && extraction && l.Type != PER && l.Type != ORG:
		f.Status = StatusUnchecked
	case len(pub) == 0:
		f.Status = StatusMissing
	default:
		// An address on several lines (a person in several structures) is right when one is.
		best := -1
		for i := range pub {
			d := differences(l, &pub[i])
			if best < 0 || len(d) < len(f.Differences) {
				best, f.Differences = i, d
			}
		}
		f.Status = StatusOK
		if len(f.Differences) > 0 {
			// Kept for what differs; a right one is the registry's. pub is reused for the
			// next BAL: the entry is copied.
			f.Status, f.Published = StatusDifferent, copyEntry(&pub[best])
		}
	}
	return f, true
}

func copyEntry(e *Entry) *Entry {
	c := *e
	return &c
}

func differences(l *Local, e *Entry) []string {
	var d []string
	if l.Type != e.Type {
		d = append(d, "type")
	}
	if l.Type == PER && l.Owner != "" && !sameNationalID(l.Owner, e.Person) {
		d = append(d, "owner")
	}
	if l.StructureID != "" && !structureIDMatches(l.StructureID, e.Structure.ID) && l.StructureID != e.Structure.ID {
		d = append(d, "structure")
	}
	if l.ListeRouge {
		d = append(d, "listeRouge")
	}
	return d
}

// sameNationalID compares a registry owner (idNat, or an RPPS alone) with a published person.
func sameNationalID(owner string, p Person) bool {
	owner = strings.TrimSpace(owner)
	return owner == p.NationalID || len(owner) == 11 && p.IDType == "RPPS" && owner == p.ID
}

// domainSet is the set of the operator's domains, lower-cased: a list when short (checked by
// suffix, no hashing: it is asked for every line of the extraction), a map otherwise.
type domainSet struct {
	list []string
	set  map[string]struct{}
}

func newDomainSet(domains []string, local []Local) *domainSet {
	set := map[string]struct{}{}
	for _, d := range domains {
		set[strings.ToLower(strings.TrimSpace(d))] = struct{}{}
	}
	if len(set) == 0 {
		for i := range local {
			if _, d, ok := strings.Cut(local[i].Address, "@"); ok {
				set[strings.ToLower(strings.TrimSpace(d))] = struct{}{}
			}
		}
	}
	ds := &domainSet{set: set}
	if len(set) <= 16 {
		for d := range set {
			ds.list = append(ds.list, d)
		}
	}
	return ds
}

// has reports whether addr is in one of the domains (ASCII case-insensitive).
func (ds *domainSet) has(addr string) bool {
	if ds.list != nil || len(ds.set) == 0 {
		for _, d := range ds.list {
			if n := len(addr) - len(d); n > 0 && addr[n-1] == '@' && equalFoldASCII(addr[n:], d) {
				return true
			}
		}
		return false
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	d := addr[at+1:]
	if hasUpperASCII(d) {
		d = strings.ToLower(d)
	}
	_, ok := ds.set[d]
	return ok
}

func (r *Reconciliation) count() {
	r.Counts = map[Status]int{}
	for _, s := range Statuses() {
		r.Counts[s] = 0
	}
	for i := range r.Findings {
		r.Counts[r.Findings[i].Status]++
	}
}

// ForOthers returns the report meant for anyone but the operator (support, the ANS, a shared
// dashboard): the liste rouge BALs are left out, findings and counts alike, and no finding
// carries the published or registry details.
func (r *Reconciliation) ForOthers() *Reconciliation {
	out := *r
	out.Findings = nil
	for _, f := range r.Findings {
		if f.Local != nil && f.Local.ListeRouge {
			continue
		}
		f.Local, f.Published = nil, nil
		out.Findings = append(out.Findings, f)
	}
	out.Shared = true
	out.count()
	return &out
}
