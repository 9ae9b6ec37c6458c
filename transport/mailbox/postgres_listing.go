package mailbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const pgListingCols = `b.address, b.type, b.owner, b.description,
	coalesce(l.structure, ''), coalesce(l.liste_rouge, false), coalesce(l.suspended, false)
	FROM mailbox_bal b LEFT JOIN mailbox_bal_listing l ON l.address = b.address`

func scanListing(row pgx.Row) (*Listing, error) {
	var l Listing
	var typ string
	if err := row.Scan(&l.Address, &typ, &l.Owner, &l.Description, &l.Structure, &l.ListeRouge, &l.Suspended); err != nil {
		return nil, err
	}
	l.Type = Type(typ)
	l.defaultStructure()
	return &l, nil
}

// Listings returns the listing of every BAL, sorted by address (see SQLite.Listings).
func (s *Postgres) Listings(ctx context.Context) ([]Listing, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+pgListingCols+` ORDER BY b.address`)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	var out []Listing
	for rows.Next() {
		l, err := scanListing(rows)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = append(out, *l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// Listing returns the listing of one BAL.
func (s *Postgres) Listing(ctx context.Context, address string) (*Listing, error) {
	return listingPg(ctx, s.pool, pgAddr(address), false)
}

// listingPg reads a listing; lock takes the BAL's row until the transaction ends.
func listingPg(ctx context.Context, q pgQuerier, addr string, lock bool) (*Listing, error) {
	query := `SELECT ` + pgListingCols + ` WHERE b.address = $1`
	if lock {
		query += ` FOR UPDATE OF b`
	}
	l, err := scanListing(q.QueryRow(ctx, query, addr))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoBAL
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return l, nil
}

// ChangeListing applies c to a BAL and journals what must be published (see
// SQLite.ChangeListing).
func (s *Postgres) ChangeListing(ctx context.Context, address string, c ListingChange) (*Listing, error) {
	addr := pgAddr(address)
	var out *Listing
	err := s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		l, err := listingPg(ctx, tx, addr, true)
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
		if _, err := tx.Exec(ctx, `INSERT INTO mailbox_bal_listing (address, structure, liste_rouge, suspended) VALUES ($1, $2, $3, $4)
			ON CONFLICT (address) DO UPDATE SET structure = excluded.structure, liste_rouge = excluded.liste_rouge, suspended = excluded.suspended`,
			addr, l.Structure, l.ListeRouge, l.Suspended); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = l
		action := UpdateBAL
		switch {
		case *l == was:
			return nil, nil
		case l.Suspended && !was.Suspended:
			action = WithdrawBAL
		case !l.Suspended && was.Suspended:
			action = PublishBAL
		case l.Suspended: // nothing is published of a suspended BAL
			return nil, s.audit(ctx, tx, "bal-listing", addr, "")
		}
		if err := s.journal(ctx, tx, action, l); err != nil {
			return nil, err
		}
		return nil, s.audit(ctx, tx, "bal-"+string(action), addr, "")
	})
	return out, err
}

func (s *Postgres) journal(ctx context.Context, tx *pgTx, a PublicationAction, l *Listing) error {
	_, err := tx.Exec(ctx, `INSERT INTO mailbox_publication (ts, address, action, type, owner, structure, description, liste_rouge)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		s.now().UnixMilli(), pgAddr(l.Address), string(a), string(l.Type), l.Owner, l.Structure, l.Description, l.ListeRouge)
	if err != nil {
		return fmt.Errorf("mailbox: journal: %w", err)
	}
	return nil
}

// Journal records that a BAL's listing must be published or withdrawn (see SQLite.Journal).
func (s *Postgres) Journal(ctx context.Context, a PublicationAction, address string) error {
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		l, err := listingPg(ctx, tx, pgAddr(address), false)
		if err != nil {
			return nil, err
		}
		return nil, s.journal(ctx, tx, a, l)
	})
}

// Pending returns the journal entries no publication run has done yet, oldest first.
func (s *Postgres) Pending(ctx context.Context) ([]Publication, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, ts, action, address, type, owner, structure, description, liste_rouge
		FROM mailbox_publication WHERE done = 0 ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	defer rows.Close()
	return readRows(rows, scanPublication)
}

// Done marks journal entries as done by a publication run.
func (s *Postgres) Done(ctx context.Context, ids ...int64) error {
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		if _, err := tx.Exec(ctx, `UPDATE mailbox_publication SET done = $1 WHERE id = ANY($2)`, s.now().UnixMilli(), ids); err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		return nil, nil
	})
}

// Owned reports whether the connector serves or once served address (see SQLite.Owned).
func (s *Postgres) Owned(ctx context.Context, address string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailbox_bal WHERE address = $1)
		OR EXISTS (SELECT 1 FROM mailbox_publication WHERE address = $1)`, pgAddr(address)).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("mailbox: %w", err)
	}
	return ok, nil
}

// Record journals, as done, a write a publication run has just done (see SQLite.Record).
func (s *Postgres) Record(ctx context.Context, a PublicationAction, l *Listing) error {
	return s.write(ctx, func(tx *pgTx) ([]MailboxID, error) {
		_, err := tx.Exec(ctx, `INSERT INTO mailbox_publication (ts, address, action, type, owner, structure, description, liste_rouge, done)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $1)`,
			s.now().UnixMilli(), pgAddr(l.Address), string(a), string(l.Type), l.Owner, l.Structure, l.Description, l.ListeRouge)
		if err != nil {
			return nil, fmt.Errorf("mailbox: journal: %w", err)
		}
		return nil, nil
	})
}

// DoneSince returns the last action done for each address since t.
func (s *Postgres) DoneSince(ctx context.Context, t time.Time) (map[string]PublicationAction, error) {
	rows, err := s.pool.Query(ctx, `SELECT address, action FROM mailbox_publication WHERE done >= $1 AND done > 0 ORDER BY done, id`, t.UnixMilli())
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
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}
