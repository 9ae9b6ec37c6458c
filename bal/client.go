package bal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mssante-go/sdk/internal/statelock"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/transport"
	"github.com/mssante-go/sdk/transport/psc"
	"github.com/mssante-go/sdk/whitelist"
)

// Security says how a connection to an endpoint is protected. Both modes end in TLS: there is
// no plaintext mode.
type Security int

const (
	// StartTLS connects in clear and upgrades with STARTTLS before anything else is said
	// (submission on 587, IMAP on 143: Réf. #2 ECO.1.0.1 and ECO.1.0.2, Ségur REM
	// SC.MSS/CONF.05 and CONF.06). It is the default.
	StartTLS Security = iota
	// ImplicitTLS starts TLS at once (465 for submission, 993 for IMAP).
	ImplicitTLS
)

// Endpoint is a server the client connects to.
type Endpoint struct {
	// Addr is host:port.
	Addr string
	// Security is StartTLS (default) or ImplicitTLS.
	Security Security
	// Auth overrides Options.Auth for this server (for example AuthNone for a submission
	// server that authorises on the certificate alone, EXTERNAL for IMAP).
	Auth AuthMechanism
}

// AuthMechanism names the SASL step that follows the TLS handshake. The ANS texts do not say
// which one an operator expects from a BAL applicative: all are supported, EXTERNAL by default.
type AuthMechanism string

const (
	// AuthExternal authenticates with the TLS client certificate (SASL EXTERNAL). Default.
	AuthExternal AuthMechanism = "EXTERNAL"
	// AuthPlain sends Options.Username and Options.Password (SASL PLAIN), inside TLS.
	AuthPlain AuthMechanism = "PLAIN"
	// AuthXOAUTH2 sends a Pro Santé Connect access token from Options.TokenSource (SASL XOAUTH2,
	// Réf. #2 ECO.1.2.1, Ségur REM SC.MSS/CONF.07). The token is asked for on every connection
	// and never stored.
	AuthXOAUTH2 AuthMechanism = "XOAUTH2"
	// AuthOAUTHBEARER sends the same token with SASL OAUTHBEARER (RFC 7628), the standard
	// form of XOAUTH2.
	AuthOAUTHBEARER AuthMechanism = "OAUTHBEARER"
	// AuthNone skips the SASL step: the server authorises on the client certificate alone
	// (Postfix with permit_tls_all_clientcerts, for example). For IMAP, where a login is
	// mandatory, it is refused.
	AuthNone AuthMechanism = "NONE"
)

// TokenSource returns a fresh OAuth2 access token for XOAUTH2 and OAUTHBEARER; it is asked on
// every connection and the token is never stored. psc.TokenSource.Token is one: it renews the
// token with the refresh token (Ségur REM SC.MSS/CONF.11). An error that wraps
// psc.ErrSessionEnded or ErrAuth (the Pro Santé Connect session is over, SC.MSS/CONF.10) ends
// Send and Watch with ErrAuth; any other is temporary, and they try again after a backoff.
type TokenSource func(ctx context.Context) (string, error)

