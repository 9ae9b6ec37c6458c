package annuaire

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/mssante-go/sdk/internal/postcode"
	"github.com/mssante-go/sdk/mssante"
)

// DefaultFHIRBase is the base URL of the ANS FHIR API of the Annuaire Santé.
const DefaultFHIRBase = "https://gateway.api.esante.gouv.fr/fhir/v2"

// FHIR identifiers and extensions of the Annuaire Santé FHIR IG.
const (
	fhirEmailTypeURL   = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
	fhirMailboxMetaURL = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
	fhirSystemIdNatPS  = "urn:oid:" + mssante.OIDIdNatPS
	fhirSystemIdNatSt  = "urn:oid:" + mssante.OIDIdNatStruct
	fhirSystemRPPS     = "https://rpps.esante.gouv.fr"
	fhirSystemFINESS   = "https://finess.esante.gouv.fr"
	// fhirSystemProfession is TRE_G15-ProfessionSante, the code system of professions.
	fhirSystemProfession = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
)

// FHIROptions configure [NewFHIR].
type FHIROptions struct {
	// BaseURL is the FHIR base (empty = DefaultFHIRBase). Next links of Bundles are only
	// followed on the same scheme and host.
	BaseURL string
	// APIKey is sent in the ESANTE-API-KEY header.
	APIKey string
	// HTTPClient makes the requests (nil = a client with TLS 1.2 minimum and Timeout).
	HTTPClient *http.Client
	// RequestsPerSecond is the client-side limit (0 = 17, the API's limit per application).
	RequestsPerSecond int
	// MaxRetries bounds the retries of a request answered 429 or 503 (0 = 3, -1 = none).
	MaxRetries int
	// PageSize is the _count of each search (0 = 50).
	PageSize int
	// ScanRolesForProfession changes how a Profession query reaches PractitionerRole. By
	// default the search sends role=TRE_G15|code, as the API's fhir/v1 documentation does;
	// the fhir/v2 documentation does not say whether it still indexes the profession there (its
	// CapabilityStatement lists fonction, genre d'activité, mode d'exercice and the
	// pharmacists' sections only). When set, no profession filter is sent: every
	// PractitionerRole the other criteria select is read, and only those whose profession
	// (their own code, else their included Practitioner's qualification) matches are kept.
	// Either way an entry of another profession is never returned.
	ScanRolesForProfession bool
	// NoIncludeIterate leaves _include:iterate=PractitionerRole:organization out of Name
	// searches, for a server that refuses it (the ANS fhir/v2 documentation does not say
	// whether it honours it). The roles' Organizations then all come from the one extra
	// Organization?_id=… request per page that completes what a server leaves out.
	NoIncludeIterate bool
	// MaxResponseSize bounds one response body (0 = 16 MiB).
	MaxResponseSize int64
	// Timeout bounds each request of the default client (0 = 30 s).
	Timeout time.Duration
	// Now and Sleep are the clock (nil = the system's); tests inject theirs.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives request outcomes, never query values (nil = discard).
	Logger *slog.Logger
}

// FHIR is a [Directory] over the ANS FHIR API (Annuaire Santé API, fhir/v2): Practitioner,
// PractitionerRole and Organization resources whose telecom carries MSSanté BALs. Create one
// with [NewFHIR]. BALs flagged listeRouge are never returned and results keep the server's
// order. Every entry returned is checked against the query on the client, so a server that
// ignores a parameter yields fewer entries, never wrong ones. A postal code or Departement
// with a Profession or type PER or CAB, and no Name, StructureID, RPPS or NationalID to start
// from, is refused (ErrUnsupported): Organization BALs hold no person, and the API has no
// other way in. Which resource each criterion goes to, and how entries are named from
// included resources, is in the package documentation, "How the FHIR backend searches".
type FHIR struct {
	opts FHIROptions
	base *url.URL
	log  *slog.Logger

	mu     sync.Mutex
	recent []time.Time // start times of the last RequestsPerSecond requests
}

// Errors of the FHIR backend.
var (
	// ErrRateLimited reports a request still answered 429 after the retries.
	ErrRateLimited = errors.New("annuaire: FHIR API rate limit reached")
	// ErrHTTP reports any other unexpected HTTP status; see [HTTPError].
	ErrHTTP = errors.New("annuaire: FHIR API error")
)

// HTTPError is an unexpected answer of the FHIR API.
type HTTPError struct {
	Status int
	// Diagnostics is the server's OperationOutcome text, when it sent one.
	Diagnostics string
}

func (e *HTTPError) Error() string {
	if e.Diagnostics != "" {
		return fmt.Sprintf("annuaire: FHIR API: HTTP %d: %s", e.Status, e.Diagnostics)
	}
	return fmt.Sprintf("annuaire: FHIR API: HTTP %d", e.Status)
}

func (e *HTTPError) Unwrap() error { return ErrHTTP }

