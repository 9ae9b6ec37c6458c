package bal

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// misconfiguredAfter is the number of identical failures in a row after which a reconnecting
// loop calls its endpoint probably misconfigured: a passing outage rarely fails the same way
// three times across growing backoffs, a wrong address or port always does.
const misconfiguredAfter = 3

// failures follows the consecutive failures to reach an endpoint, so that a loop that retries
// until its context ends can say why it never got through.
type failures struct {
	ep    Endpoint
	last  error // the last failure, nil once a connection got through
	count int   // identical failures in a row, last included
}

// fail records err and reports whether it is the one that makes the endpoint look
// misconfigured (reported once, not on every failure after it).
func (f *failures) fail(err error) (misconfigured bool) {
	if f.last != nil && err.Error() == f.last.Error() {
		f.count++
	} else {
		f.count = 1
	}
	f.last = err
	return f.count == misconfiguredAfter
}

// ok records a connection that got through.
func (f *failures) ok() { f.last, f.count = nil, 0 }

// end returns the error of a loop stopped by its context (ctxErr): ctxErr alone when the
// endpoint was reached (and the attempt cut by ctxErr, if any, had got through), else
// ctxErr and the last failure, both for errors.Is.
func (f *failures) end(ctxErr error, gotThrough bool) error {
	switch {
	case f.last == nil && gotThrough:
		return ctxErr
	case f.last == nil:
		return fmt.Errorf("bal: gave up (%w) while connecting to %s", ctxErr, f.ep.Addr)
	case f.count >= misconfiguredAfter:
		return fmt.Errorf("bal: gave up (%w) after %d identical failures to reach %s, probably misconfigured (%s): %w",
			ctxErr, f.count, f.ep.Addr, f.hint(), f.last)
	default:
		return fmt.Errorf("bal: gave up (%w) without reaching %s: %w", ctxErr, f.ep.Addr, f.last)
	}
}

// hint names what to check for the last failure.
func (f *failures) hint() string {
	var dnsErr *net.DNSError
	switch err := f.last; {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: check the address and port"
	case errors.As(err, &dnsErr):
		return "the host name does not resolve: check the address"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "the server does not answer: check the address, the port and the firewall"
	default:
		return "check the address, the port and Security"
	}
}
