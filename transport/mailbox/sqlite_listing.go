package mailbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// What the Annuaire Santé publishes of a BAL beyond the registry's own columns, and the
// journal of what a publication run must do. Tables of their own, so that a store of an
// earlier version gains them on open and its BALs read as listed under their owner, not liste
// rouge, served.
const listingSchema = `
CREATE TABLE IF NOT EXISTS bal_listing (
	address TEXT PRIMARY KEY REFERENCES bal(address) ON DELETE CASCADE,
	structure TEXT NOT NULL DEFAULT '',
	liste_rouge INTEGER NOT NULL DEFAULT 0,
	suspended INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS publication (
	id INTEGER PRIMARY KEY,
	ts INTEGER NOT NULL,
	address TEXT NOT NULL,
	action TEXT NOT NULL,
	type TEXT NOT NULL,
	owner TEXT NOT NULL DEFAULT '',
	structure TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	liste_rouge INTEGER NOT NULL DEFAULT 0,
	done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS publication_pending ON publication(done, id);
CREATE INDEX IF NOT EXISTS publication_address ON publication(address);
`

func (s *SQLite) migrateListing(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, listingSchema); err != nil {
		return fmt.Errorf("mailbox: migrate: %w", err)
	}
	return nil
}

// Listing is what the Annuaire Santé publishes of a BAL, as the registry knows it.
type Listing struct {
	Address     string
	Type        Type
	Owner       string
	Description string
	// Structure is the structure the BAL is published under (FINESS, SIRET…); "" = the Owner
	// of an ORG or APP BAL.
	Structure string
	// ListeRouge is the holder's wish not to appear in public directories.
	ListeRouge bool
	// Suspended is a BAL kept in the store but withdrawn from the Annuaire Santé, so that
	// senders no longer find it (the store itself still accepts its mail).
	Suspended bool
}

// PublicationAction is what a publication run must do for a BAL.
type PublicationAction string

// Publication actions.
const (
	PublishBAL  PublicationAction = "publish"  // created or resumed
	UpdateBAL   PublicationAction = "update"   // its listing changed
	WithdrawBAL PublicationAction = "withdraw" // suspended or removed
)

// Publication is one entry of the journal: the action and the BAL as it was then (a removed
// BAL is withdrawn with what identified it).
type Publication struct {
	ID     int64
	Time   time.Time
	Action PublicationAction
	Listing
}

// Listings returns the listing of every BAL, sorted by address.
func (s *SQLite) Listings(ctx context.Context) ([]Listing, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT b.address, b.type, b.owner, b.description,
		coalesce(l.structure,''), coalesce(l.liste_rouge,0), coalesce(l.suspended,0)
		FROM bal b LEFT JOIN bal_listing l ON l.address=b.address ORDER BY b.address`)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []Listing
	for rows.Next() {
		var l Listing
		var typ string
		if err := rows.Scan(&l.Address, &typ, &l.Owner, &l.Description, &l.Structure, &l.ListeRouge, &l.Suspended); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		l.Type = Type(typ)
		l.defaultStructure()
		out = append(out, l)
	}
	return out, rows.Err()
}

func (l *Listing) defaultStructure() {
	if l.Structure == "" && l.Type != PER {
		l.Structure = l.Owner
	}
}

// Listing returns the listing of one BAL.
func (s *SQLite) Listing(ctx context.Context, address string) (*Listing, error) {
	return s.listingTx(ctx, s.db, normAddr(address))
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *SQLite) listingTx(ctx context.Context, q querier, addr string) (*Listing, error) {
	var l Listing
	var typ string
	err := q.QueryRowContext(ctx, `SELECT b.address, b.type, b.owner, b.description,
		coalesce(l.structure,''), coalesce(l.liste_rouge,0), coalesce(l.suspended,0)
		FROM bal b LEFT JOIN bal_listing l ON l.address=b.address WHERE b.address=?`, addr).
		Scan(&l.Address, &typ, &l.Owner, &l.Description, &l.Structure, &l.ListeRouge, &l.Suspended)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoBAL
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	l.Type = Type(typ)
	l.defaultStructure()
	return &l, nil
}

// ListingChange changes the listing of a BAL: nil fields stay as they are.
type ListingChange struct {
	Structure  *string
	ListeRouge *bool
	Suspended  *bool
}

// ChangeListing applies c to a BAL and journals what must be published: a suspension is
// withdrawn, a resumption published, any other change updated.
func (s *SQLite) ChangeListing(ctx context.Context, address string, c ListingChange) (*Listing, error) {
	addr := normAddr(address)
	var out *Listing
	err := s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		l, err := s.listingTx(ctx, tx, addr)
		if err != nil {
			return nil, err
		}
		was := *l
		if c.Structure != nil {
			l.Structure = *c.Structure
		}
		if c.ListeRouge != nil {
			l.ListeRouge = *c.ListeRouge
		}
		if c.Suspended != nil {
			l.Suspended = *c.Suspended
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO bal_listing(address,structure,liste_rouge,suspended) VALUES (?,?,?,?)
			ON CONFLICT(address) DO UPDATE SET structure=excluded.structure, liste_rouge=excluded.liste_rouge, suspended=excluded.suspended`,
			addr, l.Structure, l.ListeRouge, l.Suspended); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		action := UpdateBAL
		switch {
		case *l == was:
			out = l
			return nil, nil
		case l.Suspended && !was.Suspended:
			action = WithdrawBAL
		case !l.Suspended && was.Suspended:
			action = PublishBAL
		case l.Suspended: // nothing is published of a suspended BAL
			out = l
			return nil, s.audit(tx, "bal-listing", addr, "")
		}
		out = l
		if err := s.journal(ctx, tx, action, l); err != nil {
			return nil, err
		}
		return nil, s.audit(tx, "bal-"+string(action), addr, "")
	})
	return out, err
}

