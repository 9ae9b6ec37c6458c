package connector

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/antivirus"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/metrics"
	"github.com/mssante-go/sdk/transport/psc"
	"github.com/mssante-go/sdk/transport/queue"
)

// Mode selects what a Server accepts.
type Mode int

const (
	// ModeRelay accepts mail from other MSSanté operators for our domains.
	ModeRelay Mode = iota
	// ModeSubmission accepts mail from our authenticated BALs for any listed domain.
	ModeSubmission
)

func (m Mode) String() string {
	if m == ModeSubmission {
		return "submission"
	}
	return "relay"
}

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("connector: server closed")

// Policy is the liste blanche as the connector enforces it; *whitelist.List satisfies it.
// CheckDomain fails with an error wrapping whitelist.ErrDomainNotListed for an unlisted
// domain, CheckOperator with whitelist.ErrOperatorNotListed; any other error (no list yet, a
// list too old) is treated as temporary: 4.7.1 and a retry, never a pass.
type Policy interface {
	CheckDomain(domain string) error
	CheckOperator(domain, dn string) error
}

// OperatorPolicy is an optional Policy method: whether dn is listed for at least one domain.
// It decides null-sender (DSN) mail on the relay, which has no sender domain to check; a
// Policy without it makes the relay refuse the null sender (fail closed).
type OperatorPolicy interface {
	CheckOperatorAny(dn string) error
}

// Accounts maps authenticated clients of the submission listener to their BAL address.
type Accounts interface {
	// BALForCertificate returns the BAL of a verified client certificate (SASL EXTERNAL).
	BALForCertificate(ctx context.Context, dn string, cert *x509.Certificate) (string, error)
	// BALForPassword checks a PLAIN login and returns the BAL (only with AllowPlain).
	BALForPassword(ctx context.Context, username, password string) (string, error)
}

// SMTP replies. Texts are generic on purpose: the detail goes to the audit log.
var (
	replyNeedTLS         = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	replyNeedCert        = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Client certificate required"}
	replyBadCert         = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Client certificate not trusted"}
	replyDomainNotListed = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender domain not in the MSSante trust list"}
	replyDNNotListed     = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Client certificate not authorised for the sender domain"}
	replyNullSender      = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Null sender not accepted from this client"}
	replyTrustTemp       = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Trust list unavailable, try again later"}
	replyRelayDenied     = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied"}
	replyRcptNotListed   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Recipient domain not in the MSSante trust list"}
	replyNoMailbox       = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Mailbox unavailable"}
	replyMailboxDisabled = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 2, 1}, Message: "Mailbox disabled, not accepting messages"}
	replyBadRcpt         = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address: want a dot-atom local part and a domain without trailing dot"}
	replyBadSender       = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address: want a dot-atom local part and a domain without trailing dot"}
	replyAuthRequired    = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	replySenderNotOwned  = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not owned by the authenticated BAL"}
	replyFromNotOwned    = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "From header not owned by the authenticated BAL"}
	replyNIL             = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "X-MSS-NIL header missing or not one ASCII token (the sending software's reference, required on every mail)"}
	replyBareLF          = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Bare CR or LF not allowed"}
	replyBadHeader       = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message header"}
	replyVirus           = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message content rejected"}
	replyScanTemp        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Content scanner unavailable, try again later"}
	replyQueueTemp       = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	replyTooBig          = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big"}
	replyLineTooLong     = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
	replyTooManyConns    = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections, try again later"}
	replyShuttingDown    = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down"}
)

// replyAuthTooMany ends a session that may not try AUTH again (RFC 5321 §3.8: 421 and close).
// replyAuthTemp answers a login whose account could not be looked up (the store is
// unreachable): a temporary failure, RFC 4954 §6, so that the client retries rather than
// taking its credentials for wrong.
var replyAuthTemp = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}

var replyAuthTooMany = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentications, try again later"}