// NewFHIR checks opts (nil = every default; copied: later changes have no effect) and
// returns the directory.
func NewFHIR(o *FHIROptions) (*FHIR, error) {
	var opts FHIROptions
	if o != nil {
		opts = *o
	}
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultFHIRBase
	}
	base, err := url.Parse(strings.TrimSuffix(opts.BaseURL, "/"))
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, fmt.Errorf("annuaire: the FHIR base URL must be https://host/path")
	}
	if opts.RequestsPerSecond <= 0 {
		opts.RequestsPerSecond = 17
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 3
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	if opts.MaxResponseSize <= 0 {
		opts.MaxResponseSize = 16 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: opts.Timeout, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment}}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleepCtx
	}
	f := &FHIR{opts: opts, base: base, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fhirCursor is where a search continues: the resource type being searched, the URL of the
// page to fetch, and how many of its entries were already returned.
type fhirCursor struct {
	Resource int    `json:"r"`
	URL      string `json:"u,omitempty"`
	Skip     int    `json:"s,omitempty"`
}

var fhirResources = []string{"Practitioner", "PractitionerRole", "Organization"}

// Search implements [Directory].
func (f *FHIR) Search(ctx context.Context, q Query) (*Result, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	if q.Profession != "" && strings.Trim(q.Profession, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-") != "" {
		return nil, fmt.Errorf("%w: a profession code is letters, digits and '-'", ErrInvalidQuery)
	}
	bounded := q.Name != "" || q.StructureID != "" || q.RPPS != "" || q.NationalID != ""
	if (q.PostalCode != "" || q.Departement != "") && !bounded && (q.Profession != "" || q.Type == PER || q.Type == CAB) {
		// Without a name, structure or person to start from, only Organizations are searched
		// by postal code, and their BALs hold no person: an empty answer would be a wrong one.
		return nil, fmt.Errorf("%w: FHIR: a postal code or département with a profession or a person's BAL type, and no name, structure or person", ErrUnsupported)
	}
	cur := fhirCursor{}
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || json.Unmarshal(b, &cur) != nil || cur.Resource < 0 || cur.Resource >= len(fhirResources) || cur.Skip < 0 {
			return nil, fmt.Errorf("%w: bad cursor", ErrInvalidQuery)
		}
	}
	limit := q.limit()
	res := &Result{}
	for ; cur.Resource < len(fhirResources); cur.Resource, cur.URL, cur.Skip = cur.Resource+1, "", 0 {
		resource := fhirResources[cur.Resource]
		if cur.URL == "" {
			params, ok := f.params(resource, &q)
			if !ok {
				continue
			}
			if resource == "PractitionerRole" {
				if ok, err := f.roleRefs(ctx, &q, params); err != nil {
					return nil, err
				} else if !ok {
					continue // no such person or structure
				}
			}
			cur.URL = f.base.JoinPath(resource).String() + "?" + params.Encode()
		}
		for cur.URL != "" {
			bundle, err := f.get(ctx, cur.URL)
			if err != nil {
				return nil, err
			}
			bundle.searched = resource
			bundle.revRoles = resource == "Practitioner" && q.Name != ""
			if bundle.revRoles {
				if err := f.completeOrganizations(ctx, bundle); err != nil {
					return nil, err
				}
			}
			entries := f.bundleEntries(bundle, &q)
			next, err := f.nextLink(bundle)
			if err != nil {
				return nil, err
			}
			if cur.Skip > len(entries) {
				cur.Skip = len(entries)
			}
			entries = entries[cur.Skip:]
			if room := limit - len(res.Entries); len(entries) > room {
				res.Entries = append(res.Entries, entries[:room]...)
				cur.Skip += room
				res.Next = encodeCursor(cur)
				return res, nil
			}
			res.Entries = append(res.Entries, entries...)
			cur.URL, cur.Skip = next, 0
			if len(res.Entries) == limit && (cur.URL != "" || cur.Resource+1 < len(fhirResources)) {
				if cur.URL == "" {
					cur.Resource++
				}
				res.Next = encodeCursor(cur)
				return res, nil
			}
		}
	}
	return res, nil
}

// roleRefs turns the person and structure criteria of q into the practitioner and
// organization reference parameters of a PractitionerRole search, the only ones the fhir/v2
// CapabilityStatement lists (no chained practitioner.identifier nor organization.identifier):
// the Practitioners and Organizations are searched by identifier first. ok is false when
// none has the identifier.
func (f *FHIR) roleRefs(ctx context.Context, q *Query, params url.Values) (ok bool, err error) {
	id, _ := q.nationalID() // params has checked it
	for _, c := range []struct{ param, resource, identifier string }{
		{"practitioner", "Practitioner", id},
		{"organization", "Organization", q.StructureID}, // any system: FINESS, idNat_Struct…
	} {
		if c.identifier == "" {
			continue
		}
		if c.resource == "Practitioner" {
			c.identifier = fhirSystemIdNatPS + "|" + c.identifier
		}
		refs, err := f.refsByIdentifier(ctx, c.resource, c.identifier)
		if err != nil || refs == "" {
			return false, err
		}
		params.Set(c.param, refs)
	}
	return true, nil
}

