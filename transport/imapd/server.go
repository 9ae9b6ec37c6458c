// Package imapd is the IMAP access of the reference connector: the BALs of the mailbox store
// served over IMAP (go-imap/v2 imapserver) on an implicit-TLS listener (993) and on a plain
// listener that offers STARTTLS (143).
//
// Authentication is SASL EXTERNAL with a verified TLS client certificate, whose subject DN is
// mapped to the APP BAL registered with it, or PLAIN (and LOGIN) with a BAL password, only over
// TLS. The server implements SELECT/EXAMINE, FETCH of sections, SEARCH, STORE, COPY, MOVE,
// EXPUNGE, UIDPLUS, IDLE and APPEND, and sends the unilateral EXISTS, EXPUNGE and FETCH FLAGS
// updates of changes made by other sessions and by local delivery.
//
// Connections are bounded with transport.ConnLimiter: in number (in total and per address), and
// in time (the implicit TLS handshake, the time to log in, then the autologout timer of
// RFC 9051 §5.4), so that silent or trickling clients cannot exhaust the process's descriptors.
//
// Specifications (docs/references.md): RFC 3501 (IMAP4rev1), RFC 2177 (IDLE), RFC 4315
// (UIDPLUS), RFC 6851 (MOVE), RFC 2342 (NAMESPACE), RFC 4422 / RFC 4959 (SASL, SASL-IR;
// EXTERNAL per RFC 4422 appendix A), RFC 4616 (PLAIN). RFC 7162 (CONDSTORE) is not
// implemented. MSSanté: the BAL applicative authenticates to its operator with an IGC-Santé
// ORG certificate (mutual TLS).
//
// Start with [New] on a mailbox.Store, then [Server.ServeTLS] on the 993 listener and
// [Server.Serve] on the 143 one; [Server.Shutdown] stops both.
package imapd

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/authlimit"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/psc"
)

// ErrServerClosed is returned by Serve and ServeTLS after Close or Shutdown.
var ErrServerClosed = errors.New("imapd: server closed")

// Options configures a Server. Store is required.
type Options struct {
	// Store holds the BALs and their messages.
	Store mailbox.Store
	// TLSConfig is the server's TLS configuration, used for implicit TLS (ServeTLS) and
	// STARTTLS (Serve). For SASL EXTERNAL it must ask for client certificates and verify them
	// (ClientAuth VerifyClientCertIfGiven or RequireAndVerifyClientCert with the IGC-Santé
	// roots as ClientCAs). Without TLSConfig no one can authenticate.
	TLSConfig *tls.Config
	// PeerDN turns a client certificate into the DN registered for an APP BAL; nil uses
	// transport.SubjectDN (the form of the liste blanche).
	PeerDN func(*x509.Certificate) string
	// VerifyPeer is called before SASL EXTERNAL accepts a certificate; nil requires the TLS
	// stack to have verified a chain (ConnectionState.VerifiedChains not empty). Set it when
	// the TLS configuration verifies chains itself (CRL checks in VerifyPeerCertificate).
	VerifyPeer func(tls.ConnectionState) error
	// IdlePoll, when set, makes each IDLE session also check its folder that often, for a
	// Store whose Watch does not signal the changes other processes make. 0, the default,
	// relies on Watch alone: the SQLite store signals its own changes at once and finds
	// other processes' with one query for all watched folders (mailbox.Options.WatchPoll).
	IdlePoll time.Duration
	// HandshakeTimeout bounds the implicit TLS handshake of ServeTLS, from accept (default
	// 10 s): a connection that sends no ClientHello is closed then.
	HandshakeTimeout time.Duration
	// LoginTimeout bounds the time from accept to a successful login (default 60 s),
	// whatever the client sends meanwhile. go-imap also closes a connection that is silent for
	// 30 s before login.
	LoginTimeout time.Duration
	// IdleTimeout is the autologout timer after login (default 30 min, the minimum of
	// RFC 9051 §5.4): a session whose client sends nothing for that long is closed. Every
	// command re-arms it, IDLE included, so a client that re-issues IDLE within it stays
	// (RFC 2177 asks clients to do so every 29 min). go-imap closes a session silent for
	// 35 min whatever this says.
	IdleTimeout time.Duration
	// MaxConns bounds the simultaneous connections of the server, all listeners together
	// (default 1000); MaxConnsPerAddr those from one IP address (default 100: the users of a
	// structure often share one address, and a mail client opens several connections).
	// Beyond, a connection is closed at accept (with a BYE on a clear-text listener).
	MaxConns, MaxConnsPerAddr int
	// ConnShare, when set, counts MaxConnsPerAddr over the nodes of a cluster
	// (transport.ConnLimits.Share; transport/connshare).
	ConnShare transport.ConnShare
	// NoPasswords refuses LOGIN and AUTHENTICATE PLAIN, and does not offer PLAIN: BALs log in
	// with a client certificate (APP) or a Pro Santé Connect token (PER, ORG).
	NoPasswords bool
	// InsecureAuth allows PLAIN/LOGIN without TLS. Only for loopback test tools that cannot
	// speak TLS; never in production.
	InsecureAuth bool
	// AuthLimiter brakes password guessing (LOGIN, AUTHENTICATE PLAIN): delays, refusals and
	// the connection closed with BYE after a few failures. Share one with the submission
	// listeners so that failures count on both; nil uses authlimit.New(nil), which audits
	// nothing.
	AuthLimiter *authlimit.Limiter
	// OAuth, when set, offers SASL XOAUTH2 and OAUTHBEARER over TLS: a Pro Santé Connect
	// token opens the BAL its holder names (see psc.Authenticator for the session's end).
	OAuth *psc.Authenticator
	// Audit receives a record per token login, naming the person (nil: none).
	Audit *audit.Log
	// Logger receives connection errors (no message content); nil discards them.
	Logger *slog.Logger
	// DebugWriter receives the raw protocol, credentials included. Debugging only.
	DebugWriter io.Writer
}

