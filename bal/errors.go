package bal

import (
	"errors"
	"fmt"

	"github.com/mssante-go/sdk/mssante"
)

// Errors returned by the client, to test with errors.Is.
var (
	// ErrConfig reports invalid Options.
	ErrConfig = errors.New("bal: invalid configuration")
	// ErrDiscovery reports that DNS SRV discovery found no endpoint.
	ErrDiscovery = errors.New("bal: endpoint discovery failed")
	// ErrTLS reports a TLS failure: the server's certificate was not trusted, the server
	// does not offer STARTTLS, or the endpoint's Security does not fit its port (the
	// message says which Security or port to use).
	ErrTLS = errors.New("bal: TLS failed")
	// ErrAuth reports that the server refused the authentication or lacks the mechanism.
	ErrAuth = errors.New("bal: authentication failed")
	// ErrNotWhitelisted reports a recipient whose domain is not in the liste blanche: the
	// message was not sent to anyone.
	ErrNotWhitelisted = errors.New("bal: recipient domain not in the whitelist")
	// ErrNoDSN reports a submission server that does not advertise the DSN extension while
	// receipts were asked for (go-smtp would silently drop NOTIFY, RET and ENVID).
	ErrNoDSN = errors.New("bal: server does not support DSN (RFC 3461)")
	// ErrStateInUse reports that another Client, in this process or another, holds
	// Options.StateDir; the message names the holder's PID. One Client per state folder.
	ErrStateInUse = errors.New("bal: state folder in use")
	// ErrLeave, returned by a Handler, leaves the message untouched in the mailbox (no
	// answer, no flag, no move) for another watcher of the BAL, one that integrates
	// messages; this watcher does not hand it again.
	ErrLeave = errors.New("bal: message left for another watcher")
	// ErrMessage reports a message the client cannot send (no Message-ID possible, no
	// recipient, header unreadable, too large).
	ErrMessage = errors.New("bal: invalid message")
	// ErrAllRejected reports that no recipient was accepted: see the per-recipient results.
	ErrAllRejected = errors.New("bal: every recipient was refused")
)

// RejectError is returned by a Handler to refuse a received message with one of the MSSanté
// integration error codes (900–906, CI-SIS Trans-CDA-MSS). The sender gets an MDN
// "processed/Error: <code>^<label>" when it asked for one, else the error mail.
type RejectError struct {
	Code mssante.MDNCode
}

func (e *RejectError) Error() string { return fmt.Sprintf("bal: message rejected: %s", e.Code) }

// Reject returns a RejectError with code (900–906).
func Reject(code mssante.MDNCode) *RejectError { return &RejectError{Code: code} }
