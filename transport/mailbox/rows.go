package mailbox

import (
	"fmt"
	"time"
)

// rows is what readRows reads: *sql.Rows (SQLite) and pgx.Rows (PostgreSQL) both are, so
// each kind of row is read the same way by either store.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// readRows reads every row with scan.
func readRows[T any](r rows, scan func(rows) (T, error)) ([]T, error) {
	var out []T
	for r.Next() {
		v, err := scan(r)
		if err != nil {
			return nil, fmt.Errorf("mailbox: %w", err)
		}
		out = append(out, v)
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	return out, nil
}

// scanMessage reads an index entry selected as uid, size, internal, flags, modseq.
func scanMessage(r rows) (Message, error) {
	var m Message
	var internal int64
	var flags string
	if err := r.Scan(&m.UID, &m.Size, &internal, &flags, &m.ModSeq); err != nil {
		return m, err
	}
	m.InternalDate = time.UnixMilli(internal)
	m.Flags = splitFlags(flags)
	return m, nil
}

// scanPublication reads a journal entry selected as id, ts, action, address, type, owner,
// structure, description, liste_rouge.
func scanPublication(r rows) (Publication, error) {
	var p Publication
	var ts int64
	var a, typ string
	if err := r.Scan(&p.ID, &ts, &a, &p.Address, &typ, &p.Owner, &p.Structure, &p.Description, &p.ListeRouge); err != nil {
		return p, err
	}
	p.Time, p.Action, p.Type = time.UnixMilli(ts).UTC(), PublicationAction(a), Type(typ)
	return p, nil
}

// scanMember reads a member selected as national_id, added.
func scanMember(r rows) (Member, error) {
	var m Member
	var added int64
	if err := r.Scan(&m.NationalID, &added); err != nil {
		return m, err
	}
	m.Added = time.Unix(added, 0).UTC()
	return m, nil
}
