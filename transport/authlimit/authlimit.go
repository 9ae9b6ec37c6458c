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
//
// The counters are kept in memory by default, for one node. The nodes of a cluster behind
// one load balancer share them in PostgreSQL ([NewPostgres], [Options].Counters), so that a
// guesser spreading attempts over the nodes is braked as on one.
package authlimit

import (
	"container/list"
	"context"
	"errors"
	"fmt"
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

// ErrUnavailable is returned (wrapped) by Conn.Before and Conn.Failed when the failure
// counters cannot be read or written (a shared database that does not answer): the caller
// refuses temporarily and closes the connection, as for ErrLocked. The brake fails closed:
// an attempt whose past failures are unknown is never checked.
var ErrUnavailable = errors.New("authlimit: failure counters unavailable, try again later")

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
	// MaxTracked bounds the counters kept in memory (default 100000, a few MiB).
	MaxTracked int
	// Counters keep the counts (nil: in memory, bounded by MaxTracked); [NewPostgres]
	// shares them between nodes.
	Counters Counters
	// Audit receives an EventAuthFailed record per failure and per refusal (nil: none).
	Audit *audit.Log
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Limiter counts failed authentications. It is safe for concurrent use; one Limiter serves
// every listener of a node.
type Limiter struct {
	opts     Options
	counters Counters
}

// Counters keep the failure counts of a [Limiter] by key (an account, a source address, or
// the pair of both; keys are opaque strings that may hold any byte). They are safe for
// concurrent use. A count is live while its last failure is after the time since that the
// Limiter passes (now minus the Window).
type Counters interface {
	// Get returns the live count of each key (0 for none).
	Get(ctx context.Context, keys []string, since time.Time) ([]int, error)
	// Add counts a failure at now on each key: a count that is not live starts again at one.
	Add(ctx context.Context, keys []string, now, since time.Time) error
	// Delete forgets keys.
	Delete(ctx context.Context, keys []string) error
}

// memory is the default Counters: a map and a list ordered by last failure, bounded.
type memory struct {
	max  int
	mu   sync.Mutex
	lru  *list.List // of *entry, most recent failure first
	keys map[string]*list.Element
}

// New returns a Limiter.
func New(opts *Options) *Limiter {
	l := &Limiter{}
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
	l.counters = o.Counters
	if l.counters == nil {
		l.counters = &memory{max: o.MaxTracked, lru: list.New(), keys: map[string]*list.Element{}}
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
// failures call for (nil), or returns ErrLocked at once, or ctx's error when ctx ends first,
// or an error wrapping ErrUnavailable when the counters cannot be read.
func (c *Conn) Before(ctx context.Context, account string) error {
	wait, locked, err := c.l.verdict(ctx, normAccount(account), c.addr)
	if err != nil {
		if ctx.Err() != nil { // the connection ended, not the counters
			return ctx.Err()
		}
		c.l.audit(c, account, "counters_unavailable")
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
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
// connection must be closed, or an error wrapping ErrUnavailable when the failure could not
// be counted (the connection is closed too: it must not go on guessing uncounted).
func (c *Conn) Failed(account string) error {
	c.failures++
	reason := "bad_credentials"
	var err error
	if c.failures >= c.l.opts.MaxConnFailures {
		reason, err = "bad_credentials_disconnect", ErrTooManyFailures
	}
	if ferr := c.l.fail(normAccount(account), c.addr); ferr != nil {
		reason, err = "bad_credentials_uncounted", fmt.Errorf("%w: %w", ErrUnavailable, ferr)
	}
	c.l.audit(c, account, reason)
	return err
}

// Succeeded records a successful authentication for account: its failures from this address,
// and on the account from everywhere, are forgotten (NIST SP 800-63B §5.2.2 counts
// consecutive failures). Those of the address on other accounts stay.
// Counters that fail to forget leave the failures to expire with the Window.
func (c *Conn) Succeeded(account string) {
	a := normAccount(account)
	c.l.counters.Delete(context.Background(), []string{pairKey(a, c.addr), accountKey(a)})
}

// verdict reads the three counts of an attempt in one call, whether account is known or not,
// so that the time it takes does not depend on the account.
func (l *Limiter) verdict(ctx context.Context, account, addr string) (wait time.Duration, locked bool, err error) {
	o := &l.opts
	keys := []string{addrKey(addr)}
	if account != "" {
		keys = append(keys, pairKey(account, addr), accountKey(account))
	}
	n, err := l.counters.Get(ctx, keys, o.Now().Add(-o.Window))
	if err != nil {
		return 0, false, err
	}
	byAddr, pair, byAcc := n[0], 0, 0
	if account != "" {
		pair, byAcc = n[1], n[2]
	}
	if pair >= o.LockoutFailures || byAddr >= o.LockoutAddressFailures || pair > 0 && byAcc >= o.AccountFailures {
		return 0, true, nil
	}
	return max(l.delay(pair-o.FreeFailures), l.delay(byAddr-o.FreeAddressFailures)), false, nil
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

func (l *Limiter) fail(account, addr string) error {
	keys := []string{addrKey(addr)}
	if account != "" {
		keys = append(keys, pairKey(account, addr), accountKey(account))
	}
	now := l.opts.Now()
	return l.counters.Add(context.Background(), keys, now, now.Add(-l.opts.Window))
}

// Tracked returns the number of counters kept in memory (for tests and metrics; 0 when
// Options.Counters keeps them elsewhere).
func (l *Limiter) Tracked() int {
	m, ok := l.counters.(*memory)
	if !ok {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

type entry struct {
	key  string
	n    int
	last time.Time
}

func (m *memory) Get(_ context.Context, keys []string, since time.Time) ([]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, len(keys))
	for i, k := range keys {
		if el, ok := m.keys[k]; ok {
			if e := el.Value.(*entry); e.last.After(since) {
				out[i] = e.n
			}
		}
	}
	return out, nil
}

func (m *memory) Add(_ context.Context, keys []string, now, since time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(since)
	for _, k := range keys {
		if el, ok := m.keys[k]; ok {
			e := el.Value.(*entry)
			if !e.last.After(since) {
				e.n = 0
			}
			e.n++
			e.last = now
			m.lru.MoveToFront(el)
			continue
		}
		for m.lru.Len() >= m.max {
			m.drop(m.lru.Back().Value.(*entry).key)
		}
		m.keys[k] = m.lru.PushFront(&entry{key: k, n: 1, last: now})
	}
	return nil
}

func (m *memory) Delete(_ context.Context, keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.drop(k)
	}
	return nil
}

// sweep drops the counters not live since: the list is ordered by last failure, so they are
// at its back. The caller holds m.mu.
func (m *memory) sweep(since time.Time) {
	for el := m.lru.Back(); el != nil; el = m.lru.Back() {
		e := el.Value.(*entry)
		if e.last.After(since) {
			return
		}
		m.drop(e.key)
	}
}

func (m *memory) drop(k string) {
	if el, ok := m.keys[k]; ok {
		m.lru.Remove(el)
		delete(m.keys, k)
	}
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
