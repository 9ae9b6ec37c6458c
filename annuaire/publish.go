package annuaire

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The publication of an operator's BALs follows the API BAL MSS IG of the ANS
// (interop-ig-fhir-api-messagerie-securisee-sante, docs/references.md): a BAL is a telecom
// element of its carrier resource, written with FHIR Patch (Parameters, application/fhir+json):
// insert into telecom to create, replace to update, delete to withdraw. The carrier is
// targeted conditionally by its business identifier: Practitioner?identifier= its idNat
// (RPPS), PractitionerRole?identifier= its situation id, Organization?identifier= its FINESS;
// the server answers 412 when several resources match and 404 when none does. The IG
// announces that endpoint as still in development: this client follows its examples and
// has not met the live service.

// Identifier systems of the conditional targets, from the IG's examples.
const (
	rppsSystem   = "urn:oid:1.2.250.1.71.4.2.1"
	finessSystem = "https://finess.esante.gouv.fr"
	mailboxExt   = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
	typeBALCodes = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"
)

// PublisherOptions configure [NewPublisher].
type PublisherOptions struct {
	// BaseURL is the FHIR base of the write API (required: the IG's OpenAPI gives no address
	// yet). https, or http on a loopback address for tests.
	BaseURL string
	// APIKey is sent in the ESANTE-API-KEY header.
	APIKey string
	// SituationSystem is the identifier system of PractitionerRole situations (the IG leaves
	// it open); required to target a situation.
	SituationSystem string
	// HTTPClient makes the requests (nil = TLS 1.2 minimum, 30 s timeout).
	HTTPClient *http.Client
	// MaxRetries bounds the retries of a request answered 429 or 503 (0 = 3, -1 = none), each
	// after its Retry-After (at most a minute).
	MaxRetries int
	// Now and Sleep are the clock (nil = the real ones).
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives request outcomes, without addresses (nil = discard).
	Logger *slog.Logger
}

// Publisher writes BALs to the Annuaire Santé through the FHIR write API.
type Publisher struct {
	opts PublisherOptions
	base *url.URL
	log  *slog.Logger
}

// Errors of the publication.
var (
	// ErrAmbiguousTarget is a 412: the target's identifier matches several resources.
	ErrAmbiguousTarget = errors.New("annuaire: publication: several resources match the target")
	// ErrNoTarget is a 404: no resource has the target's identifier.
	ErrNoTarget = errors.New("annuaire: publication: no resource matches the target")
	// ErrInvalidPublication is a BAL or target the client refuses to send.
	ErrInvalidPublication = errors.New("annuaire: publication: invalid request")
)

// NewPublisher returns a publisher for o.BaseURL.
func NewPublisher(o *PublisherOptions) (*Publisher, error) {
	p := &Publisher{}
	if o != nil {
		p.opts = *o
	}
	u, err := url.Parse(strings.TrimSuffix(p.opts.BaseURL, "/"))
	if err != nil || p.opts.BaseURL == "" || u.Host == "" || u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil, fmt.Errorf("%w: the base URL must be https (got %q)", ErrInvalidPublication, p.opts.BaseURL)
	}
	p.base = u
	if p.opts.HTTPClient == nil {
		p.opts.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment}}
	}
	if p.opts.MaxRetries == 0 {
		p.opts.MaxRetries = 3
	}
	if p.opts.Now == nil {
		p.opts.Now = time.Now
	}
	if p.opts.Sleep == nil {
		p.opts.Sleep = sleepCtx
	}
	p.log = p.opts.Logger
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// Target is the resource that carries a BAL, by one business identifier.
type Target struct {
	// RPPS targets the Practitioner (PER and CAB BALs): 11 digits, or the idNat "8" + RPPS.
	RPPS string
	// Situation targets a PractitionerRole (a PER BAL held in a structure).
	Situation string
	// FINESS targets the Organization (ORG and APP BALs): 9 digits, or "1" + FINESS.
	FINESS string
}