// refsByIdentifier returns the references ("Type/id", comma-separated) of the resources of
// a type that carry an identifier. More than one page of them is refused (ErrUnsupported)
// rather than half searched.
func (f *FHIR) refsByIdentifier(ctx context.Context, resource, identifier string) (string, error) {
	v := url.Values{"identifier": {identifier}, "_count": {strconv.Itoa(f.opts.PageSize)}}
	b, err := f.get(ctx, f.base.JoinPath(resource).String()+"?"+v.Encode())
	if err != nil {
		return "", err
	}
	if next, err := f.nextLink(b); err != nil {
		return "", err
	} else if next != "" {
		return "", fmt.Errorf("%w: FHIR: more than %d %s resources have the identifier", ErrUnsupported, f.opts.PageSize, resource)
	}
	var refs []string
	for _, be := range b.Entry {
		r := &be.Resource
		if r.ResourceType != resource || be.Search.Mode == "include" || be.Search.Mode == "outcome" || !isLogicalID(r.ID) {
			continue
		}
		refs = append(refs, resource+"/"+r.ID)
	}
	return strings.Join(refs, ","), nil
}

// nameOnRoles reports whether q's Name is checked on the Practitioners included with a
// PractitionerRole search that a reference bounds: a StructureID (an organization reference),
// or an RPPS or NationalID (a practitioner reference) with a StructureIDType. Any other Name
// goes to the Practitioner search.
func nameOnRoles(q *Query) bool {
	person := q.RPPS != "" || q.NationalID != ""
	return q.Name != "" && (q.StructureID != "" || person && q.StructureIDType != "")
}