// Resolver looks up DNS SRV records; *net.Resolver implements it. Tests inject their own.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Options configures a Client. The struct is copied by New; zero fields take the documented
// defaults.
type Options struct {
	// Address is the BAL's own address (the MAIL FROM of what it sends, and the address of
	// the mailbox it reads). Required.
	Address string

	// Submission and IMAP are the operator's servers. When one is empty, it is discovered
	// with DNS SRV records (RFC 6186) under Domain, see Discover.
	Submission, IMAP Endpoint
	// Domain is where SRV discovery looks; default: the domain of Address. The ANS texts do
	// not name the records of the API LPS: the RFC 6186 ones are used.
	Domain string
	// Resolver is used for SRV discovery; default net.DefaultResolver.
	Resolver Resolver

	// TLS is the BAL's IGC-Santé client certificate (Certificates: an ORG AUTH_CLI
	// certificate, see transport.PKCS12Certificate for a .p12) and the trust store the
	// operator's server certificate is verified against, with its expiry and revocation
	// (Réf. #2 ECO.1.1.5, 1.1.6, 1.1.10). A nil Trust is transport.NewTrustStore(nil): the
	// IGC-Santé root, CRLs required (fail closed). A nil Time is Options.Now.
	TLS transport.TLSOptions

	// Auth is the SASL mechanism; default AuthExternal.
	Auth AuthMechanism
	// Username and Password are used by AuthPlain; Username also by AuthXOAUTH2 (default:
	// Address) and as the EXTERNAL authorization identity when set.
	Username, Password string
	// TokenSource gives the XOAUTH2 access token.
	TokenSource TokenSource

	// Whitelist is the policy every recipient domain is checked against before any I/O.
	// Required for Send: without it nothing is sent (fail closed).
	Whitelist whitelist.Policy

	// StateDir holds the outbox, the receive checkpoint, the handled-message journal and the
	// spool of large messages. Required for Send and Watch.
	StateDir string

	// Mailbox is the IMAP folder watched; default "INBOX".
	Mailbox string
	// ProcessedMailbox, when set, is where handled messages are moved; otherwise they stay
	// and are marked with FlagHandled.
	ProcessedMailbox string
	// PollInterval is how often the mailbox is checked when the server has no IDLE, and the
	// longest an IDLE lasts before a check; default 1 minute.
	PollInterval time.Duration
	// SpoolThreshold is the size above which a message, sent or received, is kept in a file
	// of StateDir and not in memory; default 1 MiB. MaxMessageSize (default 64 MiB) is the
	// largest message sent or received.
	SpoolThreshold, MaxMessageSize int64

	// ReportingUA names this software in the MDNs it sends (RFC 8098 Reporting-UA).
	ReportingUA string
	// NIL is the X-MSS-NIL product reference (Réf. #2 ECO.2.4.3, required on every mail): put
	// on the messages Send writes when they have none, and on MDNs and error mails. New
	// refuses one that is not a single ASCII token; it does not require it, so that a program
	// may give it per message (mssante.Message.NIL), but Send and SendBatch refuse a message
	// that has none from either before any I/O (ErrConfig), and Watch needs it to answer.
	NIL string

	// MinBackoff and MaxBackoff bound the delay between reconnections (doubled on each
	// failure, with jitter); defaults 500 ms and 1 minute.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds a TCP connect and TLS handshake, and the wait for the greeting
	// of a StartTLS server; default 30 s.
	DialTimeout time.Duration

	// Logger receives operational events (message IDs, mailbox addresses, never content);
	// nil discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Client is an applicative BAL (BAL applicative) of a DPI: it sends through the operator's
// submission server and receives from its IMAP server. It is safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger

	// discoverMu guards the endpoints that Discover fills.
	discoverMu sync.Mutex

	box    *outbox
	unlock func() // releases StateDir, nil once closed

	// sessions counts the IMAP sessions opened (for tests and metrics).
	sessions atomic.Int64

	// smtpMu serialises use of the kept-alive submission connection.
	smtpMu sync.Mutex
	smtp   *smtpConn
}

// validNIL reports whether nil is what mssante.Message accepts as X-MSS-NIL, so that a wrong
// one is said when the client is made rather than at the first message.
func validNIL(nil_ string) bool { return mssante.CheckNIL(nil_) == nil }

