package annuairetest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// writeAPIResources are the resources a WriteAPI starts with, shaped as the examples of the ANS
// API BAL MSS IG (interop-ig-fhir-api-messagerie-securisee-sante): the Practitioner
// mss-practitioner-bal-per-dupont (idNat 810003456789) of its input/fsh/Examples, the
// Organization of its conditional PATCH example (FINESS 123456789, with three ORG BALs), and two Organizations that
// share the FINESS 999999999 (a conditional PATCH on it is ambiguous). Fictitious data.
//
//go:embed writeapi.json
var writeAPIResources []byte

// WriteAPI is a fake of the Annuaire Santé's FHIR write API for BALs, as the IG describes it:
// FHIR Patch (Parameters, application/fhir+json) of one operation on telecom (insert at
// Resource.telecom, replace or delete at Resource.telecom.where(value = '…')), sent to
// Resource?identifier=system|value; 412 when several resources match, 404 when none, 401
// without the API key. Safe for concurrent use; serve it with httptest.
type WriteAPI struct {
	APIKey string

	mu        sync.Mutex
	resources []map[string]any
	limited   int    // requests still to answer 429
	after     string // their Retry-After
	patches   int
}

// NewWriteAPI returns the fake with its initial resources.
func NewWriteAPI(apiKey string) *WriteAPI {
	w := &WriteAPI{APIKey: apiKey}
	if err := json.Unmarshal(writeAPIResources, &w.resources); err != nil {
		panic(err) // embedded, checked by the tests
	}
	return w
}

// RateLimit makes the next n requests answer 429 with this Retry-After.
func (w *WriteAPI) RateLimit(n int, retryAfter string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limited, w.after = n, retryAfter
}

// Patches returns the number of patches applied.
func (w *WriteAPI) Patches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.patches
}

// Telecoms returns the BAL addresses of the resource with this id, with their liste rouge
// flag ("addr" or "addr (liste rouge)").
func (w *WriteAPI) Telecoms(id string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, r := range w.resources {
		if r["id"] != id {
			continue
		}
		for _, t := range list(r["telecom"]) {
			tm, _ := t.(map[string]any)
			s, _ := tm["value"].(string)
			if strings.Contains(string(mustJSON(tm)), `"listeRouge","valueBoolean":true`) {
				s += " (liste rouge)"
			}
			out = append(out, s)
		}
	}
	return out
}

func list(v any) []any { l, _ := v.([]any); return l }

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

var wherePath = regexp.MustCompile(`^(\w+)\.telecom\.where\(value = '([^']+)'\)$`)

func outcome(rw http.ResponseWriter, status int, code, text string) {
	rw.Header().Set("Content-Type", "application/fhir+json")
	rw.WriteHeader(status)
	fmt.Fprintf(rw, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":%q,"diagnostics":%q}]}`, code, text)
}

// ServeHTTP implements http.Handler.
func (w *WriteAPI) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.limited > 0 {
		w.limited--
		rw.Header().Set("Retry-After", w.after)
		outcome(rw, http.StatusTooManyRequests, "throttled", "rate limit")
		return
	}
	if r.Header.Get("ESANTE-API-KEY") != w.APIKey {
		outcome(rw, http.StatusUnauthorized, "security", "invalid API key")
		return
	}
	res := strings.TrimPrefix(r.URL.Path[strings.LastIndexByte(r.URL.Path, '/'):], "/")
	if r.Method != http.MethodPatch || r.Header.Get("Content-Type") != "application/fhir+json" ||
		!slices.Contains([]string{"Practitioner", "PractitionerRole", "Organization"}, res) {
		outcome(rw, http.StatusBadRequest, "not-supported", "PATCH application/fhir+json on a carrier resource only")
		return
	}
	system, value, _ := strings.Cut(r.URL.Query().Get("identifier"), "|")
	var matches []map[string]any
	for _, x := range w.resources {
		if x["resourceType"] != res {
			continue
		}
		for _, id := range list(x["identifier"]) {
			im, _ := id.(map[string]any)
			if im["system"] == system && im["value"] == value {
				matches = append(matches, x)
				break
			}
		}
	}
	switch len(matches) {
	case 0:
		outcome(rw, http.StatusNotFound, "not-found", "no resource matches the identifier")
		return
	case 1:
	default:
		outcome(rw, http.StatusPreconditionFailed, "multiple-matches", "several resources match the identifier")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var params struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name string `json:"name"`
			Part []struct {
				Name              string         `json:"name"`
				ValueCode         string         `json:"valueCode"`
				ValueString       string         `json:"valueString"`
				ValueInteger      *int           `json:"valueInteger"`
				ValueContactPoint map[string]any `json:"valueContactPoint"`
			} `json:"part"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &params); err != nil || params.ResourceType != "Parameters" || len(params.Parameter) != 1 || params.Parameter[0].Name != "operation" {
		outcome(rw, http.StatusBadRequest, "invalid", "a Parameters resource with one operation")
		return
	}
	var typ, path string
	var cp map[string]any
	var index *int
	for _, p := range params.Parameter[0].Part {
		switch p.Name {
		case "type":
			typ = p.ValueCode
		case "path":
			path = p.ValueString
		case "index":
			index = p.ValueInteger
		case "value":
			cp = p.ValueContactPoint
		}
	}
	x := matches[0]
	tel := list(x["telecom"])
	find := func(addr string) int {
		return slices.IndexFunc(tel, func(t any) bool { tm, _ := t.(map[string]any); return tm["value"] == addr })
	}
	switch typ {
	case "insert":
		if path != res+".telecom" || index == nil || cp == nil || cp["system"] != "email" {
			outcome(rw, http.StatusBadRequest, "invalid", "insert: path, index and a ContactPoint")
			return
		}
		if addr, _ := cp["value"].(string); find(addr) >= 0 {
			outcome(rw, http.StatusBadRequest, "duplicate", "the BAL is there already")
			return
		}
		tel = slices.Insert(tel, min(*index, len(tel)), any(cp))
	case "replace", "delete":
		m := wherePath.FindStringSubmatch(path)
		if m == nil || m[1] != res {
			outcome(rw, http.StatusBadRequest, "invalid", "path: Resource.telecom.where(value = '…')")
			return
		}
		i := find(m[2])
		if i < 0 {
			outcome(rw, http.StatusBadRequest, "invalid", "no such BAL on the resource")
			return
		}
		if typ == "delete" {
			tel = slices.Delete(tel, i, i+1)
		} else if cp == nil || cp["value"] != m[2] {
			outcome(rw, http.StatusBadRequest, "invalid", "the address of a BAL cannot change")
			return
		} else {
			tel[i] = cp
		}
	default:
		outcome(rw, http.StatusBadRequest, "invalid", "operation type")
		return
	}
	x["telecom"] = tel
	w.patches++
	rw.Header().Set("Content-Type", "application/fhir+json")
	rw.Write(mustJSON(x))
}
