// Package publication keeps the Annuaire Santé in step with the connector's BALs: it
// reconciles the mailbox store's registry (transport/mailbox listings) with the national
// view (package annuaire: the extraction file or the FHIR API), plans what to publish (the
// missing BALs, the journal of created, changed, suspended and removed ones) and what to
// withdraw (the stale BALs the connector owns, never another's), and runs the plan through the
// FHIR write API of the API BAL MSS IG (annuaire.Publisher), dry-run unless asked, with an
// audit record per change.
//
// Metrics ([RegisterMetrics], transport/metrics):
//
//	mssante_annuaire_reconcile_bals{status}       BALs per verdict of the last reconciliation
//	mssante_annuaire_extraction_skipped_lines     malformed lines skipped in the extraction in use
package publication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/metrics"
)

// Store is what the publication needs of the mailbox store; *mailbox.SQLite has it.
type Store interface {
	Listings(ctx context.Context) ([]mailbox.Listing, error)
	Pending(ctx context.Context) ([]mailbox.Publication, error)
	Done(ctx context.Context, ids ...int64) error
	Owned(ctx context.Context, address string) (bool, error)
	Record(ctx context.Context, a mailbox.PublicationAction, l *mailbox.Listing) error
	DoneSince(ctx context.Context, t time.Time) (map[string]mailbox.PublicationAction, error)
}

var _ Store = (*mailbox.SQLite)(nil)

// Local returns the registry's BAL as annuaire.Reconcile compares it.
func Local(l *mailbox.Listing) annuaire.Local {
	return annuaire.Local{Address: l.Address, Type: l.Type, Owner: personOwner(l), StructureID: l.Structure,
		ListeRouge: l.ListeRouge, Suspended: l.Suspended}
}

func personOwner(l *mailbox.Listing) string {
	if l.Type == mailbox.PER {
		return l.Owner
	}
	return ""
}

