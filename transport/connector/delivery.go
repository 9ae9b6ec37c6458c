package connector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/metrics"
	"github.com/mssante-go/sdk/transport/queue"
)

// Resolver looks up MX records; *net.Resolver satisfies it.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
}

// DeliveryOptions configure NewDelivery. Zero fields take the documented defaults.
type DeliveryOptions struct {
	// Hostname is our name in EHLO after STARTTLS (default "localhost").
	Hostname string
	// TLS holds our client certificate (Certificates, required) and the trust store the
	// server certificate is verified with (Trust, required), as transport.ClientConfig uses
	// them: TLS 1.2 minimum, Réf. #2 suites, chain to IGC-Santé, revocation, host name of the
	// MX.
	TLS *transport.TLSOptions
	// GetClientCertificate, when set, supplies our client certificate instead of
	// TLS.Certificates (hot swap of a renewed certificate).
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Policy is the liste blanche (required): the recipient domain must be listed and the
	// server certificate DN listed for it.
	Policy Policy
	// LocalDomains and Local deliver our own recipients without a network hop (Local is
	// required when LocalDomains is not empty).
	LocalDomains []string
	Local        LocalDelivery
	// Routes maps a domain to "host:port", bypassing the MX lookup (static routing).
	Routes map[string]string
	// Resolver finds MX hosts (default net.DefaultResolver); Port is the SMTP port of MX hosts
	// (default 25).
	Resolver Resolver
	Port     int
	// Dial opens TCP connections (default net.Dialer.DialContext).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxPerDestination bounds simultaneous transactions per recipient domain (default 10).
	MaxPerDestination int
	// Connections are kept per host and reused for the next messages to it (RSET before
	// each reuse). IdleTimeout closes pooled connections unused for this long (default 30 s);
	// MaxMessagesPerConn sends at most this many messages on one connection (default 100).
	IdleTimeout        time.Duration
	MaxMessagesPerConn int
	// ConnectTimeout bounds dial and STARTTLS (default 30 s); CommandTimeout each command
	// (default 5 min).
	ConnectTimeout, CommandTimeout time.Duration
	// Audit, Metrics, Logger: optional.
	Audit   *audit.Log
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Delivery is the queue.Deliverer of the connector. It is safe for concurrent use.
type Delivery struct {
	opts   DeliveryOptions
	local  map[string]bool
	logger *slog.Logger

	// routes, once SetRoutes is called, replaces opts.Routes.
	routes atomic.Pointer[map[string]string]

	mu    sync.Mutex
	sems  map[string]chan struct{}
	idle  map[string][]*pooled // by host:port
	close chan struct{}
}

type pooled struct {
	c    *smtp.Client
	dn   string
	tls  string
	host string
	sent int
	last time.Time
}

// NewDelivery checks opts and returns a Delivery.
func NewDelivery(opts *DeliveryOptions) (*Delivery, error) {
	if opts == nil || opts.TLS == nil || opts.TLS.Trust == nil || len(opts.TLS.Certificates) == 0 && opts.GetClientCertificate == nil || opts.Policy == nil {
		return nil, errors.New("connector: TLS (Trust and Certificates) and Policy are required")
	}
	if len(opts.LocalDomains) > 0 && opts.Local == nil {
		return nil, errors.New("connector: Local is required with LocalDomains")
	}
	d := &Delivery{opts: *opts, local: map[string]bool{}, sems: map[string]chan struct{}{},
		idle: map[string][]*pooled{}, close: make(chan struct{})}
	o := &d.opts
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Port == 0 {
		o.Port = 25
	}
	if o.Dial == nil {
		var nd net.Dialer
		o.Dial = nd.DialContext
	}
	if o.MaxPerDestination <= 0 {
		o.MaxPerDestination = 10
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.MaxMessagesPerConn <= 0 {
		o.MaxMessagesPerConn = 100
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 30 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if _, err := transport.ClientConfig(nil, "check.invalid", o.TLS); err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	d.logger = o.Logger
	if d.logger == nil {
		d.logger = slog.New(slog.DiscardHandler)
	}
	for _, x := range o.LocalDomains {
		d.local[strings.ToLower(x)] = true
	}
	go d.reaper()
	return d, nil
}

// SetRoutes replaces the static routes of DeliveryOptions.Routes while deliveries run, so that
// an operator can change a route without a restart. Deliveries already connected finish on
// their connection; the next ones follow the new routes.
func (d *Delivery) SetRoutes(routes map[string]string) {
	r := maps.Clone(routes)
	d.routes.Store(&r)
}

// Close closes the pooled connections.
func (d *Delivery) Close() error {
	d.mu.Lock()
	select {
	case <-d.close:
	default:
		close(d.close)
	}
	idle := d.idle
	d.idle = map[string][]*pooled{}
	d.mu.Unlock()
	for _, ps := range idle {
		for _, p := range ps {
			p.c.Quit()
		}
	}
	return nil
}

func (d *Delivery) reaper() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.close:
			return
		case <-t.C:
		}
		var old []*pooled
		d.mu.Lock()
		for k, ps := range d.idle {
			keep := ps[:0]
			for _, p := range ps {
				if time.Since(p.last) > d.opts.IdleTimeout {
					old = append(old, p)
				} else {
					keep = append(keep, p)
				}
			}
			if len(keep) == 0 {
				delete(d.idle, k)
			} else {
				d.idle[k] = keep
			}
		}
		d.mu.Unlock()
		for _, p := range old {
			p.c.Quit()
		}
	}
}