// ServerOptions configure NewServer. Zero fields take the documented defaults.
type ServerOptions struct {
	// Mode is ModeRelay (default) or ModeSubmission.
	Mode Mode
	// Hostname is the name in the greeting and Received headers (default "localhost").
	Hostname string
	// TLS holds our server certificate (Certificates, required), the trust store client
	// certificates are verified with (Trust, required: IGC-Santé roots and CRLs), the clock
	// (Time) and the Réf. #2 protocol choices (AllowTLS13, AllowCBC): TLS 1.2 minimum with the
	// Réf. #2 suites. Client certificates are requested, not required by the handshake: they
	// are verified after it (transport.TrustStore.Verify, revocation included) so that a
	// refused one gets a precise SMTP reply and an audit record rather than a bare TLS alert.
	// OptionalClientCert and VerifyPeer are ignored.
	TLS *transport.TLSOptions
	// GetCertificate, when set, supplies the server certificate instead of TLS.Certificates
	// (hot swap of a renewed certificate).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ImplicitTLS serves TLS from the first byte (port 465) instead of STARTTLS.
	ImplicitTLS bool
	// RequireNIL, in ModeSubmission, refuses a message without a valid X-MSS-NIL (the
	// product reference Réf. #2 ECO.2.4.3 requires on every mail, by mssante.CheckNIL) with
	// 554 5.6.0, as bal refuses it before sending. Off, a mail client that does not write the
	// header (a person's BAL) can submit.
	RequireNIL bool
	// Policy is the liste blanche (required).
	Policy Policy
	// LocalDomains are the domains whose mailboxes this connector hosts.
	LocalDomains []string
	// Local looks up and stores local mailboxes (required).
	Local LocalDelivery
	// Accounts authenticates BALs on the submission listener (required in ModeSubmission).
	Accounts Accounts
	// AllowPlain offers AUTH PLAIN (over TLS only) on the submission listener.
	AllowPlain bool
	// OAuth, when set, offers AUTH XOAUTH2 and OAUTHBEARER (over TLS only) on the submission
	// listener: a Pro Santé Connect token opens the BAL its holder names.
	OAuth *psc.Authenticator
	// AuthLimiter brakes password guessing on AUTH PLAIN: delays, refusals and the
	// connection closed with 421 4.7.0 after a few failures. Share one with the IMAP
	// listeners so that failures count on both; nil uses the authlimit defaults, audited
	// to Audit.
	AuthLimiter *authlimit.Limiter
	// Queue is where accepted messages go (required).
	Queue queue.Spool
	// Scanner checks content between DATA and queueing (nil: none).
	Scanner antivirus.Scanner
	// ScanUnavailablePermanent answers 554 5.7.1 instead of 451 4.7.1 when the scanner fails.
	ScanUnavailablePermanent bool
	// Audit receives one record per event (nil: none).
	Audit *audit.Log
	// Metrics receives counters (nil: none).
	Metrics *metrics.Metrics
	// MaxMessageBytes bounds a message (default 25 MiB, the Mon espace santé limit).
	MaxMessageBytes int64
	// MaxRecipients bounds recipients per message (default 100).
	MaxRecipients int
	// MaxLineLength bounds a line of command or data (default 2000; on a submission listener
	// with OAuth at least 12288, for the AUTH line, RFC 4954 §4).
	MaxLineLength int
	// ReadTimeout bounds each wait for the client's next bytes (default 5 min: RFC 5321
	// §4.5.3.2.7 asks a server to wait at least that for the next command); WriteTimeout each
	// reply (default 1 min).
	ReadTimeout, WriteTimeout time.Duration
	// CommandTimeout bounds a command line from its first byte to its end (default 1 min; a
	// line is at most MaxLineLength bytes), however the bytes are spaced: without it one byte
	// every few seconds holds a connection for hours.
	CommandTimeout time.Duration
	// DataTimeout bounds a message from the DATA command to its final "." (and each BDAT
	// chunk from its command); default 10 min (RFC 5321 §4.5.3.2.6) plus MaxMessageBytes at
	// 32 KiB/s: 23 min 20 s for 25 MiB.
	DataTimeout time.Duration
	// SessionTimeout bounds a whole connection (default 1 h); a message being received then
	// is not acknowledged, and its sender retries.
	SessionTimeout time.Duration
	// HandshakeTimeout bounds a TLS handshake (default 10 s): from accept with ImplicitTLS,
	// from the STARTTLS command otherwise.
	HandshakeTimeout time.Duration
	// MaxConnsPerPeer bounds simultaneous connections from one IP address (default 20);
	// MaxConns bounds all of them (default 1000). Beyond, the peer gets 421 4.7.0.
	MaxConnsPerPeer, MaxConns int
	// ConnShare, when set, counts MaxConnsPerPeer over the nodes of a cluster
	// (transport.ConnLimits.Share; transport/connshare).
	ConnShare transport.ConnShare
	// Logger receives operational logs (nil: discard).
	Logger *slog.Logger
}

// Server is an SMTP relay or submission server of the connector.
type Server struct {
	opts   ServerOptions
	tlsCfg *tls.Config
	now    func() time.Time
	local  map[string]bool
	logger *slog.Logger
	// ctx is the base of every call a session makes (account and mailbox look-ups, scanning,
	// queueing): Close cancels it, so that a stop does not wait on a slow store or scanner,
	// as net/http.Server.BaseContext lets a server do. Shutdown leaves it, so that the
	// transactions it waits for can still commit.
	ctx    context.Context
	cancel context.CancelFunc

	limiter *transport.ConnLimiter // MaxConns, MaxConnsPerPeer and the deadlines of each connection

	mu        sync.Mutex
	closed    bool
	draining  bool // Shutdown: sessions end at the end of their transaction
	listeners []net.Listener
	conns     map[*smtp.Server]*liveConn // one go-smtp server per connection (see crlfGuard)
	wg        sync.WaitGroup             // connections in progress
}

// liveConn is one connection in progress, for Shutdown: whether its session is in a
// transaction (from an accepted MAIL to the end of DATA, BDAT LAST or RSET).
type liveConn struct {
	mu      sync.Mutex
	conn    net.Conn // what go-smtp reads and writes: the TLS connection once there is one
	busy    bool     // in a transaction
	closing bool     // 421 sent or being sent
	// caller is the TLS state of a Submit caller, whose connection is in-process.
	caller *tls.ConnectionState
	// auth counts the connection's failed logins. It belongs to the connection, not to the
	// session: go-smtp starts a new session at each EHLO, which must not reset the count.
	auth *authlimit.Conn
}

// hangUp sends 421 4.3.2 and closes the connection, once. The caller holds lc.mu.
func (lc *liveConn) hangUp(hostname string) {
	if lc.closing {
		return
	}
	lc.closing = true
	c := lc.conn
	go func() {
		// Read too: on an implicit-TLS connection not yet handshaken, the write waits for the
		// peer's ClientHello (a silent peer then only holds the stop 5 s).
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s %s %s\r\n", replyCode(replyShuttingDown), hostname, replyShuttingDown.Message)
		c.Close()
	}()
}

