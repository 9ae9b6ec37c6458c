package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/mailbox"
)

const balListingUsage = `
  suspend ADDRESS            refuse new mail for a BAL (550 5.2.1) and withdraw it from the
                             Annuaire Santé at the next publication (the BAL and its mail stay,
                             readable over IMAP)
  resume ADDRESS             take mail again, and publish the BAL again
  listing ADDRESS [--structure ID] [--liste-rouge yes|no] [--json]
      show or change what the Annuaire Santé publishes of a BAL: the structure it is
      published under (FINESS, SIRET; default its owner for ORG and APP) and the holder's
      liste rouge wish
add, remove, suspend, resume and listing journal what the next "mssante annuaire publish"
must do, and write an audit record (--audit-dir, default $MSSANTE_AUDIT, else [audit] dir of
--config, else "audit" beside the store).`

// lifecycle journals the changes of a BAL's publication and audits them.
type lifecycle struct {
	fs       *flag.FlagSet
	auditDir *string
}

func (l *lifecycle) add(fs *flag.FlagSet) {
	l.fs = fs
	l.auditDir = fs.String("audit-dir", os.Getenv("MSSANTE_AUDIT"), `audit log folder (default: "audit" beside the store)`)
}

// open opens the audit log before the change: no change without its record.
func (l *lifecycle) open() (*audit.Log, error) {
	dir := *l.auditDir
	if dir == "" {
		store, config := l.fs.Lookup("store").Value.String(), l.fs.Lookup("config").Value.String()
		var err error
		if dir, err = (&storeSel{dir: &store, config: &config}).auditDir(); err != nil {
			return nil, err
		}
	}
	return audit.Open(&audit.Options{Dir: dir})
}

func (l *lifecycle) record(alog *audit.Log, event audit.Event, addr, reason string) {
	alog.Log(&audit.Record{Event: event, Source: "admin", BAL: strings.ToLower(addr), Actor: osActor(), Reason: reason})
}

func balSuspend(ctx context.Context, e *env, args []string) error {
	return balSetSuspended(ctx, e, args, true)
}
func balResume(ctx context.Context, e *env, args []string) error {
	return balSetSuspended(ctx, e, args, false)
}

func balSetSuspended(ctx context.Context, e *env, args []string, suspended bool) error {
	var lc lifecycle
	name, event, done := "resume", audit.EventBALResumed, "resumed: to be published again"
	if suspended {
		name, event, done = "suspend", audit.EventBALSuspended, "suspended: to be withdrawn from the Annuaire Santé"
	}
	st, addr, err := oneAddress(ctx, e, name, args, lc.add)
	if err != nil {
		return err
	}
	defer st.Close()
	alog, err := lc.open()
	if err != nil {
		return err
	}
	defer alog.Close()
	if _, err := st.ChangeListing(ctx, addr, mailbox.ListingChange{Suspended: &suspended}); err != nil {
		return exitCode(1, fmt.Errorf("%s: %w", addr, err))
	}
	lc.record(alog, event, addr, "done")
	fmt.Fprintf(e.stdout, "%s %s\n", strings.ToLower(addr), done)
	return nil
}

func balListing(ctx context.Context, e *env, args []string) error {
	var lc lifecycle
	var structure, rouge *string
	var asJSON *bool
	st, addr, err := oneAddress(ctx, e, "listing", args, func(fs *flag.FlagSet) {
		lc.add(fs)
		structure = fs.String("structure", "", "the structure the BAL is published under (FINESS, SIRET)")
		rouge = fs.String("liste-rouge", "", "yes: the holder asks not to appear in public directories; no: listed")
		asJSON = fs.Bool("json", false, "JSON output")
	})
	if err != nil {
		return err
	}
	defer st.Close()
	var c mailbox.ListingChange
	set := map[string]bool{}
	lc.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["structure"] {
		c.Structure = structure
	}
	if set["liste-rouge"] {
		v := strings.EqualFold(*rouge, "yes")
		if !v && !strings.EqualFold(*rouge, "no") {
			return usageError(lc.fs, "--liste-rouge: yes or no")
		}
		c.ListeRouge = &v
	}
	l, err := st.Listing(ctx, addr)
	if err == nil && (c.Structure != nil || c.ListeRouge != nil) {
		alog, err := lc.open()
		if err != nil {
			return err
		}
		defer alog.Close()
		if l, err = st.ChangeListing(ctx, addr, c); err == nil {
			lc.record(alog, audit.EventBALListingChanged, addr, "done")
		}
	}
	if err != nil {
		return exitCode(1, fmt.Errorf("%s: %w", addr, err))
	}
	if *asJSON {
		return writeJSON(e.stdout, map[string]any{"address": l.Address, "type": l.Type, "owner": l.Owner,
			"structure": l.Structure, "listeRouge": l.ListeRouge, "suspended": l.Suspended})
	}
	fmt.Fprintf(e.stdout, "address:     %s\ntype:        %s\nowner:       %s\nstructure:   %s\nliste rouge: %s\nsuspended:   %s\n",
		l.Address, l.Type, l.Owner, l.Structure, yesNo(l.ListeRouge), yesNo(l.Suspended))
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// journal records a publication to do and, when event is set, audits the change.
func (l *lifecycle) journal(ctx context.Context, st balStore, alog *audit.Log, a mailbox.PublicationAction, event audit.Event, addr string) error {
	if err := st.Journal(ctx, a, addr); err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	if event != "" {
		l.record(alog, event, addr, "done")
	}
	return nil
}