func temp(status string, err error) queue.Result {
	return queue.Result{Err: err, Status: status}
}

func perm(status string, err error) queue.Result {
	return queue.Result{Err: err, Permanent: true, Status: status}
}

// Deliver implements queue.Deliverer.
func (d *Delivery) Deliver(ctx context.Context, job *queue.Job) []queue.Result {
	results := make([]queue.Result, len(job.Rcpts))
	byDomain := map[string][]int{}
	var domains []string
	for i, r := range job.Rcpts {
		dom := domainOf(r.Addr)
		if dom == "" {
			results[i] = perm("553 5.1.3 bad recipient address", errors.New("connector: bad address"))
			continue
		}
		if _, ok := byDomain[dom]; !ok {
			domains = append(domains, dom)
		}
		byDomain[dom] = append(byDomain[dom], i)
	}
	var wg sync.WaitGroup
	for _, dom := range domains {
		idx := byDomain[dom]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rs []queue.Result
			if d.local[dom] {
				rs = d.deliverLocal(ctx, job, idx)
			} else {
				rs = d.deliverRemote(ctx, job, dom, idx)
			}
			for k, i := range idx {
				results[i] = rs[k]
			}
		}()
	}
	wg.Wait()
	for i, r := range job.Rcpts {
		d.record(job, r, results[i])
	}
	return results
}

func (d *Delivery) record(job *queue.Job, r *queue.Recipient, res queue.Result) {
	ev, outcome := audit.EventDelivered, "delivered"
	switch {
	case res.Err != nil && res.Permanent:
		ev, outcome = audit.EventBounced, "bounced"
	case res.Err != nil:
		ev, outcome = audit.EventDeferred, "deferred"
	}
	code, reason := res.Status, ""
	if len(code) > 9 {
		code, reason = code[:9], strings.TrimSpace(code[9:])
	}
	if d.opts.Audit != nil {
		d.opts.Audit.Log(&audit.Record{Event: ev, Source: "delivery", MsgID: job.Env.ID, From: job.Env.From, Rcpts: []string{r.Addr},
			Attempts: r.Attempts + 1, RemoteMTA: res.RemoteMTA, Code: code, Reason: reason})
	}
	d.opts.Metrics.Recipient(outcome, d.opts.Now().Sub(job.Env.Received))
}

func (d *Delivery) deliverLocal(ctx context.Context, job *queue.Job, idx []int) []queue.Result {
	rs := make([]queue.Result, len(idx))
	for k, i := range idx {
		r := job.Rcpts[i]
		f, err := job.Open()
		if err != nil {
			rs[k] = temp("451 4.3.0 spool unreadable", err)
			continue
		}
		// RFC 5321 §4.4: final delivery records the envelope sender, which automatic replies
		// and bounces use (RFC 3834 §4), in a Return-Path line at the top of the message.
		rp := strings.NewReader("Return-Path: <" + job.Env.From + ">\r\n")
		err = d.opts.Local.Deliver(ctx, r.Addr, job.Env.ID+"/"+strings.ToLower(r.Addr), io.MultiReader(rp, f))
		f.Close()
		switch {
		case err == nil:
			rs[k] = queue.Result{Status: "250 2.0.0 delivered to mailbox"}
		case errors.Is(err, ErrNoMailbox):
			rs[k] = perm("550 5.1.1 mailbox unavailable", err)
		case errors.Is(err, ErrMailboxDisabled):
			rs[k] = perm("550 5.2.1 mailbox disabled, not accepting messages", err)
		default:
			rs[k] = temp("451 4.3.0 mailbox temporarily unavailable", err)
		}
	}
	return rs
}