// Reconcile compares the store's registry with the national view; the stale BALs the
// store's journal knows are marked owned.
func Reconcile(ctx context.Context, st Store, national annuaire.Directory, opts *annuaire.ReconcileOptions) (*annuaire.Reconciliation, []mailbox.Listing, error) {
	ls, err := st.Listings(ctx)
	if err != nil {
		return nil, nil, err
	}
	local := make([]annuaire.Local, len(ls))
	for i := range ls {
		local[i] = Local(&ls[i])
	}
	var o annuaire.ReconcileOptions
	if opts != nil {
		o = *opts
	}
	var ownedErr error
	o.Owned = func(a string) bool {
		ok, err := st.Owned(ctx, a)
		ownedErr = cmpErr(ownedErr, err)
		return ok
	}
	rec, err := annuaire.Reconcile(ctx, local, national, &o)
	if err == nil {
		err = ownedErr
	}
	return rec, ls, err
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Op is a write of the plan.
type Op string

// Writes to the Annuaire Santé.
const (
	OpInsert  Op = "insert"
	OpReplace Op = "replace"
	OpDelete  Op = "delete"
)

// Action is one write of a plan, or (Op "") one BAL left alone, with why.
type Action struct {
	Address string            `json:"address"`
	Op      Op                `json:"op,omitempty"`
	Target  annuaire.Target   `json:"-"`
	Mailbox annuaire.Mailbox  `json:"-"`
	Why     string            `json:"why"`
	Journal []int64           `json:"journal,omitempty"`
	Result  string            `json:"result,omitempty"`
	Listing *mailbox.Listing  `json:"-"`
	Finding *annuaire.Finding `json:"-"`
}

// Plan is what a publication run would do.
type Plan struct {
	Actions []Action `json:"actions"`
	// Done are the journal entries that need no write (the national view shows them done).
	Done []int64 `json:"done,omitempty"`
}

// NewPlan turns a reconciliation and the store's journal into writes: insert the missing
// BALs, replace a liste rouge wish the directory does not show, delete the stale BALs the
// connector owns; then each journal entry not covered (publish, update, withdraw). A stale BAL
// the connector does not own, a BAL on another carrier (type, owner or structure differ)
// and a BAL without a FINESS or RPPS to target are left alone, with why.
func NewPlan(ctx context.Context, st Store, rec *annuaire.Reconciliation, listings []mailbox.Listing) (*Plan, error) {
	pending, err := st.Pending(ctx)
	if err != nil {
		return nil, err
	}
	byAddr := map[string]*mailbox.Listing{}
	for i := range listings {
		byAddr[strings.ToLower(listings[i].Address)] = &listings[i]
	}
	// Writes done since the extraction was generated are not in it yet: not done again.
	recent := map[string]mailbox.PublicationAction{}
	if !rec.ExtractionTime.IsZero() {
		if recent, err = st.DoneSince(ctx, rec.ExtractionTime); err != nil {
			return nil, err
		}
	}
	p := &Plan{}
	index := map[string]int{}
	add := func(a Action) {
		index[a.Address] = len(p.Actions)
		p.Actions = append(p.Actions, a)
	}
	for i := range rec.Findings {
		f := &rec.Findings[i]
		l := byAddr[f.Address]
		switch r := recent[f.Address]; {
		case f.Status == annuaire.StatusMissing && (r == mailbox.PublishBAL || r == mailbox.UpdateBAL),
			f.Status == annuaire.StatusStale && r == mailbox.WithdrawBAL:
			continue // done since the extraction
		}
		switch f.Status {
		case annuaire.StatusMissing:
			add(writeOf(OpInsert, l, "missing from the Annuaire Santé", f))
		case annuaire.StatusStale:
			if !f.Owned {
				add(Action{Address: f.Address, Why: "stale, but never served by this connector: left to its owner", Finding: f})
				continue
			}
			a := Action{Address: f.Address, Op: OpDelete, Why: "stale: published, no longer served", Finding: f}
			a.Target = publishedTarget(f.Published)
			if a.Target == (annuaire.Target{}) {
				a.Op, a.Why = "", "stale, but its carrier has no RPPS or FINESS to target: withdraw it by hand"
			}
			add(a)
		case annuaire.StatusDifferent:
			if len(f.Differences) == 1 && f.Differences[0] == "listeRouge" {
				add(writeOf(OpReplace, l, "published although on liste rouge", f))
			} else {
				add(Action{Address: f.Address, Why: "published with another " + strings.Join(f.Differences, ", ") + ": the type and carrier of a BAL cannot be patched, correct it by hand", Finding: f})
			}
		}
	}
	published := publishedSet(rec)
	for _, j := range pending {
		addr := strings.ToLower(j.Address)
		l, inRegistry := byAddr[addr]
		served := inRegistry && !l.Suspended
		if j.Action == mailbox.WithdrawBAL && served || j.Action != mailbox.WithdrawBAL && !served {
			p.Done = append(p.Done, j.ID) // superseded by a later change of the registry
			continue
		}
		if i, ok := index[addr]; ok {
			p.Actions[i].Journal = append(p.Actions[i].Journal, j.ID)
			continue
		}
		if j.Action == mailbox.WithdrawBAL && rec.StaleChecked && !published[addr] {
			p.Done = append(p.Done, j.ID) // no longer published: nothing to do
			continue
		}
		jl := j.Listing // as it was: what identified a removed BAL
		if inRegistry {
			jl = *l // as it is now: a later change of the listing goes with the write
		}
		op := map[mailbox.PublicationAction]Op{mailbox.PublishBAL: OpInsert, mailbox.UpdateBAL: OpReplace, mailbox.WithdrawBAL: OpDelete}[j.Action]
		if op == OpInsert && published[addr] {
			p.Done = append(p.Done, j.ID) // published already
			continue
		}
		a := writeOf(op, &jl, "journal: "+string(j.Action), nil)
		a.Journal = []int64{j.ID}
		add(a)
	}
	return p, nil
}

// publishedSet returns the addresses the national view shows.
func publishedSet(rec *annuaire.Reconciliation) map[string]bool {
	m := make(map[string]bool, len(rec.Findings))
	for i := range rec.Findings {
		f := &rec.Findings[i]
		m[f.Address] = f.Status == annuaire.StatusOK || f.Status == annuaire.StatusDifferent || f.Status == annuaire.StatusStale
	}
	return m
}

// writeOf is the write op of a registry BAL.
func writeOf(op Op, l *mailbox.Listing, why string, f *annuaire.Finding) Action {
	a := Action{Address: strings.ToLower(l.Address), Op: op, Why: why, Listing: l, Finding: f,
		Mailbox: annuaire.Mailbox{Address: l.Address, Type: l.Type, ListeRouge: l.ListeRouge, Description: l.Description}}
	switch {
	case l.Type == mailbox.PER && rppsLike(l.Owner):
		a.Target.RPPS = l.Owner
	case l.Type != mailbox.PER && finessLike(l.Structure):
		a.Target.FINESS = l.Structure
	default:
		a.Op, a.Why = "", why+", but no RPPS (PER) or FINESS (ORG, APP) to target: publish it by hand"
	}
	return a
}

// publishedTarget is the carrier of a published entry.
func publishedTarget(e *annuaire.Entry) annuaire.Target {
	switch {
	case e == nil:
	case e.Type == annuaire.PER && e.Person.RPPS() != "":
		return annuaire.Target{RPPS: e.Person.RPPS()}
	case e.Type != annuaire.PER && e.Structure.IDType == "FINESS" && finessLike(e.Structure.ID):
		return annuaire.Target{FINESS: e.Structure.ID}
	}
	return annuaire.Target{}
}

func rppsLike(s string) bool {
	return len(s) == 11 && digits(s) || len(s) == 12 && s[0] == '8' && digits(s)
}

func finessLike(s string) bool {
	return len(s) == 9 && digits(s) || len(s) == 10 && s[0] == '1' && digits(s)
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// RunOptions tune [Run].
type RunOptions struct {
	// Apply sends the writes; without it the run is a dry run that only says what it would do.
	Apply bool
	// Audit receives a record per write sent (nil = none); Actor names who asked.
	Audit *audit.Log
	Actor string
}

// ErrStopped reports a run stopped by an unreachable or rate-limiting API: the writes not
// sent stay for the next run.
var ErrStopped = errors.New("publication: run stopped, the rest is left for the next run")

// Run carries out a plan: each write's Result says "would <op>" (dry run), "done" or why
// not. A 412 or 404 fails that write only; an unreachable or rate-limiting API stops the run.
// The journal entries of the writes done (and the plan's Done) are marked done.
func Run(ctx context.Context, st Store, pub *annuaire.Publisher, plan *Plan, opts *RunOptions) error {
	var o RunOptions
	if opts != nil {
		o = *opts
	}
	if o.Apply && len(plan.Done) > 0 {
		if err := st.Done(ctx, plan.Done...); err != nil {
			return err
		}
	}
	failed := 0
	for i := range plan.Actions {
		a := &plan.Actions[i]
		if a.Op == "" {
			a.Result = "left alone"
			continue
		}
		if !o.Apply {
			a.Result = "would " + string(a.Op)
			continue
		}
		if pub == nil {
			return fmt.Errorf("publication: no publisher configured")
		}
		var err error
		switch a.Op {
		case OpInsert:
			err = pub.Insert(ctx, a.Target, &a.Mailbox)
		case OpReplace:
			err = pub.Replace(ctx, a.Target, &a.Mailbox)
		case OpDelete:
			err = pub.Delete(ctx, a.Target, a.Address)
		}
		event := audit.EventAnnuairePublished
		if a.Op == OpDelete {
			event = audit.EventAnnuaireWithdrawn
		}
		a.Result = "done"
		if err != nil {
			a.Result = reason(err)
		}
		o.Audit.Log(&audit.Record{Event: event, Source: "annuaire", BAL: a.Address, Actor: o.Actor, Reason: string(a.Op) + " " + a.Result})
		if err == nil {
			if err := record(ctx, st, a); err != nil {
				return err
			}
			continue
		}
		failed++
		if !oneWrite(err) {
			for j := i + 1; j < len(plan.Actions); j++ {
				plan.Actions[j].Result = "not sent: run stopped"
				if plan.Actions[j].Op == "" {
					plan.Actions[j].Result = "left alone"
				}
			}
			return fmt.Errorf("%w: %w", ErrStopped, err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("publication: %d writes failed", failed)
	}
	return nil
}

// record marks the journal entries of a write done, or journals a write that had none.
func record(ctx context.Context, st Store, a *Action) error {
	if len(a.Journal) > 0 {
		return st.Done(ctx, a.Journal...)
	}
	l := a.Listing
	if l == nil {
		l = &mailbox.Listing{Address: a.Address, Type: a.Mailbox.Type}
		if a.Finding != nil && a.Finding.Published != nil {
			l.Type = a.Finding.Published.Type
		}
	}
	action := map[Op]mailbox.PublicationAction{OpInsert: mailbox.PublishBAL, OpReplace: mailbox.UpdateBAL, OpDelete: mailbox.WithdrawBAL}[a.Op]
	return st.Record(ctx, action, l)
}

// oneWrite reports an error of one write only (the others may succeed): a 412, a 404, a
// request the client or the server refuses. An unreachable API, a 5xx, a refused key (401,
// 403) and a rate limit stop the run.
func oneWrite(err error) bool {
	var he *annuaire.HTTPError
	return errors.Is(err, annuaire.ErrAmbiguousTarget) || errors.Is(err, annuaire.ErrNoTarget) ||
		errors.Is(err, annuaire.ErrInvalidPublication) ||
		errors.As(err, &he) && he.Status >= 400 && he.Status < 500 && he.Status != 401 && he.Status != 403 && he.Status != 429
}

// reason is the Result of a failed write.
func reason(err error) string {
	switch {
	case errors.Is(err, annuaire.ErrAmbiguousTarget):
		return "several carriers match (412): target it by hand"
	case errors.Is(err, annuaire.ErrNoTarget):
		return "no carrier matches (404)"
	case errors.Is(err, annuaire.ErrRateLimited):
		return "rate limited (429)"
	}
	return err.Error()
}

// RegisterMetrics adds the gauges of the package to m: the counts of the reconciliation that
// last returns (nil before the first), and the lines skipped in the extraction that x returns
// (nil = no such gauge).
func RegisterMetrics(m *metrics.Metrics, last func() *annuaire.Reconciliation, x func() *annuaire.Extraction) error {
	if err := m.Register(verdicts(last)); err != nil {
		return err
	}
	if x == nil {
		return nil
	}
	return m.GaugeFunc("mssante_annuaire_extraction_skipped_lines", "Malformed lines skipped in the extraction in use.", nil, func() float64 {
		if e := x(); e != nil {
			return float64(e.Report().Skipped)
		}
		return 0
	})
}

var descVerdicts = prometheus.NewDesc("mssante_annuaire_reconcile_bals",
	"BALs per verdict of the last reconciliation with the Annuaire Santé.", []string{"status"}, nil)

// verdicts exposes the counts of one reconciliation per scrape: last is called once, so that
// a scrape racing a new reconciliation never shows the counts of two (or of none and one).
type verdicts func() *annuaire.Reconciliation

func (v verdicts) Describe(ch chan<- *prometheus.Desc) { ch <- descVerdicts }

func (v verdicts) Collect(ch chan<- prometheus.Metric) {
	r := v()
	for _, s := range annuaire.Statuses() {
		n := 0
		if r != nil {
			n = r.Counts[s]
		}
		ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.GaugeValue, float64(n), string(s))
	}
}
