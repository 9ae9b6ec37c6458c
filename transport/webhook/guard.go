package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// ErrForbiddenAddress reports an endpoint that is not https, or that resolves to an address
// a production node must not call (loopback, private, link-local, shared, unspecified,
// multicast).
var ErrForbiddenAddress = errors.New("webhook: endpoint address not allowed")

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// forbidden reports whether a is an address no production webhook may reach.
func forbidden(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() || sharedSpace.Contains(a)
}

// CheckURL checks an endpoint URL as New does: absolute, https (http too with allowInsecure),
// no user information, and, in production, not a literal forbidden address. Names are checked
// again at each connection, on the address dialled.
func CheckURL(raw string, allowInsecure bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrForbiddenAddress, err)
	}
	switch {
	case u.Scheme != "https" && !(allowInsecure && u.Scheme == "http"):
		return fmt.Errorf("%w: %q is not https", ErrForbiddenAddress, u.Scheme)
	case u.Host == "" || u.User != nil:
		return fmt.Errorf("%w: an absolute URL without user information is required", ErrForbiddenAddress)
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil && !allowInsecure && forbidden(a) {
		return fmt.Errorf("%w: %s is a loopback, private or reserved address", ErrForbiddenAddress, a)
	}
	return nil
}

// newClient returns the HTTP client of the dispatcher: no proxy, no redirect, a timeout per
// attempt, and, in production, a dialer that refuses forbidden addresses once resolved.
func newClient(timeout time.Duration, allowInsecure bool) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowInsecure {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || forbidden(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