func (d *Delivery) acquire(ctx context.Context, dom string) (func(), error) {
	d.mu.Lock()
	sem := d.sems[dom]
	if sem == nil {
		sem = make(chan struct{}, d.opts.MaxPerDestination)
		d.sems[dom] = sem
	}
	d.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hosts returns the "host:port" to try for dom, in order.
func (d *Delivery) hosts(ctx context.Context, dom string) ([]string, *queue.Result) {
	routes := d.opts.Routes
	if p := d.routes.Load(); p != nil {
		routes = *p
	}
	if r, ok := routes[dom]; ok {
		return []string{r}, nil
	}
	mxs, err := d.opts.Resolver.LookupMX(ctx, dom)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			r := perm("550 5.1.2 recipient domain has no mail server", err)
			return nil, &r
		}
		r := temp("451 4.4.3 MX lookup failed", err)
		r.Unreachable = true
		return nil, &r
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	var out []string
	for _, mx := range mxs {
		h := strings.TrimSuffix(mx.Host, ".")
		if h == "" { // null MX, RFC 7505
			r := perm("556 5.1.10 recipient domain does not accept mail", errors.New("connector: null MX"))
			return nil, &r
		}
		out = append(out, net.JoinHostPort(h, strconv.Itoa(d.opts.Port)))
	}
	if len(out) == 0 { // RFC 5321 §5.1: the domain itself
		out = []string{net.JoinHostPort(dom, strconv.Itoa(d.opts.Port))}
	}
	return out, nil
}

func (d *Delivery) deliverRemote(ctx context.Context, job *queue.Job, dom string, idx []int) []queue.Result {
	all := func(r queue.Result) []queue.Result {
		rs := make([]queue.Result, len(idx))
		for k := range rs {
			rs[k] = r
		}
		return rs
	}
	if err := d.opts.Policy.CheckDomain(dom); err != nil {
		if errors.Is(err, errDomainNotListed) {
			return all(perm("550 5.7.1 recipient domain not in the MSSante trust list", err))
		}
		return all(temp("451 4.7.1 trust list unavailable", err))
	}
	release, err := d.acquire(ctx, dom)
	if err != nil {
		return all(temp("451 4.4.1 shutting down", err))
	}
	defer release()
	hosts, fail := d.hosts(ctx, dom)
	if fail != nil {
		return all(*fail)
	}
	// No session with any host: the queue counts it toward suspending the destination.
	last := temp("451 4.4.1 no answer from the recipient's servers", errors.New("connector: no host"))
	last.Unreachable = true
	for _, h := range hosts {
		p, err := d.conn(ctx, h, dom)
		if err != nil {
			d.logger.Info("connector: delivery connection failed", "host", h, "err", err)
			last = temp("451 4.4.1 "+connFailText(err), err)
			last.RemoteMTA, last.Unreachable = hostOnly(h), true
			continue
		}
		rs, reusable := d.transaction(job, p, idx)
		if reusable {
			d.put(h, p)
		} else {
			p.c.Close()
		}
		return rs
	}
	return all(last)
}

func hostOnly(hp string) string {
	h, _, err := net.SplitHostPort(hp)
	if err != nil {
		return hp
	}
	return h
}

// connFailText is the generic text of a failed connection, for the DSN.
func connFailText(err error) string {
	var ce *certDNError
	switch {
	case errors.As(err, &ce):
		return "server certificate not listed for the recipient domain"
	case errors.Is(err, transport.ErrRevoked):
		return "server certificate revoked (CRL of its CA)"
	case errors.Is(err, transport.ErrNoValidCRL):
		return "no valid CRL for the server certificate's CA"
	case strings.Contains(err.Error(), "STARTTLS"):
		return "server does not offer STARTTLS"
	case isTLSError(err):
		return "TLS handshake with the recipient's server failed"
	}
	return "connection to the recipient's server failed"
}

func isTLSError(err error) bool {
	var ce *transport.CertError
	var cv *tls.CertificateVerificationError
	var ae tls.AlertError
	var re tls.RecordHeaderError
	return errors.As(err, &ce) || errors.As(err, &cv) || errors.As(err, &ae) || errors.As(err, &re) ||
		strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:")
}

type certDNError struct{ dn, domain string }

func (e *certDNError) Error() string {
	return fmt.Sprintf("connector: server certificate %q not listed for %s", e.dn, e.domain)
}

// conn returns a pooled or new connection to host whose server DN is listed for dom.
func (d *Delivery) conn(ctx context.Context, host, dom string) (*pooled, error) {
	d.mu.Lock()
	ps := d.idle[host]
	var p *pooled
	if n := len(ps); n > 0 {
		p, d.idle[host] = ps[n-1], ps[:n-1]
	}
	d.mu.Unlock()
	if p != nil {
		if err := d.opts.Policy.CheckOperator(dom, p.dn); err != nil {
			d.put(host, p)
			return nil, &certDNError{p.dn, dom}
		}
		// RSET both resets the session and checks that the server still answers.
		if err := p.c.Reset(); err == nil {
			return p, nil
		}
		p.c.Close()
	}
	return d.dial(ctx, host, dom)
}