// NewServer checks opts and returns a server ready to Serve.
func NewServer(opts *ServerOptions) (*Server, error) {
	if opts == nil || opts.TLS == nil || opts.TLS.Trust == nil || len(opts.TLS.Certificates) == 0 && opts.GetCertificate == nil ||
		opts.Policy == nil || opts.Queue == nil || opts.Local == nil {
		return nil, errors.New("connector: TLS (Trust and Certificates), Policy, Queue and Local are required")
	}
	if opts.Mode == ModeSubmission && opts.Accounts == nil {
		return nil, errors.New("connector: Accounts is required in submission mode")
	}
	s := &Server{opts: *opts, local: map[string]bool{}, conns: map[*smtp.Server]*liveConn{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	o := &s.opts
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 25 << 20
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = 100
	}
	if o.MaxLineLength <= 0 {
		o.MaxLineLength = 2000
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 5 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = time.Minute
	}
	if o.MaxConnsPerPeer <= 0 {
		o.MaxConnsPerPeer = 20
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1000
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = time.Minute
	}
	if o.DataTimeout <= 0 {
		o.DataTimeout = 10*time.Minute + time.Duration(o.MaxMessageBytes/minDataRate)*time.Second
	}
	if o.SessionTimeout <= 0 {
		o.SessionTimeout = time.Hour
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	lim := transport.ConnLimits{MaxConns: o.MaxConns, MaxConnsPerAddr: o.MaxConnsPerPeer, Share: o.ConnShare,
		SessionTimeout: o.SessionTimeout, IdleTimeout: o.ReadTimeout}
	if o.ImplicitTLS {
		lim.HandshakeTimeout = o.HandshakeTimeout
	}
	s.limiter = transport.NewConnLimiter(lim)
	if o.AuthLimiter == nil {
		o.AuthLimiter = authlimit.New(&authlimit.Options{Audit: o.Audit})
	}
	s.now = o.TLS.Time
	if s.now == nil {
		s.now = time.Now
	}
	s.logger = o.Logger
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	for _, d := range o.LocalDomains {
		s.local[strings.ToLower(d)] = true
	}
	s.tlsCfg = serverTLS(o.TLS)
	s.tlsCfg.GetCertificate = o.GetCertificate
	return s, nil
}

// minDataRate is the slowest transfer the default DataTimeout allows for a message of
// MaxMessageBytes, in bytes per second (32 KiB/s, 256 kbit/s).
const minDataRate = 32 << 10

// newSMTP returns the go-smtp server of one connection, whose Debug writer is its guard.
func (s *Server) newSMTP(g *crlfGuard, lc *liveConn) *smtp.Server {
	o := &s.opts
	srv := smtp.NewServer(connBackend{s, g, lc})
	srv.Debug = g
	srv.Domain = o.Hostname
	srv.MaxMessageBytes = o.MaxMessageBytes
	srv.MaxRecipients = o.MaxRecipients
	srv.MaxLineLength = maxLineLength(o)
	// No ReadTimeout: go-smtp re-arms it at each line and keeps the one of the DATA command for
	// the whole message; the connection's transport.LimitedConn and the clock bound the reads
	// (ReadTimeout per wait, CommandTimeout per line, DataTimeout per message, SessionTimeout).
	srv.WriteTimeout = o.WriteTimeout
	srv.EnableDSN = true
	srv.ErrorLog = slogLogger{s.logger}
	switch {
	case lc.caller != nil:
		// A Submit connection: the caller's TLS ended in its own server (see Server.Submit).
		srv.AllowInsecureAuth = true
	case !o.ImplicitTLS:
		srv.TLSConfig = s.tlsCfg
	}
	return srv
}

// serverTLS builds the listener's TLS configuration from the Réf. #2 choices of o.
func serverTLS(o *transport.TLSOptions) *tls.Config {
	cfg := &tls.Config{
		Certificates: o.Certificates,
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: transport.DefaultCipherSuites(),
		// No CA list in the CertificateRequest: a client then sends the certificate it has and
		// an untrusted one gets 550 5.7.1 instead of an anonymous session.
		ClientAuth: tls.RequestClientCert,
		Time:       o.Time,
	}
	if o.AllowTLS13 {
		cfg.MaxVersion = tls.VersionTLS13
	}
	if o.AllowCBC {
		cfg.CipherSuites = append(cfg.CipherSuites, transport.CBCCipherSuite)
	}
	return cfg
}

// verifyClient verifies a client chain with the trust store and returns its DN.
func (s *Server) verifyClient(certs []*x509.Certificate) (string, error) {
	chains, err := s.opts.TLS.Trust.Verify(certs, x509.ExtKeyUsageClientAuth, s.now())
	if err != nil {
		return "", err
	}
	return transport.SubjectDN(chains[0][0]), nil
}

type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l slogLogger) Println(v ...any)               { l.l.Warn(fmt.Sprint(v...)) }

// Serve accepts connections on l until Close or Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	var ll net.Listener = &guardListener{s.limiter.Listener(l, s.refused)}
	if s.opts.ImplicitTLS {
		ll = tls.NewListener(ll, s.tlsCfg) // above the limiter, so that go-smtp sees a *tls.Conn
	}
	var delay time.Duration
	for {
		c, err := ll.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger.Warn("connector: accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.serveConn(c)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serveConn runs the session of c on its own go-smtp server.
func (s *Server) serveConn(c net.Conn) {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	gc := raw.(*guardConn)
	lc := &liveConn{conn: c}
	if cc, ok := gc.lc.Conn.(*callerConn); ok {
		lc.caller = cc.tls
	}
	srv := s.newSMTP(gc.g, lc)
	one := &oneConn{c: c, closed: make(chan struct{})}
	gc.onClose = one.Close
	gc.g.clock = &sessionClock{c: gc.lc, cmd: s.opts.CommandTimeout, data: s.opts.DataTimeout, handshake: s.opts.HandshakeTimeout}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[srv] = lc
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		// The implicit TLS handshake, here rather than in go-smtp, within HandshakeTimeout
		// (a peer that sends no ClientHello holds the connection that long, no longer).
		if tc, ok := c.(*tls.Conn); ok {
			if err := tc.HandshakeContext(s.ctx); err != nil {
				c.Close()
				s.mu.Lock()
				delete(s.conns, srv)
				s.mu.Unlock()
				return
			}
		}
		gc.lc.EndHandshake()
		srv.Serve(one)                     // returns once the connection is closed
		srv.Shutdown(context.Background()) // waits for go-smtp's handler to return
		s.mu.Lock()
		delete(s.conns, srv)
		s.mu.Unlock()
	}()
}

// oneConn is a listener that yields one connection, then blocks until closed.
type oneConn struct {
	c      net.Conn
	once   sync.Once
	taken  bool
	closed chan struct{}
}

func (l *oneConn) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConn) Addr() net.Addr { return l.c.LocalAddr() }

// Close closes the listeners and every connection at once, and cancels the calls sessions
// have in progress (a message being queued is then refused, never acknowledged).
func (s *Server) Close() error {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	ls, srvs := s.listeners, make([]*smtp.Server, 0, len(s.conns))
	s.listeners = nil
	for srv := range s.conns {
		srvs = append(srvs, srv)
	}
	s.mu.Unlock()
	var err error
	for _, l := range ls {
		if e := l.Close(); e != nil && err == nil {
			err = e
		}
	}
	for _, srv := range srvs {
		srv.Close()
	}
	return err
}

// Shutdown stops accepting, closes the sessions that are between transactions with
// 421 4.3.2 (RFC 5321 §3.8; an operator keeps pooled sessions open into us), lets those in a
// transaction (from an accepted MAIL to the end of its DATA) finish and be answered, closes
// them the same way then, and waits for all of them, or for ctx.
//
// A session is closed as idle when it is not in a transaction, also if a command of it is
// being answered: the peer may then read that reply before the 421 (or lose it while a
// STARTTLS handshake is under way). Either way it sent no message we acknowledged.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.draining = true
	ls := s.listeners
	s.listeners = nil
	for _, lc := range s.conns {
		lc.mu.Lock()
		if !lc.busy {
			lc.hangUp(s.opts.Hostname)
		}
		lc.mu.Unlock()
	}
	s.mu.Unlock()
	var err error
	for _, l := range ls {
		if e := l.Close(); e != nil && err == nil {
			err = e
		}
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return err
	}
}