func (s *SQLite) journal(ctx context.Context, tx *sql.Tx, a PublicationAction, l *Listing) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO publication(ts,address,action,type,owner,structure,description,liste_rouge) VALUES (?,?,?,?,?,?,?,?)`,
		s.now().UnixMilli(), normAddr(l.Address), string(a), string(l.Type), l.Owner, l.Structure, l.Description, l.ListeRouge)
	if err != nil {
		return fmt.Errorf("mailbox: journal: %w", err)
	}
	return nil
}

// Journal records that a BAL's listing must be published (after AddBAL) or withdrawn (before
// RemoveBAL, while the registry still knows what identified it).
func (s *SQLite) Journal(ctx context.Context, a PublicationAction, address string) error {
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		l, err := s.listingTx(ctx, tx, normAddr(address))
		if err != nil {
			return nil, err
		}
		return nil, s.journal(ctx, tx, a, l)
	})
}

// Pending returns the journal entries no publication run has done yet, oldest first.
func (s *SQLite) Pending(ctx context.Context) ([]Publication, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, ts, action, address, type, owner, structure, description, liste_rouge
		FROM publication WHERE done=0 ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	return readRows(rows, scanPublication)
}

// Done marks journal entries as done by a publication run.
func (s *SQLite) Done(ctx context.Context, ids ...int64) error {
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE publication SET done=? WHERE id=?`, s.now().UnixMilli(), id); err != nil {
				return nil, fmt.Errorf("mailbox: %w", err)
			}
		}
		return nil, nil
	})
}

// Owned reports whether the connector serves or once served address (its journal knows it):
// only such BALs may be withdrawn from the Annuaire Santé.
func (s *SQLite) Owned(ctx context.Context, address string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM bal WHERE address=?1) + (SELECT count(*) FROM publication WHERE address=?1)`,
		normAddr(address)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("mailbox: %w", err)
	}
	return n > 0, nil
}

// Record journals a write a publication run has just done without a journal entry of its own
// (a BAL found missing or stale by a reconciliation), so that the next run, reading an
// extraction older than the write, does not do it again.
func (s *SQLite) Record(ctx context.Context, a PublicationAction, l *Listing) error {
	return s.write(ctx, func(tx *sql.Tx) ([]MailboxID, error) {
		if err := s.journal(ctx, tx, a, l); err != nil {
			return nil, err
		}
		_, err := tx.ExecContext(ctx, `UPDATE publication SET done=ts WHERE id=last_insert_rowid()`)
		return nil, err
	})
}

// DoneSince returns the last action done for each address since t.
func (s *SQLite) DoneSince(ctx context.Context, t time.Time) (map[string]PublicationAction, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT address, action FROM publication WHERE done >= ? AND done > 0 ORDER BY done, id`, t.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	out := map[string]PublicationAction{}
	for rows.Next() {
		var addr, a string
		if err := rows.Scan(&addr, &a); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out[addr] = PublicationAction(a)
	}
	return out, rows.Err()
}