func (d *Delivery) put(host string, p *pooled) {
	if p.sent >= d.opts.MaxMessagesPerConn {
		p.c.Quit()
		return
	}
	p.last = time.Now()
	d.mu.Lock()
	select {
	case <-d.close:
		d.mu.Unlock()
		p.c.Close()
		return
	default:
	}
	d.idle[host] = append(d.idle[host], p)
	d.mu.Unlock()
}

func (d *Delivery) dial(ctx context.Context, hostport, dom string) (*pooled, error) {
	cctx, cancel := context.WithTimeout(ctx, d.opts.ConnectTimeout)
	defer cancel()
	raw, err := d.opts.Dial(cctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(cctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	host := hostOnly(hostport)
	tc, err := transport.ClientConfig(&tls.Config{GetClientCertificate: d.opts.GetClientCertificate}, host, d.opts.TLS)
	if err != nil {
		raw.Close()
		return nil, err
	}
	// STARTTLS is mandatory: NewClientStartTLS fails when it is not offered (no downgrade).
	c, err := smtp.NewClientStartTLS(raw, tc)
	if err == nil {
		c.CommandTimeout = d.opts.ConnectTimeout
		err = c.Hello(d.opts.Hostname) // the TLS handshake runs here
	}
	if !stop() {
		err = errors.Join(err, cctx.Err())
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	st, ok := c.TLSConnectionState()
	if !ok || !st.HandshakeComplete || len(st.PeerCertificates) == 0 {
		c.Close()
		return nil, errors.New("connector: no TLS after STARTTLS")
	}
	dn, err := transport.PeerDN(st)
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := d.opts.Policy.CheckOperator(dom, dn); err != nil {
		c.Quit()
		return nil, &certDNError{dn, dom}
	}
	c.CommandTimeout = d.opts.CommandTimeout
	return &pooled{c: c, dn: dn, tls: tls.VersionName(st.Version), host: host}, nil
}

// transaction sends the message to the recipients idx; it reports whether the connection can
// be used again.
func (d *Delivery) transaction(job *queue.Job, p *pooled, idx []int) ([]queue.Result, bool) {
	rs := make([]queue.Result, len(idx))
	smtpResult := func(err error) queue.Result {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			st := fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], firstLine(se.Message))
			return queue.Result{Err: err, Permanent: se.Code >= 500, Status: st, RemoteMTA: p.host}
		}
		return queue.Result{Err: err, Status: "451 4.4.2 connection lost", RemoteMTA: p.host}
	}
	fail := func(err error) ([]queue.Result, bool) {
		r := smtpResult(err)
		for k := range rs {
			rs[k] = r
		}
		var se *smtp.SMTPError
		return rs, errors.As(err, &se) && p.c.Reset() == nil
	}
	env := job.Env
	mo := &smtp.MailOptions{Return: smtp.DSNReturn(env.Ret), EnvelopeID: env.EnvID, Size: env.Size}
	if err := p.c.Mail(env.From, mo); err != nil {
		return fail(err)
	}
	var accepted []int
	for k, i := range idx {
		r := job.Rcpts[i]
		ro := &smtp.RcptOptions{}
		for _, n := range r.Notify {
			ro.Notify = append(ro.Notify, smtp.DSNNotify(n))
		}
		if t, a, ok := strings.Cut(r.ORCPT, ";"); ok {
			ro.OriginalRecipientType, ro.OriginalRecipient = smtp.DSNAddressType(t), a
		}
		if err := p.c.Rcpt(r.Addr, ro); err != nil {
			rs[k] = smtpResult(err)
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return fail(err)
			}
			continue
		}
		accepted = append(accepted, k)
	}
	if len(accepted) == 0 {
		return rs, p.c.Reset() == nil
	}
	f, err := job.Open()
	if err != nil {
		p.c.Reset()
		for _, k := range accepted {
			rs[k] = temp("451 4.3.0 spool unreadable", err)
		}
		return rs, false
	}
	defer f.Close()
	w, err := p.c.Data()
	if err == nil {
		_, err = io.Copy(w, f)
		var resp *smtp.DataResponse
		if err == nil {
			resp, err = w.CloseWithResponse()
		} else {
			w.Close()
		}
		if err == nil {
			p.sent++
			st := "250 2.0.0 " + firstLine(resp.StatusText)
			dsn, _ := p.c.Extension("DSN")
			for _, k := range accepted {
				rs[k] = queue.Result{Status: st, RemoteMTA: p.host, Forwarded: dsn, Relayed: !dsn}
			}
			return rs, true
		}
	}
	r := smtpResult(err)
	for _, k := range accepted {
		rs[k] = r
	}
	var se *smtp.SMTPError
	return rs, errors.As(err, &se) && p.c.Reset() == nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