// path returns the resource path and the identifier query of the target.
func (t Target) path(situationSystem string) (string, string, error) {
	switch {
	case t.RPPS != "" && t.Situation == "" && t.FINESS == "":
		id := t.RPPS
		if len(id) == 11 {
			id = rppsPrefix + id
		}
		if len(id) != 12 || id[0] != '8' || !digits(id) {
			return "", "", fmt.Errorf("%w: RPPS %q", ErrInvalidPublication, truncate(t.RPPS, 20))
		}
		return "Practitioner", rppsSystem + "|" + id, nil
	case t.Situation != "" && t.RPPS == "" && t.FINESS == "":
		if situationSystem == "" {
			return "", "", fmt.Errorf("%w: a situation target needs PublisherOptions.SituationSystem", ErrInvalidPublication)
		}
		return "PractitionerRole", situationSystem + "|" + t.Situation, nil
	case t.FINESS != "" && t.RPPS == "" && t.Situation == "":
		id := t.FINESS
		if len(id) == 10 && id[0] == '1' {
			id = id[1:]
		}
		if len(id) != 9 || !digits(id) {
			return "", "", fmt.Errorf("%w: FINESS %q", ErrInvalidPublication, truncate(t.FINESS, 20))
		}
		return "Organization", finessSystem + "|" + id, nil
	}
	return "", "", fmt.Errorf("%w: a target has exactly one of RPPS, situation or FINESS", ErrInvalidPublication)
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Mailbox is what the Annuaire Santé publishes of a BAL, per the IG's data by type: every
// BAL has an address, a type, a liste rouge flag and a rank; ORG and APP BALs add a
// description, a service and a responsible (a PER BAL has none of these: they are not sent).
type Mailbox struct {
	Address    string
	Type       BALType
	ListeRouge bool
	// Rank orders the BALs of one holder (1 = preferred; 0 = not sent).
	Rank        int
	Description string
	Service     string
	Responsible string
}

type fhirPart struct {
	Name              string          `json:"name"`
	ValueCode         string          `json:"valueCode,omitempty"`
	ValueString       string          `json:"valueString,omitempty"`
	ValueInteger      *int            `json:"valueInteger,omitempty"`
	ValueContactPoint *contactPointJS `json:"valueContactPoint,omitempty"`
}

type contactPointJS struct {
	System    string        `json:"system"`
	Value     string        `json:"value"`
	Rank      int           `json:"rank,omitempty"`
	Extension []extensionJS `json:"extension"`
}

type extensionJS struct {
	URL                  string        `json:"url"`
	Extension            []extensionJS `json:"extension,omitempty"`
	ValueBoolean         *bool         `json:"valueBoolean,omitempty"`
	ValueString          string        `json:"valueString,omitempty"`
	ValueCodeableConcept *codeableJS   `json:"valueCodeableConcept,omitempty"`
}

type codeableJS struct {
	Coding []struct {
		System string `json:"system"`
		Code   string `json:"code"`
	} `json:"coding"`
}

func (m *Mailbox) contactPoint() (*contactPointJS, error) {
	if !strings.Contains(m.Address, "@") || strings.ContainsAny(m.Address, "'\\ \t\r\n") {
		return nil, fmt.Errorf("%w: BAL address", ErrInvalidPublication)
	}
	switch m.Type {
	case PER, CAB, ORG, APP:
	default:
		return nil, fmt.Errorf("%w: BAL type %q", ErrInvalidPublication, m.Type)
	}
	typ := &codeableJS{Coding: []struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}{{typeBALCodes, string(m.Type)}}}
	rouge := m.ListeRouge
	meta := []extensionJS{{URL: "type", ValueCodeableConcept: typ}, {URL: "listeRouge", ValueBoolean: &rouge}}
	if m.Type != PER {
		for _, kv := range [][2]string{{"description", m.Description}, {"service", m.Service}, {"responsible", m.Responsible}} {
			if kv[1] != "" && (m.Type == ORG || m.Type == APP || kv[0] == "description") {
				meta = append(meta, extensionJS{URL: kv[0], ValueString: kv[1]})
			}
		}
	}
	return &contactPointJS{System: "email", Value: strings.ToLower(m.Address), Rank: max(m.Rank, 0),
		Extension: []extensionJS{{URL: mailboxExt, Extension: meta}}}, nil
}

