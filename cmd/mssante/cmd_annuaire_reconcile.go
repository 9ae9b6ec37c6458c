package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mssante-go/sdk/annuaire"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/publication"
)

const annuaireReconcileUsage = `
       mssante annuaire reconcile --source SRC [--store D | --config serve.toml] [--domain D]... [--json] [--for-others]
       mssante annuaire publish --source SRC --api-url URL [--store D | --config serve.toml] [--apply] [--json]

reconcile compares the BALs of the mailbox store with the national view (SRC:
extraction:FILE or fhir[:BASE]) and prints a verdict per BAL: ok, missing, stale
(published, no longer served), different (type, owner, structure, liste rouge), unlisted
(liste rouge, rightly absent), unchecked. Stale BALs are looked for only in today's whole
extraction. --for-others leaves out the liste rouge BALs and the details, for a report
shared outside the structure. It exits 1 when a BAL is missing, stale or different.
publish plans the writes that bring the Annuaire Santé in step (the missing BALs, the
journal of "mssante bal"; the stale BALs this connector owns are withdrawn, never another's)
and prints them; --apply sends them to the FHIR write API at --api-url (or
$MSSANTE_ANNUAIRE_API_URL) with the key in $ESANTE_API_KEY. The ANS announces that API as
still in development.`

// nationalFlags are the flags of the commands that read the national view.
type nationalFlags struct {
	source, apiKeyEnv string
	at                string
	tf                tlsFlags
}

func (n *nationalFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&n.source, "source", "", "extraction:FILE or fhir[:BASE] (required)")
	fs.StringVar(&n.apiKeyEnv, "api-key-env", "ESANTE_API_KEY", "name of the environment variable holding the API key")
	fs.StringVar(&n.at, "extraction-time", "", "generation time of the extraction, RFC 3339 (default: from its file name)")
	n.tf.add(fs)
}