// isLogicalID reports whether id is a FHIR logical id, [A-Za-z0-9-.]{1,64}: anything else
// put in a search parameter could change the search.
func isLogicalID(id string) bool {
	return id != "" && len(id) <= 64 && strings.Trim(id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-.") == ""
}

// completeOrganizations makes sure the Organizations of the PractitionerRoles a Name search
// brought (_revinclude) are in b, so that their entries get the structure's name and postal
// address as a PractitionerRole search gives them. The search asked
// _include:iterate=PractitionerRole:organization; for a server that ignores it (the ANS
// fhir/v2 CapabilityStatement lists no include for Practitioner, so :iterate may not be
// honoured), the Organizations still missing are fetched in one request,
// Organization?_id=id1,id2…&_count=n, and added to b as includes. An Organization the answer
// does not hold (unknown, or past a page the server cut shorter than _count) leaves the
// fields empty. More than PageSize missing Organizations take one request per PageSize.
func (f *FHIR) completeOrganizations(ctx context.Context, b *fhirBundle) error {
	// PageSize ids a request at most: a bounded URL, and a _count the server accepts.
	for ids := range slices.Chunk(missingOrganizations(b), f.opts.PageSize) {
		v := url.Values{"_id": {strings.Join(ids, ",")}, "_count": {strconv.Itoa(len(ids))}}
		orgs, err := f.get(ctx, f.base.JoinPath("Organization").String()+"?"+v.Encode())
		if err != nil {
			return err
		}
		addOrganizations(b, orgs, ids)
	}
	return nil
}

// missingOrganizations returns the logical ids, in Bundle order and once each, of the
// Organizations that the included PractitionerRoles of b's matched Practitioners reference
// by "Organization/id" and that b does not hold, for the roles with an MSSanté BAL. A role
// that names its Organization by identifier only is completed only when that Organization
// is in b by then (included, or fetched for another role).
func missingOrganizations(b *fhirBundle) []string {
	inc := newFHIRIncludes(b)
	roles := revincludedRoles(b)
	var ids []string
	seen := map[string]bool{}
	for i := range b.Entry {
		for _, role := range roles[&b.Entry[i].Resource] {
			if role.Organization == nil || inc.resolve("Organization", role.Organization) != nil ||
				!slices.ContainsFunc(role.Telecom, func(t fhirTelecom) bool { _, ok := mailboxEntry(t, Entry{}); return ok }) {
				continue // nothing to complete, or no BAL to complete
			}
			if id, ok := strings.CutPrefix(stripHistory(role.Organization.Reference), "Organization/"); ok && isLogicalID(id) && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// addOrganizations adds to b, as includes, the Organizations of the search result orgs
// whose id is one of ids, once each and without their fullUrl: a role finds them by
// "Organization/id" (or identifier), never by position.
func addOrganizations(b, orgs *fhirBundle, ids []string) {
	wanted := map[string]bool{}
	for _, id := range ids {
		wanted[id] = true
	}
	for _, be := range orgs.Entry {
		r := be.Resource
		if r.ResourceType != "Organization" || be.Search.Mode == "include" || be.Search.Mode == "outcome" || !wanted[r.ID] {
			continue
		}
		delete(wanted, r.ID)
		e := fhirBundleEntry{Resource: r}
		e.Search.Mode = "include"
		b.Entry = append(b.Entry, e)
	}
}

func encodeCursor(c fhirCursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// params builds the search parameters of q for a resource type; ok is false when that type
// cannot hold an answer.
func (f *FHIR) params(resource string, q *Query) (url.Values, bool) {
	v := url.Values{}
	person := q.RPPS != "" || q.NationalID != ""
	structure := q.StructureID != "" || q.StructureIDType != "" || q.PostalCode != "" || q.Departement != ""
	switch resource {
	case "Practitioner":
		// With a Name, structure criteria but a StructureID are checked on the client, on the
		// structure of the roles the Name search brings (_revinclude, _include:iterate): no
		// search parameter reaches a Practitioner's structures.
		if q.Type == ORG || q.Type == APP || structure && (q.Name == "" || nameOnRoles(q)) {
			return nil, false
		}
	case "PractitionerRole":
		// PER and CAB BALs held by a person in a structure (use case bal-mss of the fhir/v2
		// documentation). A StructureID becomes an organization reference in Search, an RPPS
		// or NationalID a practitioner one. A role has no address: postal criteria are
		// checked on the client, on its included Organization, when a reference bounds the
		// search (else they belong to Organizations).
		if q.Type == ORG || q.Type == APP || (q.PostalCode != "" || q.Departement != "") && q.StructureID == "" && !person {
			return nil, false
		}
		// Names live on Practitioner: the IG lists no name search on PractitionerRole. A
		// Name is checked on the roles' included Practitioners when a reference bounds the
		// search (nameOnRoles); any other Name is the Practitioner search's, whose
		// _revinclude brings the roles of the name.
		if q.Name != "" && !nameOnRoles(q) {
			return nil, false
		}
	case "Organization":
		// No Organization entry holds a person, hence no profession.
		if person || q.Profession != "" || q.Type == PER || q.Type == CAB {
			return nil, false
		}
	}
	// A Name search of Practitioners also brings the PractitionerRoles that reference them
	// (_revinclude, the one the fhir/v2 CapabilityStatement lists for Practitioner): a BAL
	// may be on a role only, so the Practitioners are not filtered on their own BALs.
	revRoles := resource == "Practitioner" && q.Name != ""
	switch {
	case revRoles:
	case q.Address != "":
		v.Set("mailbox-mss:exact", strings.ToLower(q.Address))
	case q.Type == "":
		v.Set("mailbox-mss:contains", "@") // resources with at least one BAL
	}
	if q.Type != "" && !revRoles {
		v.Set("mailbox-mss-type", string(q.Type))
	}
	if id, ok := q.nationalID(); !ok {
		return nil, false
	} else if id != "" && resource == "Practitioner" {
		v.Set("identifier", fhirSystemIdNatPS+"|"+id)
	}
	if q.StructureID != "" && resource == "Organization" {
		v.Set("identifier", q.StructureID) // any system: FINESS, idNat_Struct…
	}
	switch {
	case resource != "Organization": // a Name search's roles: checked on the client
	case q.PostalCode != "":
		v.Set("address-postalcode", q.PostalCode)
	case q.Departement != "":
		// FHIR string search matches the start of the value: the département's postal codes.
		v.Set("address-postalcode", strings.NewReplacer("2A", "20", "2B", "20").Replace(q.Departement))
	}
	if q.Name != "" && resource != "PractitionerRole" {
		name := strings.TrimSpace(q.Name)
		if resource == "Practitioner" {
			// A HumanName matches when one of its parts starts with the value: "DUPONT JEAN" (last
			// name, then first name, as Name is defined) matches no part. Its first word is a
			// prefix of the last name; the whole query is checked on each entry.
			if words := strings.FieldsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || r == ',' }); len(words) > 0 {
				name = words[0]
			}
		}
		v.Set("name", name)
	}
	if q.Profession != "" {
		switch {
		case resource == "Practitioner":
			v.Set("qualification-code", fhirSystemProfession+"|"+q.Profession)
		case resource == "PractitionerRole" && !f.opts.ScanRolesForProfession:
			v.Set("role", fhirSystemProfession+"|"+q.Profession)
		}
	}
	if resource == "PractitionerRole" {
		// For names and structures (see bundleEntries).
		v["_include"] = []string{"PractitionerRole:practitioner", "PractitionerRole:organization"}
	}
	if revRoles {
		v.Set("_revinclude", "PractitionerRole:practitioner")
		// The roles' Organizations, for their structure and address (FHIR R4 search
		// §3.1.1.5.4); see completeOrganizations for a server that ignores :iterate.
		if !f.opts.NoIncludeIterate {
			v.Set("_include:iterate", "PractitionerRole:organization")
		}
	}
	v.Set("_count", strconv.Itoa(f.opts.PageSize))
	return v, true
}

// wait applies the client-side rate limit: at most RequestsPerSecond requests start in any
// one-second window.
func (f *FHIR) wait(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.opts.RequestsPerSecond
	if len(f.recent) == n {
		if d := f.recent[0].Add(time.Second).Sub(f.opts.Now()); d > 0 {
			if err := f.opts.Sleep(ctx, d); err != nil {
				return err
			}
		}
		f.recent = f.recent[1:]
	}
	f.recent = append(f.recent, f.opts.Now())
	return nil
}

// get fetches one page, retrying 429 and 503 after their Retry-After.
func (f *FHIR) get(ctx context.Context, u string) (*fhirBundle, error) {
	for attempt := 0; ; attempt++ {
		if err := f.wait(ctx); err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("annuaire: FHIR: %w", err)
		}
		req.Header.Set("Accept", "application/fhir+json")
		if f.opts.APIKey != "" {
			req.Header.Set("ESANTE-API-KEY", f.opts.APIKey)
		}
		resp, err := f.opts.HTTPClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("annuaire: FHIR: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxResponseSize+1))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("annuaire: FHIR: reading the answer: %w", err)
		}
		if int64(len(body)) > f.opts.MaxResponseSize {
			return nil, fmt.Errorf("annuaire: FHIR: answer larger than %d bytes", f.opts.MaxResponseSize)
		}
		f.log.Debug("annuaire: FHIR request", "status", resp.StatusCode, "attempt", attempt)
		switch {
		case resp.StatusCode == http.StatusOK:
			var b fhirBundle
			if err := json.Unmarshal(body, &b); err != nil {
				return nil, fmt.Errorf("annuaire: FHIR: bad JSON: %w", err)
			}
			if b.ResourceType != "Bundle" {
				return nil, fmt.Errorf("annuaire: FHIR: answer is a %q, not a Bundle", b.ResourceType)
			}
			return &b, nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			if f.opts.MaxRetries < 0 || attempt >= f.opts.MaxRetries {
				if resp.StatusCode == http.StatusTooManyRequests {
					return nil, ErrRateLimited
				}
				return nil, &HTTPError{Status: resp.StatusCode, Diagnostics: diagnostics(body)}
			}
			if err := f.opts.Sleep(ctx, retryAfter(resp.Header.Get("Retry-After"), f.opts.Now(), attempt)); err != nil {
				return nil, err
			}
		default:
			return nil, &HTTPError{Status: resp.StatusCode, Diagnostics: diagnostics(body)}
		}
	}
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), bounded to one minute;
// without one, it backs off 1, 2, 4… seconds.
func retryAfter(h string, now time.Time, attempt int) time.Duration {
	d := time.Duration(1<<min(attempt, 5)) * time.Second
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, time.Minute))
}