// refused answers a connection over MaxConns or MaxConnsPerPeer, before the listener closes it.
func (s *Server) refused(c net.Conn) {
	s.audit(&audit.Record{Event: audit.EventRejected, PeerAddr: c.RemoteAddr().String(), Code: replyCode(replyTooManyConns), Reason: "connection limit"})
	s.opts.Metrics.Rejected("connection_limit")
	s.logger.Warn("connector: connection refused", "listener", s.name(), "peer", c.RemoteAddr().String(),
		"code", replyCode(replyTooManyConns), "reason", "connection_limit")
	// Plain text on an implicit-TLS listener would be read as garbage: just close there.
	if !s.opts.ImplicitTLS {
		fmt.Fprintf(c, "%s %s %s\r\n", replyCode(replyTooManyConns), s.opts.Hostname, replyTooManyConns.Message)
	}
}

// guardListener gives each connection the limiter accepts its crlfGuard.
type guardListener struct{ net.Listener }

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, lc: c.(*transport.LimitedConn), g: &crlfGuard{}}, nil
}

// guardConn is an accepted connection: it tells its crlfGuard which way the bytes went (below
// TLS).
type guardConn struct {
	net.Conn
	lc      *transport.LimitedConn // the same connection: its deadlines
	g       *crlfGuard
	onClose func() error // ends the connection's go-smtp server
	once    sync.Once
}

func (c *guardConn) Read(p []byte) (int, error) {
	if c.g.bad() {
		return 0, errBareLF
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.g.rawRead.Store(true)
	}
	return n, err
}

func (c *guardConn) Write(p []byte) (int, error) {
	c.g.rawWrite.Store(true)
	return c.Conn.Write(p)
}

func (c *guardConn) Close() error {
	c.once.Do(func() {
		if c.onClose != nil {
			c.onClose()
		}
	})
	return c.Conn.Close()
}

func (s *Server) audit(r *audit.Record) {
	if s.opts.Audit != nil {
		r.Source = s.opts.Mode.String()
		s.opts.Audit.Log(r)
	}
}

// connBackend is the smtp.Backend of one connection.
type connBackend struct {
	s  *Server
	g  *crlfGuard
	lc *liveConn
}

// NewSession implements smtp.Backend; go-smtp calls it at EHLO, after STARTTLS.
func (b connBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := b.s
	sess := &session{s: s, g: b.g, lc: b.lc, c: c, peerAddr: c.Conn().RemoteAddr().String(), stage: "ehlo"}
	sess.track()
	if b.g.bad() {
		return nil, sess.refuse(replyBareLF, "bare_cr_or_lf")
	}
	if st, ok := c.TLSConnectionState(); ok && st.HandshakeComplete {
		sess.tls = &st
	} else if b.lc.caller != nil {
		sess.tls = b.lc.caller
	}
	if sess.tls != nil && len(sess.tls.PeerCertificates) > 0 {
		sess.cert = sess.tls.PeerCertificates[0]
		sess.dn, sess.certErr = s.verifyClient(sess.tls.PeerCertificates)
		if sess.certErr != nil {
			sess.dn = transport.SubjectDN(sess.cert) // for the audit record only
		}
	}
	return sess, nil
}

type rcpt struct {
	addr  string
	local bool
	opts  smtp.RcptOptions
}

// session is one SMTP session (after EHLO).
type session struct {
	s        *Server
	g        *crlfGuard
	lc       *liveConn
	c        *smtp.Conn
	peerAddr string
	tls      *tls.ConnectionState
	cert     *x509.Certificate
	dn       string
	certErr  error
	bal      string // authenticated BAL (submission)
	person   string // national id of the practitioner behind a token login (oauth.go)
	// stage is the command being answered ("ehlo", "auth", "mail", "rcpt", "data"): it names
	// the refusal in the operational log.
	stage      string
	fromDomain string // of the MAIL FROM being answered, for the operational log

	from     string
	mailOpts smtp.MailOptions
	rcpts    []rcpt
	digest   hash.Hash // of the message content, on the relay (see redeliveryKey)
}