// New checks opts and returns a Client. It does no network I/O; with a StateDir, it takes
// that folder for this Client (ErrStateInUse when another holds it, naming the process)
// and opens its outbox. Close releases the folder.
func New(opts *Options) (*Client, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: nil options", ErrConfig)
	}
	o := *opts
	if _, _, ok := splitAddress(o.Address); !ok {
		return nil, fmt.Errorf("%w: Address %q is not an e-mail address", ErrConfig, o.Address)
	}
	if o.NIL != "" && !validNIL(o.NIL) {
		return nil, fmt.Errorf("%w: NIL %q: X-MSS-NIL is one ASCII token, without space, comma or semicolon", ErrConfig, o.NIL)
	}
	if o.Auth == "" {
		o.Auth = AuthExternal
	}
	if len(o.TLS.Certificates) == 0 && (o.Auth == AuthExternal || o.Submission.Auth == AuthExternal || o.IMAP.Auth == AuthExternal) {
		return nil, fmt.Errorf("%w: SASL EXTERNAL needs the BAL's client certificate (TLS.Certificates)", ErrConfig)
	}
	for _, m := range []AuthMechanism{o.Auth, o.Submission.Auth, o.IMAP.Auth} {
		switch m {
		case "", AuthExternal, AuthNone:
		case AuthPlain:
			if o.Username == "" || o.Password == "" {
				return nil, fmt.Errorf("%w: AuthPlain needs Username and Password", ErrConfig)
			}
		case AuthXOAUTH2, AuthOAUTHBEARER:
			if o.TokenSource == nil {
				return nil, fmt.Errorf("%w: Auth%s needs a TokenSource", ErrConfig, m)
			}
		default:
			return nil, fmt.Errorf("%w: unknown Auth %q", ErrConfig, m)
		}
	}
	if o.Domain == "" {
		_, o.Domain, _ = splitAddress(o.Address)
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Mailbox == "" {
		o.Mailbox = "INBOX"
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Minute
	}
	if o.SpoolThreshold <= 0 {
		o.SpoolThreshold = 1 << 20
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 64 << 20
	}
	if o.ReportingUA == "" {
		o.ReportingUA = "mssante-go"
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TLS.Time == nil {
		o.TLS.Time = o.Now
	}
	c := &Client{opts: o, log: o.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if o.StateDir != "" {
		unlock, err := lockState(o.StateDir)
		if err != nil {
			return nil, err
		}
		box, err := openOutbox(o.StateDir)
		if err != nil {
			unlock()
			return nil, err
		}
		c.box, c.unlock = box, unlock
	}
	return c, nil
}

// Close closes the kept-alive submission connection, if any, waits for a background fold of
// the outbox journal and fsyncs the journal (the next New folds it, in the background).
func (c *Client) Close() error {
	c.smtpMu.Lock()
	defer c.smtpMu.Unlock()
	if c.smtp != nil {
		c.smtp.close()
		c.smtp = nil
	}
	if c.unlock == nil {
		return nil
	}
	// The journal is durable before another process may open the folder.
	err := c.box.close()
	c.unlock()
	c.unlock = nil
	return err
}

// stateLockName is the lock file of a state folder; it holds the holder's PID.
const stateLockName = "bal.lock"

// lockState gives dir to this Client alone. Two processes on one state folder would append
// to one outbox journal and fold it under each other, and each watcher would take the
// receipts of the other's messages: an flock(2), which the kernel drops however the process
// ends, refuses the second at once instead.
func lockState(dir string) (unlock func(), err error) {
	unlock, err = statelock.Lock(dir, stateLockName)
	var le *statelock.LockedError
	switch {
	case errors.As(err, &le) && le.PID > 0:
		return nil, fmt.Errorf("%w: %s is in use by process %d (one Client per state folder: give each process its own)", ErrStateInUse, dir, le.PID)
	case errors.As(err, &le):
		return nil, fmt.Errorf("%w: %s is in use by another process (one Client per state folder: give each process its own)", ErrStateInUse, dir)
	case err != nil:
		return nil, fmt.Errorf("bal: state folder: %w", err)
	}
	return unlock, nil
}

// Discover fills the submission and IMAP endpoints left empty in Options from DNS SRV
// records under Options.Domain (RFC 6186 §3: _submission._tcp for STARTTLS submission,
// _imaps._tcp preferred over _imap._tcp). Send and Watch each look up only the endpoint they
// use, so a client that only sends needs no IMAP server; once an endpoint is found it is kept.
func (c *Client) Discover(ctx context.Context) error {
	if err := c.discoverSubmission(ctx); err != nil {
		return err
	}
	return c.discoverIMAP(ctx)
}

// discoverSubmission fills Options.Submission from DNS when it is empty.
func (c *Client) discoverSubmission(ctx context.Context) error {
	c.discoverMu.Lock()
	defer c.discoverMu.Unlock()
	if c.opts.Submission.Addr != "" {
		return nil
	}
	addr, err := c.lookupSRV(ctx, "submission")
	if err != nil {
		return err // tried again on the next call
	}
	c.opts.Submission.Addr, c.opts.Submission.Security = addr, StartTLS
	return nil
}

// discoverIMAP fills Options.IMAP from DNS when it is empty.
func (c *Client) discoverIMAP(ctx context.Context) error {
	c.discoverMu.Lock()
	defer c.discoverMu.Unlock()
	if c.opts.IMAP.Addr != "" {
		return nil
	}
	if addr, err := c.lookupSRV(ctx, "imaps"); err == nil {
		c.opts.IMAP.Addr, c.opts.IMAP.Security = addr, ImplicitTLS
	} else if addr, err2 := c.lookupSRV(ctx, "imap"); err2 == nil {
		c.opts.IMAP.Addr, c.opts.IMAP.Security = addr, StartTLS
	} else {
		return errors.Join(err, err2)
	}
	return nil
}

// lookupSRV returns host:port of the best SRV target (the resolver sorts by priority and
// weight). RFC 6186 §4: a target of "." means the service is not offered.
func (c *Client) lookupSRV(ctx context.Context, service string) (string, error) {
	_, srvs, err := c.opts.Resolver.LookupSRV(ctx, service, "tcp", c.opts.Domain)
	if err != nil {
		return "", fmt.Errorf("%w: _%s._tcp.%s: %w", ErrDiscovery, service, c.opts.Domain, err)
	}
	for _, s := range srvs {
		host := strings.TrimSuffix(s.Target, ".")
		if host == "" || s.Port == 0 {
			continue
		}
		return net.JoinHostPort(host, strconv.Itoa(int(s.Port))), nil
	}
	return "", fmt.Errorf("%w: _%s._tcp.%s: service not offered", ErrDiscovery, service, c.opts.Domain)
}

// dial opens a TCP connection to ep, with TLS at once for ImplicitTLS. The caller upgrades
// StartTLS connections. The handshake verifies the server against the configured trust store;
// a server that answers it in clear is reported as a Security that does not fit the port.
func (c *Client) dial(ctx context.Context, ep Endpoint, p protocol) (net.Conn, *tls.Config, error) {
	host, _, err := net.SplitHostPort(ep.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: endpoint %q: %w", ErrConfig, ep.Addr, err)
	}
	cfg, err := transport.ClientConfig(nil, host, &c.opts.TLS)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", ep.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("bal: dial %s: %w", ep.Addr, err)
	}
	if ep.Security == ImplicitTLS {
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			if line := plainAnswer(err); line != "" {
				return nil, nil, tlsModeError(p, ep, line)
			}
			// Trust failures are final; a reset or a timeout is retried.
			return nil, nil, tlsError(fmt.Errorf("bal: TLS with %s: %w", ep.Addr, err))
		}
		return tc, cfg, nil
	}
	return conn, cfg, nil
}