// diagnostics extracts the text of an OperationOutcome, truncated.
func diagnostics(body []byte) string {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Diagnostics string `json:"diagnostics"`
			Code        string `json:"code"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return ""
	}
	var parts []string
	for _, i := range oo.Issue {
		parts = append(parts, strings.TrimSpace(i.Code+" "+i.Diagnostics))
	}
	return truncate(strings.Join(parts, "; "), 200)
}

// nextLink returns the Bundle's next link, refusing one that leaves the API's host.
func (f *FHIR) nextLink(b *fhirBundle) (string, error) {
	for _, l := range b.Link {
		if l.Relation != "next" {
			continue
		}
		u, err := url.Parse(l.URL)
		if err != nil {
			return "", fmt.Errorf("annuaire: FHIR: bad next link")
		}
		u = f.base.ResolveReference(u)
		if u.Scheme != f.base.Scheme || u.Host != f.base.Host {
			return "", fmt.Errorf("annuaire: FHIR: next link leaves %s: refused", f.base.Host)
		}
		return u.String(), nil
	}
	return "", nil
}

// The parts of FHIR resources this package reads.
type (
	fhirBundle struct {
		ResourceType string `json:"resourceType"`
		Link         []struct {
			Relation string `json:"relation"`
			URL      string `json:"url"`
		} `json:"link"`
		Entry []fhirBundleEntry `json:"entry"`
		// searched is the resource type of the search (set by Search): entries of another
		// type are never results. "" accepts the three types.
		searched string
		// revRoles says the search asked _revinclude=PractitionerRole:practitioner: the BALs
		// of the included PractitionerRoles that reference a matched Practitioner are results.
		revRoles bool
	}
	fhirBundleEntry struct {
		FullURL  string       `json:"fullUrl"`
		Resource fhirResource `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	}
	fhirResource struct {
		ResourceType  string           `json:"resourceType"`
		ID            string           `json:"id"`
		Identifier    []fhirIdentifier `json:"identifier"`
		Name          json.RawMessage  `json:"name"` // HumanName list or string
		Alias         []string         `json:"alias"`
		Telecom       []fhirTelecom    `json:"telecom"`
		Address       []fhirAddress    `json:"address"`
		Qualification []struct {
			Code fhirConcept `json:"code"`
		} `json:"qualification"`
		Practitioner *fhirReference `json:"practitioner"`
		Organization *fhirReference `json:"organization"`
		// Code and Specialty of a PractitionerRole (CodeableConcept lists), decoded only
		// there.
		Code      json.RawMessage `json:"code"`
		Specialty json.RawMessage `json:"specialty"`
	}
	fhirIdentifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	fhirReference struct {
		Reference  string          `json:"reference"`
		Identifier *fhirIdentifier `json:"identifier"`
	}
	fhirHumanName struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Prefix []string `json:"prefix"`
		Suffix []string `json:"suffix"`
	}
	fhirCoding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display"`
	}
	fhirConcept struct {
		Coding []fhirCoding `json:"coding"`
	}
	fhirExtension struct {
		URL                  string          `json:"url"`
		Extension            []fhirExtension `json:"extension"`
		ValueString          string          `json:"valueString"`
		ValueBoolean         *bool           `json:"valueBoolean"`
		ValueCoding          *fhirCoding     `json:"valueCoding"`
		ValueCodeableConcept *fhirConcept    `json:"valueCodeableConcept"`
	}
	fhirTelecom struct {
		System    string          `json:"system"`
		Value     string          `json:"value"`
		Extension []fhirExtension `json:"extension"`
	}
	fhirAddress struct {
		Line []string `json:"line"`
		// The AFNOR parts are extensions of line (iso21090-ADXP-*), in _line.
		LineExt    []*struct{ Extension []fhirExtension } `json:"_line"`
		City       string                                 `json:"city"`
		PostalCode string                                 `json:"postalCode"`
		Country    string                                 `json:"country"`
	}
)