func (ss *session) tlsVersion() string {
	if ss.tls == nil {
		return ""
	}
	return tls.VersionName(ss.tls.Version)
}

// refuse audits a refusal and returns the reply.
func (ss *session) refuse(reply *smtp.SMTPError, reason string, rcpts ...string) error {
	ss.s.audit(&audit.Record{Event: audit.EventRejected, From: ss.from, Rcpts: rcpts, PeerAddr: ss.peerAddr, PeerDN: ss.dn,
		TLS: ss.tlsVersion(), BAL: ss.bal, Code: replyCode(reply), Reason: reason})
	key, _, _ := strings.Cut(reason, ":")
	ss.s.opts.Metrics.Rejected(key)
	ss.logRefusal(reply, key, rcpts)
	return reply
}

// refusalMessages name a refusal in the operational log by the command it answers.
var refusalMessages = map[string]string{
	"ehlo": "connector: session refused",
	"auth": "connector: authentication failed",
	"mail": "connector: sender refused",
	"rcpt": "connector: recipient refused",
	"data": "connector: message refused",
}

// logRefusal writes a refusal to the operational log: the reply code, the reason key (the
// audit record has the detail), the peer and the BAL or certificate DN, and of the addresses
// only the domains. A recipient's local part may be a patient's INS (<INS>@patient.mssante.fr),
// and a relayed sender may be a patient too: health data, never logged. Authentication
// failures and temporary refusals (a problem on our side, or no trust list) are warnings.
func (ss *session) logRefusal(reply *smtp.SMTPError, reason string, rcpts []string) {
	level := slog.LevelInfo
	if ss.stage == "auth" || reply.Code/100 == 4 {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{slog.String("listener", ss.s.name()), slog.String("peer", ss.peerAddr),
		slog.String("code", replyCode(reply)), slog.String("reason", reason)}
	attrs = append(attrs, ss.identityAttrs()...)
	if ss.fromDomain != "" {
		attrs = append(attrs, slog.String("from_domain", ss.fromDomain))
	}
	switch {
	case ss.stage == "rcpt" && len(rcpts) == 1:
		attrs = append(attrs, slog.String("rcpt_domain", logDomain(rcpts[0])))
	case len(rcpts) > 0:
		attrs = append(attrs, slog.Int("rcpts", len(rcpts)))
	}
	ss.s.logger.LogAttrs(context.Background(), level, cmp.Or(refusalMessages[ss.stage], "connector: refused"), attrs...)
}

// identityAttrs name the client: its authenticated BAL, else the DN of its certificate.
func (ss *session) identityAttrs() []slog.Attr {
	if ss.bal != "" {
		return []slog.Attr{slog.String("bal", ss.bal)}
	}
	if ss.dn != "" {
		return []slog.Attr{slog.String("peer_dn", ss.dn)}
	}
	return nil
}

// logAuthFailure writes a failed AUTH to the operational log. The login is named only
// when it is an address (a BAL): a password typed in the login field must not be logged.
func (ss *session) logAuthFailure(mech string, reply *smtp.SMTPError, reason, login string) {
	attrs := []slog.Attr{slog.String("listener", ss.s.name()), slog.String("peer", ss.peerAddr),
		slog.String("code", replyCode(reply)), slog.String("reason", reason), slog.String("mech", mech)}
	if a, ok := envelopeAddress(login); ok {
		attrs = append(attrs, slog.String("login", a))
	}
	ss.s.logger.LogAttrs(context.Background(), slog.LevelWarn, "connector: authentication failed", attrs...)
}

// logDomain is the domain of addr as the operational log may hold it: never the local part,
// bounded in length since the address comes from the peer.
func logDomain(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return "" // not an address: what it holds may be anything
	}
	d := addr[i+1:]
	if len(d) > 255 {
		d = d[:255]
	}
	return strings.ToLower(d)
}

// name is the listener's name in the operational log, as the node names it.
func (s *Server) name() string {
	if s.opts.Mode == ModeSubmission && s.opts.ImplicitTLS {
		return "submission_tls"
	}
	return s.opts.Mode.String()
}

func replyCode(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
}

// requireTLS checks TLS and the client certificate.
func (ss *session) requireTLS() error {
	if ss.tls == nil {
		return ss.refuse(replyNeedTLS, "no_tls")
	}
	if ss.cert == nil {
		return ss.refuse(replyNeedCert, "no_client_certificate")
	}
	if ss.certErr != nil {
		ss.s.logger.Info("connector: client certificate refused", "peer", ss.peerAddr, "err", ss.certErr)
		return ss.refuse(replyBadCert, "client_certificate_untrusted: "+certReason(ss.certErr))
	}
	return nil
}

// AuthMechanisms implements smtp.AuthSession: only in submission mode, only over TLS.
func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Mode != ModeSubmission || ss.tls == nil {
		return nil
	}
	m := []string{sasl.External}
	if ss.s.opts.AllowPlain {
		m = append(m, sasl.Plain)
	}
	return append(m, ss.bearerMechanisms()...)
}

