// Package mailbox is the mailbox store of the reference connector: the BALs (boîtes aux lettres)
// of a structure with their type, owner, quota and retention, their folders with IMAP UIDs and
// flags, and the messages themselves.
//
// [Store] is the full interface, which the IMAP server (transport/imapd) and the CLI use;
// local delivery (transport/mailbox/local) and the test responder (transport/responder)
// declare the few methods they call, which every Store has. Two implementations pass the
// same behaviour tests: [SQLite], opened with [OpenSQLite], an index in SQLite and one
// fsynced file per message on one machine, the default that needs no set-up; and
// [Postgres], opened with [OpenPostgres], everything in one PostgreSQL database that several
// connector nodes share, with the changes of each node signalled to the others.
//
// Specifications (docs/references.md): RFC 3501 / RFC 9051 (UIDVALIDITY, UIDs, flags,
// keywords), RFC 4315 (UIDPLUS: the UIDs returned by APPEND and COPY), RFC 9208 vocabulary
// for quotas; BAL types PER, ORG and APP as the Annuaire Santé names them (TRE_R257-TypeBAL).
//
// Durability: a message is written to a temporary file, fsynced, renamed into place and its
// directory fsynced before the index row that makes it visible is committed (SQLite WAL,
// synchronous=FULL). A crash before the commit leaves an unreferenced file that [OpenSQLite]
// removes; after it, the message is there once. Deliveries carrying a DeliveryID are
// idempotent: a retried delivery of the same ID is recognised and not stored twice. The
// PostgreSQL store commits the message and its row in one transaction: an error returned
// means nothing was stored.
//
// Cost: every change (append, flags, expunge) raises its folder's modification sequence in
// the change's own transaction and stamps the rows it touches with it (HIGHESTMODSEQ and
// MODSEQ in RFC 7162's terms), so a reader asks for what changed since the last value it saw
// ([Store.Changes]) instead of reading the folder again; a folder's counts and UIDs, and a
// BAL's message count, are kept as the changes happen. [Watcher] tells readers when to ask.
//
// Start with [OpenSQLite] (or [OpenPostgres]), then AddBAL; [PurgeEvery] applies the
// retention of each BAL.
package mailbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/whitelist"
)

// Sentinel errors. Errors returned by a Store wrap them; test with errors.Is.
var (
	ErrNoBAL           = errors.New("mailbox: no such BAL")
	ErrBALExists       = errors.New("mailbox: BAL already exists")
	ErrNoMailbox       = errors.New("mailbox: no such mailbox")
	ErrNoMessage       = errors.New("mailbox: no such message")
	ErrMailboxExists   = errors.New("mailbox: mailbox already exists")
	ErrOverQuota       = errors.New("mailbox: quota exceeded")
	ErrTooBig          = errors.New("mailbox: message too big")
	ErrAuthFailed      = errors.New("mailbox: authentication failed")
	ErrInvalid         = errors.New("mailbox: invalid argument")
	ErrClosed          = errors.New("mailbox: store closed")
	ErrCertDNInUse     = errors.New("mailbox: certificate DN already bound to another BAL")
	ErrMailboxReserved = errors.New("mailbox: operation not allowed on INBOX")
)

// Type is the type of a BAL as the Annuaire Santé publishes it (TRE_R257-TypeBAL).
type Type = mssante.BALType

// BAL types a connector hosts. CAB (cabinet) BALs are personal BALs shared by a practice and
// are not hosted here.
const (
	// PER is a personal BAL of a health professional (owner: RPPS/ADELI identifier).
	PER = mssante.BALPersonal
	// ORG is an organisational BAL of a service (owner: the structure's identifier).
	ORG = mssante.BALOrganisational
	// APP is an applicative BAL read by software; it authenticates with a certificate.
	APP = mssante.BALApplicative
)

// ParseType parses a BAL type, case-insensitively: PER, ORG or APP.
func ParseType(s string) (Type, error) {
	switch t := Type(strings.ToUpper(strings.TrimSpace(s))); t {
	case PER, ORG, APP:
		return t, nil
	}
	return "", fmt.Errorf("%w: BAL type %q (want PER, ORG or APP)", ErrInvalid, s)
}

// BAL is one mailbox of the structure: its address and what the registry knows about it.
type BAL struct {
	// Address is the BAL's e-mail address, stored in lower case (the key).
	Address string
	// Type is PER, ORG or APP.
	Type Type
	// Owner identifies who is responsible for the BAL: the RPPS/ADELI identifier of a PER
	// BAL's holder, or the structure identifier (FINESS, SIRET) of an ORG or APP BAL.
	Owner string
	// Description is the functional label of an ORG or APP BAL (for the Annuaire).
	Description string
	// CertDN is, for an APP BAL, the subject DN of the certificate that authenticates it
	// (SASL EXTERNAL), as transport.SubjectDN writes it. DNs compare as the liste blanche's
	// do (whitelist.CanonicalDN: case, spaces around separators and attribute order ignored).
	CertDN string
	// QuotaBytes limits the total size of the BAL's messages; 0 means no limit.
	QuotaBytes int64
	// Retention is how long messages are kept before Purge deletes them; 0 keeps them.
	Retention time.Duration
	// Created is when the BAL was added.
	Created time.Time
	// UsedBytes is the total size of the BAL's messages (read only).
	UsedBytes int64
	// Messages is the number of messages in all folders of the BAL (read only).
	Messages int64
	// Suspended is set by SQLite.ChangeListing (read only here): a suspended BAL keeps its
	// messages and its IMAP access but receives no new mail.
	Suspended bool
}

