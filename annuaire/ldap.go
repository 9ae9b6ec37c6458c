package annuaire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAPOptions configure [NewLDAP].
type LDAPOptions struct {
	// URL is ldap://host[:port] or ldaps://host[:port].
	URL string
	// StartTLS upgrades an ldap:// connection with StartTLS before binding.
	StartTLS bool
	// TLSConfig is used as given for ldaps:// and StartTLS (nil = system roots, TLS 1.2
	// minimum, server name from the URL). Put the client certificate here for SASL EXTERNAL.
	TLSConfig *tls.Config
	// BindDN and Password make a simple bind; none of them, an anonymous directory.
	BindDN, Password string
	// ExternalBind binds with SASL EXTERNAL: the identity is the TLS client certificate.
	ExternalBind bool
	// Profile maps the directory's attributes (nil = DefaultProfile()).
	Profile *Profile
	// PageSize is the size of the pages of the paged search (RFC 2696; 0 = 500).
	PageSize int
	// MaxResults bounds the entries one search may fetch, since results are sorted before
	// they are paged (0 = 20000); a query that matches more fails with ErrTooManyResults.
	MaxResults int
	// Timeout bounds dialling and each request (0 = 30 s).
	Timeout time.Duration
	// Logger receives connection events, never query values (nil = discard).
	Logger *slog.Logger
}

// LDAP is a [Directory] over an LDAP server. It keeps one connection and reuses it; it is
// safe for concurrent use (searches are serialised on the connection).
type LDAP struct {
	opts    LDAPOptions
	profile *Profile
	log     *slog.Logger

	mu   sync.Mutex
	conn *ldap.Conn
}

// NewLDAP checks opts (copied: later changes have no effect) and returns a directory; the
// connection is made by the first search.
func NewLDAP(o *LDAPOptions) (*LDAP, error) {
	if o == nil {
		return nil, fmt.Errorf("annuaire: LDAP options with a URL are required")
	}
	opts := *o
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, fmt.Errorf("annuaire: LDAP URL must be ldap://host or ldaps://host")
	}
	if opts.StartTLS && u.Scheme == "ldaps" {
		return nil, fmt.Errorf("annuaire: StartTLS is for ldap:// URLs")
	}
	if opts.ExternalBind && u.Scheme == "ldap" && !opts.StartTLS {
		return nil, fmt.Errorf("annuaire: SASL EXTERNAL needs TLS (ldaps:// or StartTLS)")
	}
	if opts.Password != "" && u.Scheme == "ldap" && !opts.StartTLS && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("annuaire: refusing to send a password without TLS")
	}
	l := &LDAP{opts: opts, profile: opts.Profile, log: opts.Logger}
	if l.profile == nil {
		l.profile = DefaultProfile()
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.opts.PageSize <= 0 {
		l.opts.PageSize = 500
	}
	if l.opts.MaxResults <= 0 {
		l.opts.MaxResults = 20000
	}
	if l.opts.Timeout <= 0 {
		l.opts.Timeout = 30 * time.Second
	}
	return l, nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Close closes the connection.
func (l *LDAP) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		err := l.conn.Close()
		l.conn = nil
		return err
	}
	return nil
}

func (l *LDAP) tlsConfig(host string) *tls.Config {
	var c *tls.Config
	if l.opts.TLSConfig != nil {
		c = l.opts.TLSConfig.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// connect dials, secures and binds a new connection.
func (l *LDAP) connect(ctx context.Context) (*ldap.Conn, error) {
	u, _ := url.Parse(l.opts.URL)
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"ldap": "389", "ldaps": "636"}[u.Scheme])
	}
	d := &net.Dialer{Timeout: l.opts.Timeout}
	raw, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("annuaire: LDAP: %w", err)
	}
	isTLS := u.Scheme == "ldaps"
	if isTLS {
		tc := tls.Client(raw, l.tlsConfig(u.Hostname()))
		hctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("annuaire: LDAP TLS: %w", err)
		}
		raw = tc
	}
	c := ldap.NewConn(raw, isTLS)
	c.SetTimeout(l.opts.Timeout)
	c.Start()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	fail := func(what string, err error) (*ldap.Conn, error) {
		c.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("annuaire: LDAP %s: %w", what, ctx.Err())
		}
		return nil, fmt.Errorf("annuaire: LDAP %s: %w", what, err)
	}
	if l.opts.StartTLS {
		if err := c.StartTLS(l.tlsConfig(u.Hostname())); err != nil {
			return fail("StartTLS", err)
		}
	}
	switch {
	case l.opts.ExternalBind:
		if err := c.ExternalBind(); err != nil {
			return fail("SASL EXTERNAL bind", err)
		}
	case l.opts.BindDN != "" || l.opts.Password != "":
		if err := c.Bind(l.opts.BindDN, l.opts.Password); err != nil {
			return fail("bind", err)
		}
	}
	l.log.Debug("annuaire: LDAP connected", "server", u.Host, "tls", isTLS || l.opts.StartTLS)
	return c, nil
}

// Search implements [Directory]: it builds an escaped filter from q, fetches every matching
// entry with a paged search (at most MaxLimit past the cursor), sorts them as [Result] says
// and returns the requested page. Cancelling ctx closes the connection.
func (l *LDAP) Search(ctx context.Context, q Query) (*Result, error) {
	offset, err := q.checkOffset()
	if err != nil {
		return nil, err
	}
	filter, ok := l.filter(&q)
	if !ok {
		return &Result{}, nil
	}
	entries, err := l.search(ctx, filter, l.opts.MaxResults)
	if err != nil {
		return nil, err
	}
	var all []Entry
	for _, le := range entries {
		e := l.entry(le)
		if q.matches(&e, NameKey(&e)) { // the directory's matching rules may be looser
			all = append(all, e)
		}
	}
	sortEntries(all, q.Name != "")
	return page(all, offset, q.limit()), nil
}