// telecomPath is the FHIRPath of one BAL's telecom element in a resource.
func telecomPath(resource, address string) string {
	return resource + ".telecom.where(value = '" + strings.ToLower(address) + "')"
}

// Insert publishes a new BAL on its carrier.
func (p *Publisher) Insert(ctx context.Context, t Target, m *Mailbox) error {
	return p.patch(ctx, t, func(res string) ([]fhirPart, error) {
		cp, err := m.contactPoint()
		zero := 0
		return []fhirPart{{Name: "type", ValueCode: "insert"}, {Name: "path", ValueString: res + ".telecom"},
			{Name: "index", ValueInteger: &zero}, {Name: "value", ValueContactPoint: cp}}, err
	})
}

// Replace rewrites a published BAL (its liste rouge flag, rank and, for ORG and APP, its
// description, service and responsible; the IG forbids changing the address or the type).
func (p *Publisher) Replace(ctx context.Context, t Target, m *Mailbox) error {
	return p.patch(ctx, t, func(res string) ([]fhirPart, error) {
		cp, err := m.contactPoint()
		return []fhirPart{{Name: "type", ValueCode: "replace"}, {Name: "path", ValueString: telecomPath(res, m.Address)},
			{Name: "value", ValueContactPoint: cp}}, err
	})
}

// Delete withdraws a published BAL from its carrier.
func (p *Publisher) Delete(ctx context.Context, t Target, address string) error {
	return p.patch(ctx, t, func(res string) ([]fhirPart, error) {
		m := Mailbox{Address: address, Type: PER}
		_, err := m.contactPoint() // the address check
		return []fhirPart{{Name: "type", ValueCode: "delete"}, {Name: "path", ValueString: telecomPath(res, address)}}, err
	})
}

// patch sends one FHIR Patch of one operation to the target, retrying 429 and 503.
func (p *Publisher) patch(ctx context.Context, t Target, op func(resource string) ([]fhirPart, error)) error {
	res, ident, err := t.path(p.opts.SituationSystem)
	if err != nil {
		return err
	}
	parts, err := op(res)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{"resourceType": "Parameters",
		"parameter": []map[string]any{{"name": "operation", "part": parts}}})
	if err != nil {
		return fmt.Errorf("annuaire: publication: %w", err)
	}
	u := *p.base
	u.Path += "/" + res
	u.RawQuery = url.Values{"identifier": {ident}}.Encode()
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u.String(), bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("annuaire: publication: %w", err)
		}
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Accept", "application/fhir+json")
		if p.opts.APIKey != "" {
			req.Header.Set("ESANTE-API-KEY", p.opts.APIKey)
		}
		resp, err := p.opts.HTTPClient.Do(req)
		if err != nil {
			return fmt.Errorf("annuaire: publication: %w", err)
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		p.log.Debug("annuaire: publication request", "resource", res, "status", resp.StatusCode, "attempt", attempt)
		switch resp.StatusCode {
		case http.StatusOK, http.StatusNoContent:
			return nil
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%w (%s): %s", ErrAmbiguousTarget, res, diagnostics(answer))
		case http.StatusNotFound:
			return fmt.Errorf("%w (%s): %s", ErrNoTarget, res, diagnostics(answer))
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if p.opts.MaxRetries < 0 || attempt >= p.opts.MaxRetries {
				if resp.StatusCode == http.StatusTooManyRequests {
					return ErrRateLimited
				}
				return &HTTPError{Status: resp.StatusCode, Diagnostics: diagnostics(answer)}
			}
			if err := p.opts.Sleep(ctx, retryAfter(resp.Header.Get("Retry-After"), p.opts.Now(), attempt)); err != nil {
				return err
			}
		default:
			return &HTTPError{Status: resp.StatusCode, Diagnostics: diagnostics(answer)}
		}
	}
}