// tlsError wraps err with ErrTLS when it is a certificate or handshake failure (with
// STARTTLS it surfaces at the first command after the upgrade).
func tlsError(err error) error {
	var cve *tls.CertificateVerificationError
	var ae tls.AlertError
	var rhe tls.RecordHeaderError
	var ce *transport.CertError
	if errors.As(err, &cve) || errors.As(err, &ae) || errors.As(err, &rhe) || errors.As(err, &ce) {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	return err
}

// watchCtx makes the end of ctx cancel the blocking I/O on conn by closing it (go-smtp and
// go-imap reset deadlines on every command, so a deadline would not stick); the returned
// stop must be called.
func watchCtx(ctx context.Context, conn net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { conn.Close() })
}

// saslClient returns the SASL client for the configured mechanism.
func (c *Client) saslClient(ctx context.Context, mech AuthMechanism) (sasl.Client, error) {
	switch mech {
	case AuthExternal:
		return sasl.NewExternalClient(c.opts.Username), nil
	case AuthPlain:
		return sasl.NewPlainClient("", c.opts.Username, c.opts.Password), nil
	case AuthXOAUTH2, AuthOAUTHBEARER:
		tok, err := c.opts.TokenSource(ctx)
		if errors.Is(err, psc.ErrSessionEnded) || errors.Is(err, ErrAuth) {
			return nil, fmt.Errorf("%w: token source: %w", ErrAuth, err)
		}
		if err != nil {
			return nil, fmt.Errorf("bal: token source: %w", err)
		}
		user := c.opts.Username
		if user == "" {
			user = c.opts.Address
		}
		if mech == AuthOAUTHBEARER {
			return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: tok}), nil
		}
		return &xoauth2Client{user: user, token: tok}, nil
	}
	return nil, fmt.Errorf("%w: no SASL client for %q", ErrConfig, mech)
}

// auth returns the mechanism used with ep.
func (c *Client) auth(ep Endpoint) AuthMechanism {
	if ep.Auth != "" {
		return ep.Auth
	}
	return c.opts.Auth
}

// xoauth2Client is the client side of SASL XOAUTH2 (Google's and Microsoft's format, the one
// Pro Santé Connect operators accept): "user=U^Aauth=Bearer T^A^A" as the initial response.
type xoauth2Client struct{ user, token string }

func (x *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next answers the server's error challenge (a JSON status) with an empty response, as the
// mechanism requires; the server then fails the exchange.
func (x *xoauth2Client) Next([]byte) ([]byte, error) { return []byte{}, nil }

// backoff returns the delay before reconnection attempt n (0-based): exponential between
// MinBackoff and MaxBackoff, with "equal jitter" so that many clients restarted together
// spread out.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.MinBackoff << min(n, 20)
	if d <= 0 || d > c.opts.MaxBackoff {
		d = c.opts.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// splitAddress splits local@domain, lower-casing the domain.
func splitAddress(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 || strings.ContainsAny(addr, " \t\r\n<>") {
		return "", "", false
	}
	return addr[:i], strings.ToLower(addr[i+1:]), true
}