// Server serves the BALs of a Store over IMAP.
type Server struct {
	opts    Options
	imap    *imapserver.Server
	limiter *transport.ConnLimiter

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closed    bool
	active    int
	idle      chan struct{} // closed when active drops to 0 during Shutdown
	ctx       context.Context
	cancel    context.CancelFunc // cancels every session's store calls on Close
}

// Caps are the capabilities the server announces (IDLE, UNSELECT, ENABLE, SASL-IR and
// LITERAL- are added by imapserver).
var caps = imap.CapSet{
	imap.CapIMAP4rev1:   {},
	imap.CapUIDPlus:     {},
	imap.CapMove:        {},
	imap.CapNamespace:   {},
	imap.CapChildren:    {},
	imap.CapLiteralPlus: {},
}

// New returns a Server.
func New(opts *Options) (*Server, error) {
	if opts == nil || opts.Store == nil {
		return nil, fmt.Errorf("imapd: Options.Store is required")
	}
	s := &Server{opts: *opts, listeners: make(map[net.Listener]struct{})}
	o := &s.opts
	o.HandshakeTimeout = cmp.Or(o.HandshakeTimeout, 10*time.Second)
	o.LoginTimeout = cmp.Or(o.LoginTimeout, time.Minute)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, 30*time.Minute)
	o.MaxConns = cmp.Or(o.MaxConns, 1000)
	o.MaxConnsPerAddr = cmp.Or(o.MaxConnsPerAddr, 100)
	s.limiter = transport.NewConnLimiter(transport.ConnLimits{MaxConns: o.MaxConns, MaxConnsPerAddr: o.MaxConnsPerAddr,
		Share: o.ConnShare, HandshakeTimeout: o.HandshakeTimeout})
	if s.opts.AuthLimiter == nil {
		s.opts.AuthLimiter = authlimit.New(nil)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.opts.TLSConfig != nil {
		s.opts.TLSConfig = s.opts.TLSConfig.Clone()
		if s.opts.TLSConfig.MinVersion < tls.VersionTLS12 {
			s.opts.TLSConfig.MinVersion = tls.VersionTLS12
		}
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         caps,
		Logger:       slogAdapter{s.logger()},
		TLSConfig:    s.opts.TLSConfig,
		InsecureAuth: s.opts.InsecureAuth,
		DebugWriter:  s.opts.DebugWriter,
	})
	return s, nil
}

func (s *Server) logger() *slog.Logger {
	if s.opts.Logger != nil {
		return s.opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, args ...any) {
	a.l.Warn("imapd: " + fmt.Sprintf(format, args...))
}

// Serve accepts plain connections on l, which may upgrade with STARTTLS (port 143).
func (s *Server) Serve(l net.Listener) error {
	return s.serve(s.limiter.Listener(l, func(c net.Conn) {
		io.WriteString(c, "* BYE Too many connections, try again later\r\n")
	}))
}

func (s *Server) serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	err := s.imap.Serve(l)
	s.mu.Lock()
	delete(s.listeners, l)
	closed := s.closed
	s.mu.Unlock()
	if closed || err == nil {
		return ErrServerClosed
	}
	return fmt.Errorf("imapd: %w", err)
}

// ServeTLS accepts implicit-TLS connections on l (port 993), with Options.TLSConfig.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return fmt.Errorf("imapd: ServeTLS needs Options.TLSConfig")
	}
	// The caps count from accept, below TLS: a connection that never completes its handshake
	// takes a place until the handshake deadline.
	return s.serve(tls.NewListener(s.limiter.Listener(l, nil), s.opts.TLSConfig))
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.imap.Close()
	return nil
}

// Shutdown stops accepting connections, waits until the open sessions end or ctx is done,
// then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	done := make(chan struct{})
	if s.active == 0 {
		close(done)
	} else {
		s.idle = done
	}
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.cancel()
	s.imap.Close()
	return ctx.Err()
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	// imapserver calls newSession on the connection's goroutine, before the greeting, whose
	// write would run the implicit TLS handshake: run it here, within the handshake deadline.
	nc := c.NetConn()
	listener := "imap"
	if tc, ok := nc.(*tls.Conn); ok {
		listener = "imaps"
		if err := tc.HandshakeContext(s.ctx); err != nil {
			return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "TLS handshake failed"}
		}
		nc = tc.NetConn()
	}
	lc, _ := nc.(*transport.LimitedConn)
	if lc != nil {
		lc.EndHandshake()
		lc.SetPhaseDeadline(lc.Accepted().Add(s.opts.LoginTimeout))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	s.active++
	s.mu.Unlock()
	sctx, cancel := context.WithCancel(s.ctx)
	peer := c.NetConn().RemoteAddr().String()
	return &session{srv: s, conn: c, ctx: sctx, cancel: cancel, lc: lc, listener: listener, peer: peer,
		auth: s.opts.AuthLimiter.Conn("imap", peer)}, nil, nil
}

func (s *Server) sessionClosed() {
	s.mu.Lock()
	s.active--
	if s.active == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

func (s *Server) peerDN(c *x509.Certificate) string {
	if s.opts.PeerDN != nil {
		return s.opts.PeerDN(c)
	}
	return transport.SubjectDN(c)
}

func (s *Server) verifyPeer(st tls.ConnectionState) error {
	if s.opts.VerifyPeer != nil {
		return s.opts.VerifyPeer(st)
	}
	if len(st.PeerCertificates) == 0 || len(st.VerifiedChains) == 0 {
		return errors.New("imapd: no verified client certificate")
	}
	return nil
}