// Validate checks the fields a caller sets.
func (b *BAL) Validate() error {
	addr := strings.TrimSpace(b.Address)
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || strings.ContainsAny(addr, " \t\r\n<>\"\x00") || len(addr) > 254 || !utf8.ValidString(addr) {
		return fmt.Errorf("%w: BAL address %q", ErrInvalid, b.Address)
	}
	if _, err := ParseType(string(b.Type)); err != nil {
		return err
	}
	if b.Type == APP && strings.TrimSpace(b.CertDN) == "" {
		return fmt.Errorf("%w: an APP BAL needs the certificate DN that authenticates it", ErrInvalid)
	}
	if b.CertDN != "" {
		if _, err := whitelist.CanonicalDN(b.CertDN); err != nil {
			return fmt.Errorf("%w: certificate DN: %v", ErrInvalid, err)
		}
	}
	if b.Type != APP && b.CertDN != "" {
		return fmt.Errorf("%w: only APP BALs authenticate by certificate DN", ErrInvalid)
	}
	for _, f := range []string{b.Owner, b.Description, b.CertDN} {
		if !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 {
			return fmt.Errorf("%w: owner, description and DN are UTF-8 text without NUL", ErrInvalid)
		}
	}
	if b.QuotaBytes < 0 || b.Retention < 0 {
		return fmt.Errorf("%w: negative quota or retention", ErrInvalid)
	}
	return nil
}

// Inbox is the name of the folder every BAL has and local delivery writes to.
const Inbox = "INBOX"

// Delim is the hierarchy delimiter of folder names.
const Delim = '/'

// MailboxID identifies one folder of one BAL inside a Store.
type MailboxID int64

// MailboxInfo describes one folder.
type MailboxInfo struct {
	ID          MailboxID
	BAL         string
	Name        string
	UIDValidity uint32
	UIDNext     uint32
	// ModSeq grows on every change to the folder (append, flags, expunge).
	ModSeq     uint64
	Subscribed bool
	// RecentUID: messages with a greater UID are \Recent (RFC 3501 §2.3.2), not yet claimed
	// by a session.
	RecentUID uint32
	Recent    uint32
	// Counts, filled by Mailbox and ListMailboxes.
	Messages uint32
	Unseen   uint32
	Deleted  uint32
	Size     int64
	// FirstUnseen is the UID of the first message without \Seen, 0 when all are seen.
	FirstUnseen uint32
	// Keywords are the keywords ever stored in the folder (the FLAGS of SELECT), in order of
	// first use.
	Keywords []string
}

// UIDRun is a run of consecutive UIDs of a folder, First to Last included.
type UIDRun struct {
	First, Last uint32
}

// Message is the index entry of one message.
type Message struct {
	UID          uint32
	Size         int64
	InternalDate time.Time
	Flags        []string
	ModSeq       uint64
}