// ErrTooManyResults reports a query that matches more entries than LDAPOptions.MaxResults.
var ErrTooManyResults = errors.New("annuaire: too many results: refine the query")

// search runs a paged search and returns its entries, failing beyond max. A reused
// connection that turns out to be broken (the server closed it while idle) is replaced and
// the search made once more: searches are read-only.
func (l *LDAP) search(ctx context.Context, filter string, max int) ([]*ldap.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fresh := false
		if l.conn == nil || l.conn.IsClosing() {
			c, err := l.connect(ctx)
			if err != nil {
				return nil, err
			}
			l.conn, fresh = c, true
		}
		c := l.conn
		out, err := l.searchOn(ctx, c, filter, max)
		broken := c.IsClosing() || ldap.IsErrorWithCode(err, ldap.ErrorNetwork)
		if err == nil || fresh || attempt > 0 || ctx.Err() != nil || !broken {
			return out, err
		}
		l.log.Debug("annuaire: LDAP connection lost, reconnecting")
		c.Close()
		l.conn = nil
	}
}

func (l *LDAP) searchOn(ctx context.Context, c *ldap.Conn, filter string, max int) ([]*ldap.Entry, error) {
	attrs := []string{}
	for _, a := range append(l.profile.Columns[:], l.profile.Description) {
		if a != "" {
			attrs = append(attrs, a)
		}
	}
	paging := ldap.NewControlPaging(uint32(l.opts.PageSize))
	req := ldap.NewSearchRequest(l.profile.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, int(l.opts.Timeout/time.Second), false, filter, attrs, []ldap.Control{paging})
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var out []*ldap.Entry
	for {
		res, err := c.Search(req)
		if ctx.Err() != nil {
			l.conn = nil
			return nil, fmt.Errorf("annuaire: LDAP search: %w", ctx.Err())
		}
		if err != nil {
			if c.IsClosing() {
				l.conn = nil
			}
			return nil, fmt.Errorf("annuaire: LDAP search: %w", err)
		}
		out = append(out, res.Entries...)
		if len(out) > max {
			l.abandonPaging(c, req, paging)
			return nil, ErrTooManyResults
		}
		ctrl, _ := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if ctrl == nil || len(ctrl.Cookie) == 0 {
			return out, nil
		}
		paging.SetCookie(ctrl.Cookie)
	}
}

// abandonPaging tells the server that the paged search will not be continued (RFC 2696 §3:
// a page size of 0 with the cookie).
func (l *LDAP) abandonPaging(c *ldap.Conn, req *ldap.SearchRequest, paging *ldap.ControlPaging) {
	paging.PagingSize = 0
	if _, err := c.Search(req); err != nil {
		l.log.Debug("annuaire: LDAP: ending a paged search", "err", err)
	}
}

// entry turns an LDAP entry into an Entry through the profile.
func (l *LDAP) entry(le *ldap.Entry) Entry {
	var f Fields
	for c, a := range l.profile.Columns {
		if a != "" {
			f[c] = le.GetAttributeValue(a)
		}
	}
	e := f.Entry()
	if l.profile.Description != "" {
		e.Description = le.GetAttributeValue(l.profile.Description)
	}
	return e
}

// filter builds the LDAP filter of q; ok is false when q can match nothing. Every value is
// escaped (RFC 4515): no query value can change the filter's structure.
func (l *LDAP) filter(q *Query) (string, bool) {
	p := l.profile
	var b strings.Builder
	b.WriteString("(&")
	if p.ObjectClass != "" {
		eq(&b, "objectClass", p.ObjectClass)
	}
	col := func(c Column, v string) {
		if v != "" && p.Columns[c] != "" {
			eq(&b, p.Columns[c], v)
		}
	}
	col(ColAddress, q.Address)
	col(ColType, string(q.Type))
	id, ok := q.nationalID()
	if !ok {
		return "", false
	}
	if id != "" {
		if p.Columns[ColNationalID] != "" {
			eq(&b, p.Columns[ColNationalID], id)
		} else if len(id) > 1 {
			eq(&b, p.Columns[ColPPID], id[1:])
		}
	}
	if q.StructureID != "" && p.Columns[ColStructureID] != "" {
		b.WriteString("(|")
		eq(&b, p.Columns[ColStructureID], q.StructureID)
		for _, t := range structureIDTypes {
			eq(&b, p.Columns[ColStructureID], t[0]+q.StructureID)
		}
		b.WriteString(")")
	}
	col(ColStructureIDType, q.StructureIDType)
	col(ColPostalCode, q.PostalCode)
	col(ColDepartement, q.Departement)
	col(ColProfessionCode, q.Profession)
	if q.Name != "" {
		key := ldap.EscapeFilter(q.nameKey)
		if p.NameKey != "" {
			fmt.Fprintf(&b, "(%s=%s*)", p.NameKey, key)
		} else {
			name := ldap.EscapeFilter(strings.TrimSpace(q.Name))
			fmt.Fprintf(&b, "(|(%s=%s*)(%s=%s*))", p.Columns[ColLastName], name, p.Columns[ColStructureName], name)
		}
	}
	b.WriteString(")")
	if b.Len() == 3 { // "(&)": match everything
		return "(objectClass=*)", true
	}
	return b.String(), true
}

func eq(b *strings.Builder, attr, value string) {
	fmt.Fprintf(b, "(%s=%s)", attr, ldap.EscapeFilter(value))
}