// bundleEntries turns the resources of a Bundle into entries, one per MSSanté BAL, leaving
// out the BALs flagged listeRouge and those q does not match. Entries of search mode
// "include" or "outcome", and entries of another type than the one searched, are never
// results, with one exception: when b.revRoles, the BALs of an included PractitionerRole
// whose practitioner reference designates a matched Practitioner follow that
// Practitioner's own, named from it. The Practitioners and Organizations among the
// includes complete the PractitionerRoles that reference them.
func (f *FHIR) bundleEntries(b *fhirBundle, q *Query) []Entry {
	var out []Entry
	var inc *fhirIncludes
	var roles map[*fhirResource][]*fhirResource
	if b.revRoles {
		inc = newFHIRIncludes(b)
		roles = revincludedRoles(b)
	}
	for i := range b.Entry {
		be := &b.Entry[i]
		r := &be.Resource
		if !isResult(b, be) {
			continue
		}
		var p *fhirResource
		if r.ResourceType == "PractitionerRole" {
			if inc == nil {
				inc = newFHIRIncludes(b)
			}
			p = inc.resolve("Practitioner", r.Practitioner)
		}
		out = appendEntries(out, r, p, inc, q)
		for _, role := range roles[r] {
			out = appendEntries(out, role, r, inc, q)
		}
	}
	return out
}

// appendEntries appends the entries of r's BALs that q matches. p is the Practitioner of a
// PractitionerRole r (nil = unknown); inc gives its Organization.
func appendEntries(out []Entry, r, p *fhirResource, inc *fhirIncludes, q *Query) []Entry {
	base := resourceEntry(r)
	var practitioner *fhirResource // whose qualifications give the profession
	switch r.ResourceType {
	case "Practitioner":
		practitioner = r
	case "PractitionerRole":
		if p == nil && q.Name != "" {
			return out // no Practitioner, no name to match
		}
		if p != nil {
			if base.Person.ProfessionCode == "" {
				practitioner = p
			}
			fillPerson(&base.Person, resourceEntry(p).Person)
		}
		if o := inc.resolve("Organization", r.Organization); o != nil {
			fillStructure(&base, resourceEntry(o))
		}
	}
	if q.Profession != "" && practitioner != nil {
		preferProfession(&base.Person, practitioner, q.Profession)
	}
	for _, t := range r.Telecom {
		e, ok := mailboxEntry(t, base)
		if ok && q.matches(&e, NameKey(&e)) {
			out = append(out, e)
		}
	}
	return out
}

// isResult reports whether a Bundle entry is a result of the search: not of search mode
// "include" or "outcome", and of the type searched.
func isResult(b *fhirBundle, be *fhirBundleEntry) bool {
	return be.Search.Mode != "include" && be.Search.Mode != "outcome" &&
		(b.searched == "" || be.Resource.ResourceType == b.searched)
}

// isIncluded reports whether a Bundle entry is one the search brought besides its results:
// search mode "include", or no mode and another type than the one searched.
func isIncluded(b *fhirBundle, be *fhirBundleEntry) bool {
	return be.Search.Mode == "include" || be.Search.Mode == "" && b.searched != "" && be.Resource.ResourceType != b.searched
}

// revincludedRoles returns, for each matched Practitioner of a Bundle, the included
// PractitionerRoles whose practitioner reference designates it (as [fhirIncludes.resolve]
// does: by reference or identifier, never by position), in Bundle order. A role whose
// Practitioner is not among the results belongs to none.
func revincludedRoles(b *fhirBundle) map[*fhirResource][]*fhirResource {
	matched := newFHIRIndex(b, func(be *fhirBundleEntry) bool {
		return isResult(b, be) && be.Resource.ResourceType == "Practitioner"
	})
	roles := map[*fhirResource][]*fhirResource{}
	for i := range b.Entry {
		be := &b.Entry[i]
		if be.Resource.ResourceType != "PractitionerRole" || !isIncluded(b, be) {
			continue
		}
		if p := matched.resolve("Practitioner", be.Resource.Practitioner); p != nil {
			roles[p] = append(roles[p], &be.Resource)
		}
	}
	return roles
}

// fhirIncludes indexes resources of a Bundle by reference: by default those it carries
// besides its results (see isIncluded).
type fhirIncludes struct {
	byRef map[string][]*fhirResource // by "Type/id" and by full URL
	all   []*fhirResource
}

func newFHIRIncludes(b *fhirBundle) *fhirIncludes {
	return newFHIRIndex(b, func(be *fhirBundleEntry) bool { return isIncluded(b, be) })
}