// Auth implements smtp.AuthSession.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	ss.stage = "auth"
	if ss.s.opts.Mode != ModeSubmission || ss.tls == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if err := ss.bareCRLF(); err != nil {
		return nil, err
	}
	ctx := ss.s.ctx
	switch mech {
	case sasl.External:
		return sasl.NewExternalServer(func(identity string) error {
			if ss.cert == nil || ss.certErr != nil {
				ss.refuse(smtp.ErrAuthFailed, "auth_external_no_valid_certificate")
				return smtp.ErrAuthFailed
			}
			bal, err := ss.s.opts.Accounts.BALForCertificate(ctx, ss.dn, ss.cert)
			if err != nil && !errors.Is(err, ErrUnknownAccount) {
				return ss.refuse(replyAuthTemp, "auth_external_lookup: "+err.Error())
			}
			if err != nil || identity != "" && !strings.EqualFold(identity, bal) {
				ss.refuse(smtp.ErrAuthFailed, "auth_external_unknown_certificate")
				return smtp.ErrAuthFailed
			}
			ss.bal = bal
			return nil
		}), nil
	case sasl.Plain:
		if !ss.s.opts.AllowPlain {
			return nil, smtp.ErrAuthUnknownMechanism
		}
		lim := ss.authLimit()
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if err := lim.Before(ctx, username); err != nil {
				ss.s.opts.Metrics.Rejected("auth_plain_locked")
				ss.logAuthFailure(sasl.Plain, replyAuthTooMany, "auth_plain_locked", username)
				return ss.authHangUp()
			}
			bal, err := ss.s.opts.Accounts.BALForPassword(ctx, username, password)
			if err != nil && !errors.Is(err, ErrUnknownAccount) {
				return ss.refuse(replyAuthTemp, "auth_plain_lookup: "+err.Error())
			}
			if err != nil || identity != "" && !strings.EqualFold(identity, bal) {
				// The limiter audits the failure (auth_failed), with the connection's count.
				ss.s.opts.Metrics.Rejected("auth_plain_failed")
				if lim.Failed(username) != nil {
					ss.logAuthFailure(sasl.Plain, replyAuthTooMany, "auth_plain_failed", username)
					return ss.authHangUp()
				}
				ss.logAuthFailure(sasl.Plain, smtp.ErrAuthFailed, "auth_plain_failed", username)
				return smtp.ErrAuthFailed
			}
			lim.Succeeded(username)
			ss.bal = bal
			return nil
		}), nil
	}
	if srv := ss.bearer(mech); srv != nil {
		return srv, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// envelopeAddress reads the address of a MAIL FROM or RCPT TO once, with the MSSanté address
// rules (mssante.NewAddress), and returns the one form the whitelist, routing, the queue and
// local delivery then use, or false for an address that the connector refuses.
//
// An SMTP local part is a Dot-string or a Quoted-string, and a domain has no trailing dot
// (RFC 5321 §4.1.2). go-smtp hands the session a quoted local part unquoted, so a local part
// that is not a dot-atom (`"marie durand"@…`) cannot be passed on as received: relayed without
// its quotes it is another, invalid address, and only the destination host may interpret a
// local part (RFC 5321 §2.3.11), so it may not be rewritten into a third. MSSanté addresses
// are dot-atoms, so such an address names no MSSanté mailbox: it is refused here, 553 (mailbox
// name not allowed, RFC 5321 §4.2.2) with X.1.3 or X.1.7 (RFC 3463 §3.2), rather than accepted
// and bounced. A quoted local part that is a dot-atom is the same as the dot-atom (RFC 5322
// §3.2.4: the quotes are not part of it) and is accepted in that form. A domain with a trailing
// dot is refused rather than trimmed, so that no second spelling of a domain passes this point.
// The form kept is in lower case: MSSanté addresses are published in lower case and compared
// without regard to case (RFC 5321 §2.4 discourages telling local parts apart by case).
func envelopeAddress(addr string) (string, bool) {
	a, err := mssante.NewAddress("", addr)
	if err != nil || a.Addr != strings.ToLower(addr) { // NewAddress also trims spaces
		return "", false
	}
	return a.Addr, true
}

// authLimit returns the login limiter of the session's connection.
func (ss *session) authLimit() *authlimit.Conn {
	ss.lc.mu.Lock()
	defer ss.lc.mu.Unlock()
	if ss.lc.auth == nil {
		ss.lc.auth = ss.s.opts.AuthLimiter.Conn(ss.s.opts.Mode.String(), ss.peerAddr)
	}
	return ss.lc.auth
}

// authHangUp answers 421 4.7.0 and closes the connection, from the AUTH exchange: go-smtp
// then finds it closed and ends the session without another reply.
func (ss *session) authHangUp() error {
	ss.lc.mu.Lock()
	closing := ss.lc.closing
	ss.lc.closing = true
	ss.lc.mu.Unlock()
	if !closing { // else Shutdown is sending its own 421
		c := ss.c.Conn()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "%s %s %s\r\n", replyCode(replyAuthTooMany), ss.s.opts.Hostname, replyAuthTooMany.Message)
		c.Close()
	}
	return replyAuthTooMany
}

// domainOf returns the lower-case domain of addr, or "" when addr is not local@domain.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// bareCRLF refuses the command or message when a bare CR or LF has been read (see crlfGuard).
func (ss *session) bareCRLF(rcpts ...string) error {
	if ss.g.bad() {
		return ss.refuse(replyBareLF, "bare_cr_or_lf", rcpts...)
	}
	return nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.from, ss.stage, ss.fromDomain = "", "mail", logDomain(from)
	if err := ss.bareCRLF(); err != nil {
		return err
	}
	switch ss.s.opts.Mode {
	case ModeRelay:
		if err := ss.requireTLS(); err != nil {
			return err
		}
		if from == "" {
			op, ok := ss.s.opts.Policy.(OperatorPolicy)
			if !ok {
				return ss.refuse(replyNullSender, "null_sender_unverifiable")
			}
			if err := op.CheckOperatorAny(ss.dn); err != nil {
				return ss.refuse(trustErr(err, replyNullSender), "null_sender_operator_not_listed")
			}
			break
		}
		addr, ok := envelopeAddress(from)
		if !ok {
			return ss.refuse(replyBadSender, "bad_sender_syntax")
		}
		from = addr
		d := domainOf(from)
		if err := ss.s.opts.Policy.CheckDomain(d); err != nil {
			return ss.refuse(trustErr(err, replyDomainNotListed), "sender_domain: "+err.Error())
		}
		if err := ss.s.opts.Policy.CheckOperator(d, ss.dn); err != nil {
			return ss.refuse(trustErr(err, replyDNNotListed), "sender_operator: "+err.Error())
		}
	case ModeSubmission:
		if ss.tls == nil {
			return ss.refuse(replyNeedTLS, "no_tls")
		}
		if ss.bal == "" {
			return ss.refuse(replyAuthRequired, "not_authenticated")
		}
		addr, ok := envelopeAddress(from)
		if !ok {
			return ss.refuse(replyBadSender, "bad_sender_syntax")
		}
		if from = addr; !strings.EqualFold(from, ss.bal) {
			ss.from = from
			return ss.refuse(replySenderNotOwned, "sender_not_bal")
		}
	}
	if !ss.begin() {
		return replyShuttingDown
	}
	ss.from = from
	ss.mailOpts = *opts
	return nil
}

