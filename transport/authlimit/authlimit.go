// Package authlimit brakes password and token guessing on the connector's listeners: IMAP
// LOGIN and AUTHENTICATE PLAIN, XOAUTH2 and OAUTHBEARER (transport/imapd) and SMTP submission
// AUTH with the same mechanisms (transport/connector) go through one [Limiter], so that
// failures on one protocol or mechanism count on the others.
//
// NIST SP 800-63B §5.2.2 asks a verifier to limit the failed attempts on an account (to no
// more than 100) while keeping the account usable by its owner, with delays that grow and
// limits that key on the source rather than on the account alone. Here:
//
//   - a connection is closed after MaxConnFailures failures: the SMTP side answers 421 4.7.0
//     and closes (RFC 5321 §3.8), IMAP sends BYE and closes (RFC 9051 §7.1.5);
//   - failures are counted per (account, source address) and per source address: beyond
//     FreeFailures (FreeAddressFailures for the address) each attempt first waits Delay,
//     doubling with each further failure up to MaxDelay, and beyond LockoutFailures
//     (LockoutAddressFailures) the attempt is refused without checking the password, and the
//     connection closed as above, until Window has passed since the last failure;
//   - beyond AccountFailures failures on one account from all addresses (a distributed
//     guess), an address that has already failed on that account is refused too.
//
// A source address is the IP address, or its /64 for IPv6 (one host holds a whole /64). No
// count ever refuses or delays an address that has no failures: someone else's failures do not
// lock the owner of an account out. Memory is bounded: at most MaxTracked counters, the
// least recently failed dropped first, and counters idle for Window forgotten.
package authlimit

import (
	"container/list"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mssante-go/sdk/transport/audit"
)

// ErrLocked is returned by Conn.Before when the source address may not try now: the caller
// refuses temporarily, without checking the credentials, and closes the connection.
var ErrLocked = errors.New("authlimit: too many failed authentications, try again later")

// ErrTooManyFailures is returned by Conn.Failed when the connection has had its
// MaxConnFailures failures: the caller closes it.
var ErrTooManyFailures = errors.New("authlimit: too many failed authentications on this connection")