// newFHIRIndex indexes the resources of the entries of b that keep accepts.
func newFHIRIndex(b *fhirBundle, keep func(*fhirBundleEntry) bool) *fhirIncludes {
	inc := &fhirIncludes{byRef: map[string][]*fhirResource{}}
	for i := range b.Entry {
		be := &b.Entry[i]
		r := &be.Resource
		if !keep(be) {
			continue
		}
		inc.all = append(inc.all, r)
		if r.ID != "" {
			inc.byRef[r.ResourceType+"/"+r.ID] = append(inc.byRef[r.ResourceType+"/"+r.ID], r)
		}
		if u := stripHistory(be.FullURL); strings.Contains(u, "://") {
			inc.byRef[u] = append(inc.byRef[u], r)
		}
	}
	return inc
}

// stripHistory removes the version of a reference or full URL ("…/_history/2").
func stripHistory(ref string) string {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		return ref[:i]
	}
	return ref
}

// resolve returns the one included resource of type typ that ref designates, or nil when
// none or several do: by literal reference ("Type/id", relative, or absolute and then
// compared with fullUrl) or else by logical reference (identifier system and value). When
// ref has both, the resource found by the literal one must also carry the identifier.
func (inc *fhirIncludes) resolve(typ string, ref *fhirReference) *fhirResource {
	if ref == nil {
		return nil
	}
	var found []*fhirResource
	switch lit := stripHistory(ref.Reference); {
	case lit != "":
		if strings.Contains(lit, "://") {
			found = inc.byRef[lit]
		} else if id, ok := strings.CutPrefix(lit, typ+"/"); ok && id != "" && !strings.Contains(id, "/") {
			found = inc.byRef[lit]
		}
		found = slices.DeleteFunc(slices.Clone(found), func(r *fhirResource) bool {
			return r.ResourceType != typ || ref.Identifier != nil && !hasIdentifier(r, ref.Identifier)
		})
	case ref.Identifier != nil:
		for _, r := range inc.all {
			if r.ResourceType == typ && hasIdentifier(r, ref.Identifier) {
				found = append(found, r)
			}
		}
	}
	if len(found) != 1 {
		return nil
	}
	return found[0]
}

func hasIdentifier(r *fhirResource, id *fhirIdentifier) bool {
	if id.System == "" || id.Value == "" {
		return false
	}
	return slices.ContainsFunc(r.Identifier, func(x fhirIdentifier) bool { return x.System == id.System && x.Value == id.Value })
}

// fillPerson completes dst, a PractitionerRole's person, with what its Practitioner says:
// the role's own values (its identifier reference, its profession) come first.
func fillPerson(dst *Person, src Person) {
	if dst.NationalID == "" {
		dst.NationalID, dst.IDType, dst.ID = src.NationalID, src.IDType, src.ID
	}
	dst.Civility, dst.LastName, dst.FirstName = src.Civility, src.LastName, src.FirstName // a role has none
	if dst.ProfessionCode == "" {
		dst.ProfessionCode, dst.ProfessionLabel = src.ProfessionCode, src.ProfessionLabel
	}
	if dst.ProfessionCategory == "" {
		dst.ProfessionCategory, dst.ProfessionCategoryLabel = src.ProfessionCategory, src.ProfessionCategoryLabel
	}
	if dst.SpecialtyCode == "" {
		dst.SpecialtyCode, dst.SpecialtyLabel = src.SpecialtyCode, src.SpecialtyLabel
	}
}

// fillStructure completes a PractitionerRole's entry with what its Organization says: the
// role's own structure identifier comes first.
func fillStructure(dst *Entry, org Entry) {
	if dst.Structure.ID == "" {
		dst.Structure.IDType, dst.Structure.ID = org.Structure.IDType, org.Structure.ID
	}
	if dst.Structure.Name == "" {
		dst.Structure.Name, dst.Structure.TradeName = org.Structure.Name, org.Structure.TradeName
	}
	if dst.Postal == (PostalAddress{}) {
		dst.Postal = org.Postal
	}
}

// preferProfession makes the queried profession the person's when the Practitioner holds
// several (one qualification per profession exercised).
func preferProfession(p *Person, r *fhirResource, code string) {
	for _, q := range r.Qualification {
		for _, c := range q.Code.Coding {
			if c.Code == code && strings.Contains(c.System, "TRE_G15-ProfessionSante") {
				p.ProfessionCode, p.ProfessionLabel = c.Code, c.Display
				return
			}
		}
	}
}

// setCoding reads a profession, professional category or specialty coding into p.
func setCoding(p *Person, c fhirCoding) {
	switch {
	case strings.Contains(c.System, "TRE_G15-ProfessionSante"):
		p.ProfessionCode, p.ProfessionLabel = c.Code, c.Display
	case strings.Contains(c.System, "TRE_R09-CategorieProfessionnelle"):
		p.ProfessionCategory, p.ProfessionCategoryLabel = c.Code, c.Display
	case strings.Contains(c.System, "TRE_R38-SpecialiteOrdinale"):
		p.SpecialtyCode, p.SpecialtyLabel = c.Code, c.Display
	}
}