// HasFlag reports whether m carries flag (flags compare case-insensitively).
func (m *Message) HasFlag(flag string) bool {
	for _, f := range m.Flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

// AppendOptions are the optional parameters of Append.
type AppendOptions struct {
	Flags []string
	// Date is the internal date; zero means now.
	Date time.Time
	// DeliveryID makes the append idempotent: a second append with the same ID to the same
	// folder returns the first one's UID with Duplicate set, and stores nothing.
	DeliveryID string
	// MaxSize refuses a message larger than this many bytes; 0 uses the store's limit.
	MaxSize int64
}

// AppendResult is what Append stored.
type AppendResult struct {
	Mailbox     MailboxID
	UID         uint32
	UIDValidity uint32
	Size        int64
	// Duplicate is set when DeliveryID had already been delivered.
	Duplicate bool
}

// FlagOp is how StoreFlags changes flags.
type FlagOp int

// Flag operations.
const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// CopyResult maps the copied source UIDs to their UIDs in the destination.
type CopyResult struct {
	UIDValidity uint32
	SourceUIDs  []uint32
	DestUIDs    []uint32
}

// PurgeResult summarises a retention purge.
type PurgeResult struct {
	Messages int
	Bytes    int64
}

// AuditEntry is one line of the audit log: identifiers only, never content.
type AuditEntry struct {
	Time   time.Time
	Event  string
	BAL    string
	Detail string
}

// Store is the mailbox store. Implementations are safe for concurrent use.
type Store interface {
	// AddBAL registers a BAL and creates its INBOX.
	AddBAL(ctx context.Context, b *BAL) error
	// GetBAL returns a BAL by address (case-insensitive).
	GetBAL(ctx context.Context, address string) (*BAL, error)
	// ListBALs returns every BAL, sorted by address.
	ListBALs(ctx context.Context) ([]*BAL, error)
	// RemoveBAL deletes a BAL with its folders and messages.
	RemoveBAL(ctx context.Context, address string) error
	// BALByCertDN returns the APP BAL bound to a certificate subject DN.
	BALByCertDN(ctx context.Context, dn string) (*BAL, error)
	// SetPassword sets (or with "" clears) the password of a BAL for IMAP PLAIN/LOGIN.
	SetPassword(ctx context.Context, address, password string) error
	// CheckPassword returns nil when password is the BAL's, else ErrAuthFailed.
	CheckPassword(ctx context.Context, address, password string) error

	CreateMailbox(ctx context.Context, bal, name string) error
	DeleteMailbox(ctx context.Context, bal, name string) error
	RenameMailbox(ctx context.Context, bal, oldName, newName string) error
	SetSubscribed(ctx context.Context, bal, name string, subscribed bool) error
	// ListMailboxes returns the folders of a BAL with their counts, sorted by name.
	ListMailboxes(ctx context.Context, bal string) ([]MailboxInfo, error)
	// Mailbox returns one folder with its counts.
	Mailbox(ctx context.Context, bal, name string) (*MailboxInfo, error)
	// ClaimRecent makes the messages that arrived since the last claim \Recent for the caller
	// only: it returns the UID range (from, to] they occupy.
	ClaimRecent(ctx context.Context, mbox MailboxID) (from, to uint32, err error)
	// ModSeq returns the current modification sequence of a folder (cheap).
	ModSeq(ctx context.Context, mbox MailboxID) (uint64, error)
	// Changes returns, read at one instant, what changed in a folder after sinceModSeq: the
	// entries of messages added or whose flags changed, the UIDs expunged (or
	// ExpungedUnknown, for a sinceModSeq older than the store's log of them), and the modseq
	// they bring the caller up to. Its cost depends on the changes, not on the folder.
	Changes(ctx context.Context, mbox MailboxID, sinceModSeq uint64) (*Changes, error)
	// UIDs returns the UIDs of a folder in ascending order (a session's sequence numbers).
	UIDs(ctx context.Context, mbox MailboxID) ([]uint32, error)
	// UIDRuns returns the same UIDs as runs of consecutive UIDs, in ascending order: a folder
	// that expunges seldom is a few runs whatever its size.
	UIDRuns(ctx context.Context, mbox MailboxID) ([]UIDRun, error)

	// Append stores a message durably in a folder; r is read to its end.
	Append(ctx context.Context, bal, mailbox string, r io.Reader, opts *AppendOptions) (*AppendResult, error)
	// Messages returns the index entries of a folder in UID order, only those changed after
	// sinceModSeq when it is not 0.
	Messages(ctx context.Context, mbox MailboxID, sinceModSeq uint64) ([]Message, error)
	// MessagesByUID returns the index entries of the listed messages still present, in UID
	// order.
	MessagesByUID(ctx context.Context, mbox MailboxID, uids []uint32) ([]Message, error)
	// HeadersByUID returns the indexed header blocks of the listed messages (see Headers).
	HeadersByUID(ctx context.Context, mbox MailboxID, uids []uint32) (map[uint32][]byte, error)
	// Headers returns the header blocks (blank line included) of a folder's messages whose
	// UID is above afterUID, for SEARCH and ENVELOPE without opening the files; a message
	// whose header is not indexed (longer than 64 KiB) is absent. Header blocks never change.
	Headers(ctx context.Context, mbox MailboxID, afterUID uint32) (map[uint32][]byte, error)
	// Read opens the listed messages in turn with one index lookup, calling fn with each
	// one's content (valid during fn only); messages expunged meanwhile are skipped. An error
	// from fn stops the walk and is returned.
	Read(ctx context.Context, mbox MailboxID, uids []uint32, fn func(uid uint32, r io.ReaderAt, size int64) error) error
	// Open returns a message's content.
	Open(ctx context.Context, mbox MailboxID, uid uint32) (io.ReadSeekCloser, int64, error)
	// StoreFlags changes the flags of the listed messages and returns their new entries.
	StoreFlags(ctx context.Context, mbox MailboxID, uids []uint32, op FlagOp, flags []string) ([]Message, error)
	// Copy copies messages to another folder of the same BAL.
	Copy(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error)
	// Move moves messages to another folder of the same BAL, atomically.
	Move(ctx context.Context, mbox MailboxID, uids []uint32, dest string) (*CopyResult, error)
	// Expunge deletes the listed messages that carry \Deleted (all of them when uids is nil)
	// and returns the UIDs removed.
	Expunge(ctx context.Context, mbox MailboxID, uids []uint32) ([]uint32, error)

	// Purge deletes the messages older than their BAL's retention, as of now, and writes the
	// result to the audit log.
	Purge(ctx context.Context, now time.Time) (*PurgeResult, error)
	// Audit returns the audit log entries at or after since.
	Audit(ctx context.Context, since time.Time) ([]AuditEntry, error)

	// Watcher signals the changes to a folder, wherever they are made (see Watcher).
	Watcher

	Close() error
}