// track records the connection go-smtp now uses (TLS after STARTTLS) for a 421 at Shutdown;
// it runs on the session's goroutine, from the go-smtp callbacks.
func (ss *session) track() {
	ss.lc.mu.Lock()
	ss.lc.conn = ss.c.Conn()
	ss.lc.mu.Unlock()
}

// isDraining reports whether Shutdown has started.
func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// begin marks the start of a transaction, or reports that the server is shutting down.
func (ss *session) begin() bool {
	draining := ss.s.isDraining()
	lc := ss.lc
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if draining || lc.closing {
		lc.hangUp(ss.s.opts.Hostname)
		return false
	}
	lc.busy = true
	return true
}

// end marks the end of a transaction; at Shutdown the session is then closed with 421 (go-smtp
// has written the reply to DATA before it calls Reset).
func (ss *session) end() {
	draining := ss.s.isDraining()
	lc := ss.lc
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.busy = false
	lc.conn = ss.c.Conn()
	if draining {
		lc.hangUp(ss.s.opts.Hostname)
	}
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	ss.stage = "rcpt"
	if err := ss.bareCRLF(to); err != nil {
		return err
	}
	addr, ok := envelopeAddress(to)
	if !ok {
		return ss.refuse(replyBadRcpt, "bad_recipient_syntax", to)
	}
	to = addr
	d := domainOf(to)
	ctx := ss.s.ctx
	if ss.s.local[d] {
		if err := ss.s.opts.Local.Lookup(ctx, to); err != nil {
			if errors.Is(err, ErrNoMailbox) {
				return ss.refuse(replyNoMailbox, "no_such_mailbox", to)
			}
			if errors.Is(err, ErrMailboxDisabled) {
				return ss.refuse(replyMailboxDisabled, "mailbox_disabled", to)
			}
			return ss.refuse(replyQueueTemp, "mailbox_lookup: "+err.Error(), to)
		}
		ss.rcpts = append(ss.rcpts, rcpt{addr: to, local: true, opts: *opts})
		return nil
	}
	if ss.s.opts.Mode == ModeRelay {
		return ss.refuse(replyRelayDenied, "relay_denied", to)
	}
	if err := ss.s.opts.Policy.CheckDomain(d); err != nil {
		return ss.refuse(trustErr(err, replyRcptNotListed), "recipient_domain: "+err.Error(), to)
	}
	ss.rcpts = append(ss.rcpts, rcpt{addr: to, opts: *opts})
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.rcpts, ss.mailOpts, ss.fromDomain = "", nil, smtp.MailOptions{}, ""
	ss.end()
}

// Logout implements smtp.Session; go-smtp calls it after STARTTLS, whose TLS connection is
// then the one to answer on, and at the end of the connection.
func (ss *session) Logout() error {
	ss.track()
	ss.g.clock.handshakeDone()
	return nil
}

func (ss *session) rcptAddrs() []string {
	out := make([]string, len(ss.rcpts))
	for i, r := range ss.rcpts {
		out[i] = r.addr
	}
	return out
}