// Options configure New. Zero fields take the documented defaults.
type Options struct {
	// MaxConnFailures closes a connection after this many failures (default 3).
	MaxConnFailures int
	// FreeFailures is how many failures on one account from one address are answered at
	// once (default 3); FreeAddressFailures the same for all accounts from one address
	// (default 10, for the users behind one NAT).
	FreeFailures, FreeAddressFailures int
	// Delay is the wait before the first attempt beyond the free failures (default 1 s); it
	// doubles with each further failure, up to MaxDelay (default 30 s).
	Delay, MaxDelay time.Duration
	// LockoutFailures refuses an account to an address after this many failures on it from
	// there (default 10); LockoutAddressFailures refuses an address after this many failures
	// on all accounts (default 50).
	LockoutFailures, LockoutAddressFailures int
	// AccountFailures is the number of failures on one account, from all addresses, beyond
	// which an address that has failed on it is refused (default 100, NIST SP 800-63B §5.2.2).
	AccountFailures int
	// Window forgets a counter this long after its last failure, and so ends a refusal
	// (default 15 min).
	Window time.Duration
	// MaxTracked bounds the counters kept (default 100000, a few MiB).
	MaxTracked int
	// Audit receives an EventAuthFailed record per failure and per refusal (nil: none).
	Audit *audit.Log
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limiter counts failed authentications. It is safe for concurrent use; one Limiter serves
// every listener of a node.
type Limiter struct {
	opts Options
	mu   sync.Mutex
	lru  *list.List // of *entry, most recent failure first
	keys map[string]*list.Element
}

type entry struct {
	key  string
	n    int
	last time.Time
}

// New returns a Limiter.
func New(opts *Options) *Limiter {
	l := &Limiter{lru: list.New(), keys: map[string]*list.Element{}}
	if opts != nil {
		l.opts = *opts
	}
	o := &l.opts
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxConnFailures, 3)
	def(&o.FreeFailures, 3)
	def(&o.FreeAddressFailures, 10)
	def(&o.LockoutFailures, 10)
	def(&o.LockoutAddressFailures, 50)
	def(&o.AccountFailures, 100)
	def(&o.MaxTracked, 100000)
	if o.Delay <= 0 {
		o.Delay = time.Second
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 30 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return l
}

// Conn is the limiter as one connection sees it. Its methods are called from the
// connection's goroutine.
type Conn struct {
	l        *Limiter
	source   string // the listener, for the audit: "imap", "submission"
	peer     string // remote address as given, for the audit
	addr     string // source address key
	failures int
}

// Conn returns the limiter of a connection from remote (host:port or an IP address) on
// source (the listener's name in audit records).
func (l *Limiter) Conn(source, remote string) *Conn {
	return &Conn{l: l, source: source, peer: remote, addr: sourceOf(remote)}
}

// Before is called before checking a password for account, or a token for the account it
// names ("" when it names none: only the address's failures count then). It waits for the delay the past
// failures call for (nil), or returns ErrLocked at once, or ctx's error when ctx ends first.
func (c *Conn) Before(ctx context.Context, account string) error {
	wait, locked := c.l.verdict(normAccount(account), c.addr)
	if locked {
		c.l.audit(c, account, "locked_out")
		return ErrLocked
	}
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Failed records a failed authentication for account. It returns ErrTooManyFailures when the
// connection must be closed.
func (c *Conn) Failed(account string) error {
	c.failures++
	c.l.fail(normAccount(account), c.addr)
	reason := "bad_credentials"
	var err error
	if c.failures >= c.l.opts.MaxConnFailures {
		reason, err = "bad_credentials_disconnect", ErrTooManyFailures
	}
	c.l.audit(c, account, reason)
	return err
}

// Succeeded records a successful authentication for account: its failures from this address,
// and on the account from everywhere, are forgotten (NIST SP 800-63B §5.2.2 counts
// consecutive failures). Those of the address on other accounts stay.
func (c *Conn) Succeeded(account string) {
	a := normAccount(account)
	c.l.mu.Lock()
	c.l.drop(pairKey(a, c.addr))
	c.l.drop(accountKey(a))
	c.l.mu.Unlock()
}

func (l *Limiter) verdict(account, addr string) (wait time.Duration, locked bool) {
	o := &l.opts
	l.mu.Lock()
	defer l.mu.Unlock()
	now := o.Now()
	byAddr, pair, byAcc := l.count(addrKey(addr), now), 0, 0
	if account != "" {
		pair, byAcc = l.count(pairKey(account, addr), now), l.count(accountKey(account), now)
	}
	if pair >= o.LockoutFailures || byAddr >= o.LockoutAddressFailures || pair > 0 && byAcc >= o.AccountFailures {
		return 0, true
	}
	return max(l.delay(pair-o.FreeFailures), l.delay(byAddr-o.FreeAddressFailures)), false
}

// delay is the wait after n failures beyond the free ones.
func (l *Limiter) delay(n int) time.Duration {
	if n < 0 {
		return 0
	}
	d := l.opts.Delay
	for ; n > 0 && d < l.opts.MaxDelay; n-- {
		d *= 2
	}
	return min(d, l.opts.MaxDelay)
}

func (l *Limiter) fail(account, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	l.sweep(now)
	keys := []string{addrKey(addr)}
	if account != "" {
		keys = append(keys, pairKey(account, addr), accountKey(account))
	}
	for _, k := range keys {
		if el, ok := l.keys[k]; ok {
			e := el.Value.(*entry)
			if now.Sub(e.last) >= l.opts.Window {
				e.n = 0
			}
			e.n++
			e.last = now
			l.lru.MoveToFront(el)
			continue
		}
		for l.lru.Len() >= l.opts.MaxTracked {
			l.drop(l.lru.Back().Value.(*entry).key)
		}
		l.keys[k] = l.lru.PushFront(&entry{key: k, n: 1, last: now})
	}
}

// count returns the failures of k within the window. The caller holds l.mu.
func (l *Limiter) count(k string, now time.Time) int {
	el, ok := l.keys[k]
	if !ok {
		return 0
	}
	e := el.Value.(*entry)
	if now.Sub(e.last) >= l.opts.Window {
		return 0
	}
	return e.n
}

// sweep drops the counters idle for the window: the list is ordered by last failure, so they
// are at its back. The caller holds l.mu.
func (l *Limiter) sweep(now time.Time) {
	for el := l.lru.Back(); el != nil; el = l.lru.Back() {
		e := el.Value.(*entry)
		if now.Sub(e.last) < l.opts.Window {
			return
		}
		l.drop(e.key)
	}
}

func (l *Limiter) drop(k string) {
	if el, ok := l.keys[k]; ok {
		l.lru.Remove(el)
		delete(l.keys, k)
	}
}

// Tracked returns the number of counters kept (for tests and metrics).
func (l *Limiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// audit records a failure or refusal. The login is recorded only when it has the form of an
// address (a BAL identifier), never otherwise: a password typed in the login field must not
// reach the log.
func (l *Limiter) audit(c *Conn, account, reason string) {
	if l.opts.Audit == nil {
		return
	}
	r := &audit.Record{Event: audit.EventAuthFailed, Source: c.source, PeerAddr: c.peer, Attempts: c.failures, Reason: reason}
	if looksLikeAddress(account) {
		r.BAL = strings.ToLower(account)
	}
	l.opts.Audit.Log(r)
}

func looksLikeAddress(a string) bool {
	i := strings.LastIndexByte(a, '@')
	return i > 0 && i < len(a)-1 && len(a) <= 254 && !strings.ContainsAny(a, " \t\r\n\"\\")
}

// maxAccountKey bounds the part of a login a key keeps: logins are client input.
const maxAccountKey = 256

func normAccount(a string) string {
	a = strings.ToLower(strings.TrimSpace(a))
	if len(a) > maxAccountKey {
		a = a[:maxAccountKey]
	}
	return a
}

func pairKey(account, addr string) string { return "p\x00" + account + "\x00" + addr }
func addrKey(addr string) string          { return "a\x00" + addr }
func accountKey(account string) string    { return "u\x00" + account }

// sourceOf returns the source address of remote: the IP, or the /64 of an IPv6 address.
func sourceOf(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