// open returns the national view and the options its reconciliation needs.
func (n *nationalFlags) open() (annuaire.Directory, *annuaire.ReconcileOptions, *annuaire.Extraction, error) {
	o := &annuaire.ReconcileOptions{}
	switch {
	case strings.HasPrefix(n.source, "extraction:"):
		path := strings.TrimPrefix(n.source, "extraction:")
		x, err := annuaire.LoadFile(path, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		o.ExtractionTime, _ = annuaire.ExtractionTime(path)
		if n.at != "" {
			t, err := time.Parse(time.RFC3339, n.at)
			if err != nil {
				return nil, nil, nil, exitCode(2, fmt.Errorf("--extraction-time: %w", err))
			}
			o.ExtractionTime = t
		}
		return x, o, x, nil
	case n.source == "fhir", strings.HasPrefix(n.source, "fhir:"):
		tc, err := n.tf.config(false)
		if err != nil {
			return nil, nil, nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		f, err := annuaire.NewFHIR(&annuaire.FHIROptions{BaseURL: strings.TrimPrefix(strings.TrimPrefix(n.source, "fhir"), ":"),
			APIKey: os.Getenv(n.apiKeyEnv), HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}})
		return f, o, nil, err
	}
	return nil, nil, nil, exitCode(2, fmt.Errorf("--source: extraction:FILE or fhir[:BASE], not %q", n.source))
}

// skippedNote tells on w what the load of the extraction skipped.
func skippedNote(w io.Writer, x *annuaire.Extraction) {
	if x == nil {
		return
	}
	if r := x.Report(); r.Skipped > 0 {
		fmt.Fprintf(w, "extraction: %d malformed line(s) of %d skipped (line %d: %s)\n", r.Skipped, r.Lines, r.BadLines[0].Line, r.BadLines[0].Reason)
	}
}

func annuaireReconcile(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "annuaire reconcile", "--source SRC [--store D | --config serve.toml] [--domain D]... [--json] [--for-others]")
	dir := storeFlag(fs)
	var nf nationalFlags
	nf.add(fs)
	var domains multiFlag
	fs.Var(&domains, "domain", "a mail domain of the connector (repeatable; default: those of the store's BALs)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	forOthers := fs.Bool("for-others", false, "leave out the liste rouge BALs and the details (a report shared outside)")
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if nf.source == "" || fs.NArg() != 0 {
		return usageError(fs, "--source is required, and no argument is expected")
	}
	national, opts, x, err := nf.open()
	if err != nil {
		return err
	}
	opts.Domains = domains
	st, err := openStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, _, err := publication.Reconcile(ctx, st, national, opts)
	if err != nil {
		return err
	}
	skippedNote(e.stderr, x)
	if *forOthers {
		rec = rec.ForOthers()
	}
	if *asJSON {
		if err := writeJSON(e.stdout, rec); err != nil {
			return err
		}
	} else if err := printReconciliation(e.stdout, rec); err != nil {
		return err
	}
	if rec.Counts[annuaire.StatusMissing]+rec.Counts[annuaire.StatusStale]+rec.Counts[annuaire.StatusDifferent] > 0 {
		return exitCode(1, nil)
	}
	return nil
}

func printReconciliation(w io.Writer, rec *annuaire.Reconciliation) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tADDRESS\tTYPE\tDETAIL")
	for _, f := range rec.Findings {
		typ, detail := "", strings.Join(f.Differences, ", ")
		switch {
		case f.Local != nil:
			typ = string(f.Local.Type)
		case f.Published != nil:
			typ = string(f.Published.Type)
		}
		if f.Status == annuaire.StatusStale && !f.Owned {
			detail = "not served by this connector: left to its owner"
		}
		if f.Local != nil && f.Local.ListeRouge {
			detail = strings.TrimPrefix(detail+", liste rouge", ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Status, f.Address, typ, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var counts []string
	for _, s := range annuaire.Statuses() {
		counts = append(counts, fmt.Sprintf("%s %d", s, rec.Counts[s]))
	}
	fmt.Fprintln(w, strings.Join(counts, ", "))
	if !rec.StaleChecked {
		fmt.Fprintf(w, "no BAL called stale: %s\n", rec.StaleNote)
	}
	return nil
}

func annuairePublish(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "annuaire publish", "--source SRC --api-url URL [--store D | --config serve.toml] [--apply] [--json]")
	dir := storeFlag(fs)
	var nf nationalFlags
	nf.add(fs)
	var lc lifecycle
	lc.add(fs)
	apiURL := fs.String("api-url", os.Getenv("MSSANTE_ANNUAIRE_API_URL"), "FHIR base of the Annuaire Santé write API (not yet published by the ANS)")
	apply := fs.Bool("apply", false, "send the writes (default: a dry run that prints them)")
	asJSON := fs.Bool("json", false, "print the plan as JSON")
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if nf.source == "" || fs.NArg() != 0 {
		return usageError(fs, "--source is required, and no argument is expected")
	}
	if *apply && *apiURL == "" {
		return usageError(fs, "--apply needs --api-url (or $MSSANTE_ANNUAIRE_API_URL)")
	}
	national, opts, x, err := nf.open()
	if err != nil {
		return err
	}
	st, err := openStore(ctx, dir)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, listings, err := publication.Reconcile(ctx, st, national, opts)
	if err != nil {
		return err
	}
	skippedNote(e.stderr, x)
	plan, err := publication.NewPlan(ctx, st, rec, listings)
	if err != nil {
		return err
	}
	var pub *annuaire.Publisher
	var alog *audit.Log
	if *apply {
		tc, err := nf.tf.config(false)
		if err != nil {
			return err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		if pub, err = annuaire.NewPublisher(&annuaire.PublisherOptions{BaseURL: *apiURL, APIKey: os.Getenv(nf.apiKeyEnv),
			HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}}); err != nil {
			return exitCode(2, err)
		}
		if alog, err = lc.open(); err != nil {
			return err
		}
		defer alog.Close()
	}
	runErr := publication.Run(ctx, st, pub, plan, &publication.RunOptions{Apply: *apply, Audit: alog, Actor: osActor()})
	if *asJSON {
		if err := writeJSON(e.stdout, plan); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tWRITE\tRESULT\tWHY")
		for _, a := range plan.Actions {
			op := string(a.Op)
			if op == "" {
				op = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Address, op, a.Result, a.Why)
		}
		tw.Flush()
		if !*apply {
			fmt.Fprintln(e.stdout, "dry run: nothing sent (--apply sends the writes)")
		}
		if !rec.StaleChecked {
			fmt.Fprintf(e.stdout, "nothing withdrawn as stale: %s\n", rec.StaleNote)
		}
	}
	if runErr != nil {
		return exitCode(1, runErr)
	}
	return nil
}

// doctorAnnuaire is the line of "mssante doctor" on the BALs of the store against the
// extraction: counts only, without the liste rouge BALs (a doctor's output is shared).
func doctorAnnuaire(ctx context.Context, store *storeSel, extraction string) doctorCheck {
	const name = "annuaire reconciliation"
	nf := nationalFlags{source: "extraction:" + extraction}
	national, opts, _, err := nf.open()
	if err != nil {
		return doctorCheck{doctorFail, name, err.Error(), "fetch today's extraction (mssante annuaire fetch)"}
	}
	st, err := openStore(ctx, store)
	if err != nil {
		return doctorCheck{doctorFail, name, err.Error(), "check --store, or the store of --config"}
	}
	defer st.Close()
	rec, _, err := publication.Reconcile(ctx, st, national, opts)
	if err != nil {
		return doctorCheck{doctorFail, name, err.Error(), ""}
	}
	rec = rec.ForOthers()
	var counts []string
	for _, s := range annuaire.Statuses() {
		counts = append(counts, fmt.Sprintf("%s %d", s, rec.Counts[s]))
	}
	detail := strings.Join(counts, ", ")
	if !rec.StaleChecked {
		detail += "; stale not checked: " + rec.StaleNote
	}
	if rec.Counts[annuaire.StatusMissing]+rec.Counts[annuaire.StatusStale]+rec.Counts[annuaire.StatusDifferent] > 0 {
		return doctorCheck{doctorWarn, name, detail, "mssante annuaire reconcile --source extraction:" + filepath.Base(extraction) + " lists them; mssante annuaire publish brings the Annuaire in step"}
	}
	return doctorCheck{doctorOK, name, detail, ""}
}