// Data receives the message: bare CR/LF refused, From checked on submission, content scanned,
// then queued durably before 250.
func (ss *session) Data(r io.Reader) error {
	start := time.Now()
	ss.stage = "data"
	s := ss.s
	ctx := ss.s.ctx
	if err := ss.bareCRLF(ss.rcptAddrs()...); err != nil {
		return err
	}
	s.audit(&audit.Record{Event: audit.EventReceived, From: ss.from, Rcpts: ss.rcptAddrs(), PeerAddr: ss.peerAddr, PeerDN: ss.dn,
		TLS: ss.tlsVersion(), BAL: ss.bal})
	w, err := s.opts.Queue.BeginMessage()
	if err != nil {
		return ss.refuse(replyQueueTemp, "queue: "+err.Error(), ss.rcptAddrs()...)
	}
	defer w.Abort() // no-op after Commit
	fmt.Fprintf(w, "Received: from %s (%s)\r\n\tby %s with %s id %s;\r\n\t%s\r\n",
		sanitize(ss.c.Hostname()), sanitize(ss.peerAddr), s.opts.Hostname, ss.protocol(), w.ID(),
		time.Now().Format(time.RFC1123Z))
	content := ss.digestWriter(w)
	br := bufio.NewReader(&strictCRLF{r: r})
	hdr, err := readHeader(br, 256<<10)
	if err == nil {
		var h textproto.Header
		h, err = parseHeader(hdr, s.opts.Mode == ModeSubmission)
		if err == nil && s.opts.Mode == ModeSubmission {
			err = ss.checkFrom(h)
		}
		if err == nil && s.opts.Mode == ModeSubmission && s.opts.RequireNIL {
			if mssante.CheckNIL(strings.TrimSpace(h.Get(mssante.HeaderNIL))) != nil {
				err = errNIL
			}
		}
	}
	if err == nil {
		if _, err = content.Write(hdr); err == nil {
			_, err = io.Copy(content, br)
		}
	}
	if err == nil && ss.g.bad() { // e.g. "\r\n.\r", whose ".\r" go-smtp's dot-unstuffing drops
		err = errBareLF
	}
	switch {
	case err == nil:
	case errors.Is(err, errBareLF):
		return ss.refuse(replyBareLF, "bare_cr_or_lf", ss.rcptAddrs()...)
	case errors.Is(err, errHeader):
		reply, reason := headerReply(err)
		return ss.refuse(reply, reason, ss.rcptAddrs()...)
	case errors.Is(err, errFromNotOwned):
		return ss.refuse(replyFromNotOwned, "from_header_not_bal", ss.rcptAddrs()...)
	case errors.Is(err, errNIL):
		return ss.refuse(replyNIL, "no_valid_nil", ss.rcptAddrs()...)
	case errors.Is(err, queue.ErrTooLarge), errors.Is(err, smtp.ErrDataTooLarge):
		return ss.refuse(replyTooBig, "too_big", ss.rcptAddrs()...)
	case errors.Is(err, smtp.ErrTooLongLine):
		return ss.refuse(replyLineTooLong, "line_too_long", ss.rcptAddrs()...)
	default:
		var se *smtp.SMTPError
		if errors.As(err, &se) { // from go-smtp's reader, e.g. a line too long
			return ss.refuse(se, "data: "+se.Message, ss.rcptAddrs()...)
		}
		return ss.refuse(replyQueueTemp, "data: "+err.Error(), ss.rcptAddrs()...)
	}
	if s.opts.Scanner != nil {
		rc, err := w.Open()
		if err == nil {
			err = s.opts.Scanner.Scan(ctx, rc)
			rc.Close()
		}
		var found *antivirus.VirusError
		switch {
		case errors.As(err, &found):
			return ss.refuse(replyVirus, "virus: "+found.Signature, ss.rcptAddrs()...)
		case err != nil && s.opts.ScanUnavailablePermanent:
			return ss.refuse(replyVirus, "scanner: "+err.Error(), ss.rcptAddrs()...)
		case err != nil:
			return ss.refuse(replyScanTemp, "scanner: "+err.Error(), ss.rcptAddrs()...)
		}
	}
	env := &queue.Envelope{From: ss.from, Ret: string(ss.mailOpts.Return), EnvID: ss.mailOpts.EnvelopeID,
		Source: s.opts.Mode.String(), PeerDN: ss.dn, PeerAddr: ss.peerAddr, RedeliveryKey: ss.redeliveryKey(hdr)}
	for _, rc := range ss.rcpts {
		qr := &queue.Recipient{Addr: rc.addr}
		for _, n := range rc.opts.Notify {
			qr.Notify = append(qr.Notify, string(n))
		}
		if rc.opts.OriginalRecipient != "" {
			qr.ORCPT = string(rc.opts.OriginalRecipientType) + ";" + rc.opts.OriginalRecipient
		}
		env.Rcpts = append(env.Rcpts, qr)
	}
	id, err := w.Commit(ctx, env)
	dups := w.Redelivered()
	ss.auditRedelivered(dups)
	switch {
	case errors.Is(err, queue.ErrRedelivered):
		// Committed before: the same 250, so that the sender stops (RFC 5321 §6.1).
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + dups[0].ID}
	case errors.Is(err, queue.ErrRedeliveryInProgress):
		return ss.refuse(replyQueueTemp, "redelivery_in_progress", ss.rcptAddrs()...)
	case err != nil:
		return ss.refuse(replyQueueTemp, "queue: "+err.Error(), ss.rcptAddrs()...)
	}
	s.audit(&audit.Record{Event: audit.EventQueued, MsgID: id, From: ss.from, Rcpts: ss.committedRcpts(dups), PeerAddr: ss.peerAddr,
		PeerDN: ss.dn, TLS: ss.tlsVersion(), BAL: ss.bal, Person: ss.person, Size: w.Size(), Code: "250 2.0.0"})
	s.opts.Metrics.Accepted(s.opts.Mode.String(), time.Since(start))
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

func (ss *session) protocol() string {
	p := "ESMTPS"
	if ss.bal != "" {
		p = "ESMTPSA"
	}
	if ss.tls == nil {
		p = "ESMTP"
	}
	return p
}

// sanitize keeps a peer-supplied string safe for a header.
func sanitize(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, s)
}

var (
	errBareLF       = errors.New("connector: bare CR or LF in message")
	errHeader       = errors.New("connector: malformed header")
	errFromNotOwned = errors.New("connector: From is not the authenticated BAL")
	errNIL          = errors.New("connector: no valid X-MSS-NIL")
)

// strictCRLF fails on a CR not followed by LF or an LF not preceded by CR: the ambiguity SMTP
// smuggling exploits (SEC Consult, December 2023; Postfix smtpd_forbid_bare_newline). It checks
// each message as the session receives it; crlfGuard checks the session's bytes before go-smtp.
type strictCRLF struct {
	r      io.Reader
	prevCR bool
}

func (s *strictCRLF) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	for i := 0; i < n; i++ {
		c := p[i]
		if s.prevCR && c != '\n' || !s.prevCR && c == '\n' {
			return 0, errBareLF
		}
		s.prevCR = c == '\r'
	}
	if err == io.EOF && s.prevCR {
		return 0, errBareLF
	}
	return n, err
}

// readHeader reads the header block (up to and including the empty line), at most max bytes.
func readHeader(br *bufio.Reader, max int) ([]byte, error) {
	var buf bytes.Buffer
	lineStart := true
	for {
		line, err := br.ReadSlice('\n')
		buf.Write(line)
		if buf.Len() > max {
			return nil, errHeader
		}
		switch {
		case err == bufio.ErrBufferFull:
			lineStart = false
			continue
		case err == io.EOF:
			return buf.Bytes(), nil // a message without body
		case err != nil:
			return nil, err
		}
		if lineStart && string(line) == "\r\n" {
			return buf.Bytes(), nil
		}
		lineStart = true
	}
}