// resourceEntry reads what a resource says of its holder.
func resourceEntry(r *fhirResource) Entry {
	var e Entry
	setPerson := func(id fhirIdentifier) {
		switch id.System {
		case fhirSystemIdNatPS:
			e.Person.NationalID = id.Value
			if n, err := mssante.ParsePSNationalID(id.Value); err == nil && e.Person.ID == "" {
				e.Person.IDType, e.Person.ID = n.Kind.String(), n.Value
			}
		case fhirSystemRPPS:
			e.Person.IDType, e.Person.ID = "RPPS", id.Value
			if e.Person.NationalID == "" {
				e.Person.NationalID = rppsPrefix + id.Value
			}
		}
	}
	setStructure := func(id fhirIdentifier) {
		switch id.System {
		case fhirSystemIdNatSt:
			e.Structure.ID = id.Value
			if n, err := mssante.ParseStructNationalID(id.Value); err == nil {
				e.Structure.IDType = n.Kind.String()
			}
		case fhirSystemFINESS:
			if e.Structure.ID == "" {
				e.Structure.IDType, e.Structure.ID = "FINESS", id.Value
			}
		}
	}
	switch r.ResourceType {
	case "Practitioner":
		for _, id := range r.Identifier {
			setPerson(id)
		}
		var names []fhirHumanName
		if json.Unmarshal(r.Name, &names) == nil && len(names) > 0 {
			n := names[0]
			for _, m := range names {
				if m.Use == "official" {
					n = m
				}
			}
			e.Person.LastName = n.Family
			e.Person.FirstName = strings.Join(n.Given, " ")
			// The civilité d'exercice (DR, PR) of the extraction file is the suffix; the prefix
			// is the civilité (M, MME), used when there is no suffix (Annuaire Santé API,
			// Practitioner, search parameter name).
			e.Person.Civility = strings.Join(n.Suffix, " ")
			if e.Person.Civility == "" {
				e.Person.Civility = strings.Join(n.Prefix, " ")
			}
		}
		for _, q := range r.Qualification {
			for _, c := range q.Code.Coding {
				setCoding(&e.Person, c)
			}
		}
	case "PractitionerRole":
		if r.Practitioner != nil && r.Practitioner.Identifier != nil {
			setPerson(*r.Practitioner.Identifier)
		}
		// The profession and category are codings of code, the specialty of specialty
		// (AsPractitionerRoleProfile); a malformed list is ignored.
		for _, raw := range []json.RawMessage{r.Code, r.Specialty} {
			var concepts []fhirConcept
			if json.Unmarshal(raw, &concepts) == nil {
				for _, cc := range concepts {
					for _, c := range cc.Coding {
						setCoding(&e.Person, c)
					}
				}
			}
		}
		if r.Organization != nil && r.Organization.Identifier != nil {
			setStructure(*r.Organization.Identifier)
		}
	case "Organization":
		for _, id := range r.Identifier {
			setStructure(id)
		}
		var name string
		if json.Unmarshal(r.Name, &name) == nil {
			e.Structure.Name = name
		}
		if len(r.Alias) > 0 {
			e.Structure.TradeName = r.Alias[0]
		}
		if len(r.Address) > 0 {
			e.Postal = postalAddress(&r.Address[0])
		}
	}
	return e
}

func postalAddress(a *fhirAddress) PostalAddress {
	p := PostalAddress{PostalCode: a.PostalCode, Country: a.Country, Departement: postcode.Departement(a.PostalCode)}
	if a.PostalCode != "" || a.City != "" {
		p.CityLine = strings.TrimSpace(a.PostalCode + " " + a.City)
	}
	for _, le := range a.LineExt {
		if le == nil {
			continue
		}
		for _, x := range le.Extension {
			switch strings.TrimPrefix(x.URL, "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-") {
			case "houseNumber":
				p.Number = x.ValueString
			case "buildingNumberSuffix":
				p.NumberComplement = x.ValueString
			case "streetNameType":
				p.StreetType = x.ValueString
			case "streetNameBase":
				p.Street = x.ValueString
			case "additionalLocator":
				p.Complement = x.ValueString
			case "postBox":
				p.Distribution = x.ValueString
			}
		}
	}
	return p
}

// mailboxEntry reads one telecom: an MSSanté BAL unless it is another kind of contact, or a
// BAL flagged listeRouge (not to be published: never returned).
func mailboxEntry(t fhirTelecom, e Entry) (Entry, bool) {
	if t.System != "email" || t.Value == "" {
		return e, false
	}
	mss := false
	for _, x := range t.Extension {
		switch x.URL {
		case fhirEmailTypeURL:
			if x.ValueCoding == nil || x.ValueCoding.Code != "MSSANTE" {
				return e, false // APICRYPT and other messaging systems
			}
			mss = true
		case fhirMailboxMetaURL:
			mss = true
			for _, s := range x.Extension {
				switch s.URL {
				case "type":
					if s.ValueCodeableConcept != nil && len(s.ValueCodeableConcept.Coding) > 0 {
						e.Type = BALType(s.ValueCodeableConcept.Coding[0].Code)
					}
				case "description":
					e.Description = s.ValueString
				case "service":
					e.Structure.Service = s.ValueString
				case "digitization":
					e.Dematerialisation = s.ValueBoolean != nil && *s.ValueBoolean
				case "listeRouge":
					if s.ValueBoolean != nil && *s.ValueBoolean {
						return e, false
					}
				}
			}
		}
	}
	e.Address = t.Value
	return e, mss
}
