package transport

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ConnLimits bound what a [ConnLimiter] accepts: how many connections, from where, and for
// how long. Zero fields set no bound.
//
// A server on the Internet must bound all of these, not only the gap between two bytes: a peer
// that sends one byte at a time, or nothing at all (a TCP connection that never sends its TLS
// ClientHello), otherwise holds a file descriptor for as long as it likes, and a few hundred such
// peers exhaust the process.
type ConnLimits struct {
	// MaxConns bounds the simultaneous connections of all the listeners of the limiter.
	MaxConns int
	// MaxConnsPerAddr bounds the simultaneous connections from one IP address: on this
	// node, and with Share on the other nodes of a cluster too.
	MaxConnsPerAddr int
	// Share, when set, tells the limiter the connections that the other nodes of a cluster
	// hold from an address, and them ours (transport/connshare keeps them in PostgreSQL).
	Share ConnShare
	// HandshakeTimeout bounds the time from accept until the server calls
	// [LimitedConn.EndHandshake] (the end of an implicit TLS handshake): every read and write
	// before it ends at this deadline.
	HandshakeTimeout time.Duration
	// SessionTimeout bounds the whole connection, from accept.
	SessionTimeout time.Duration
	// IdleTimeout bounds each wait for the peer's next bytes, re-armed by every read;
	// [LimitedConn.SetIdleTimeout] changes it for one connection (after a login, say).
	IdleTimeout time.Duration
}

// ConnShare counts one group of listeners' connections across the nodes of a cluster: each
// node counts its own, publishes them, and adds those of the others to its own when it checks
// MaxConnsPerAddr. Its methods are called on every accept and close, under the limiter's
// lock: they must answer from memory, never wait for the network.
type ConnShare interface {
	// Others returns the connections from addr open on the other live nodes, as last known.
	Others(addr string) int
	// Set records that this node now holds n connections from addr (0: none).
	Set(addr string, n int)
}

// ConnLimiter enforces [ConnLimits] on the listeners of one server: the caps count the
// connections of all of them together (a server's 143 and 993 share one budget of file
// descriptors), and each accepted connection is a [*LimitedConn] that enforces the deadlines.
type ConnLimiter struct {
	lim ConnLimits

	mu      sync.Mutex
	total   int
	perAddr map[string]int
}

// NewConnLimiter returns a limiter of lim.
func NewConnLimiter(lim ConnLimits) *ConnLimiter {
	return &ConnLimiter{lim: lim, perAddr: map[string]int{}}
}

// Listener returns l bounded by the limiter: a connection over a cap is closed at accept,
// after refused (when not nil) has had it, in its own goroutine, for at most 5 s; a server
// answers there (SMTP 421, IMAP BYE) when its protocol starts in clear text. Accept returns
// *LimitedConn connections.
func (cl *ConnLimiter) Listener(l net.Listener, refused func(net.Conn)) net.Listener {
	return &limitListener{Listener: l, cl: cl, refused: refused}
}

// Conns returns the number of connections open (accepted and not yet closed).
func (cl *ConnLimiter) Conns() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.total
}

func (cl *ConnLimiter) acquire(addr string) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	n := cl.perAddr[addr]
	if cl.lim.Share != nil && cl.lim.MaxConnsPerAddr > 0 {
		n += cl.lim.Share.Others(addr)
	}
	if cl.lim.MaxConns > 0 && cl.total >= cl.lim.MaxConns ||
		cl.lim.MaxConnsPerAddr > 0 && n >= cl.lim.MaxConnsPerAddr {
		return false
	}
	cl.total++
	cl.perAddr[addr]++
	if cl.lim.Share != nil {
		cl.lim.Share.Set(addr, cl.perAddr[addr])
	}
	return true
}

func (cl *ConnLimiter) release(addr string) {
	cl.mu.Lock()
	cl.total--
	n := cl.perAddr[addr] - 1
	if n <= 0 {
		delete(cl.perAddr, addr)
	} else {
		cl.perAddr[addr] = n
	}
	if cl.lim.Share != nil {
		cl.lim.Share.Set(addr, max(n, 0))
	}
	cl.mu.Unlock()
}

type limitListener struct {
	net.Listener
	cl      *ConnLimiter
	refused func(net.Conn)
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr, _, err := net.SplitHostPort(c.RemoteAddr().String())
		if err != nil {
			addr = c.RemoteAddr().String()
		}
		if l.cl.acquire(addr) {
			return newLimitedConn(c, l.cl, addr), nil
		}
		go func() {
			if l.refused != nil {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				l.refused(c)
			}
			c.Close()
		}()
	}
}

// LimitedConn is a connection accepted by a [ConnLimiter]. Its read deadline is the earliest
// of: the end of the handshake phase, the end of the session, now plus the idle timeout (at each
// read), the phase deadline its server sets ([LimitedConn.SetPhaseDeadline], e.g. the end of a
// command line), and the deadline the protocol library sets (SetReadDeadline). So the bounds
// only ever tighten what the protocol library does. Its write deadline is the earliest of the
// handshake, session and library deadlines.
//
// A read that times out leaves the connection timed out: every later read fails at once with
// os.ErrDeadlineExceeded. bufio.Reader.ReadLine returns the bytes of a line cut by a deadline
// without the error, and a server loop that then takes them as a command would arm a new
// deadline and let a slow peer start over; here its next read fails.
type LimitedConn struct {
	net.Conn
	cl       *ConnLimiter
	addr     string
	accepted time.Time
	once     sync.Once
	expired  atomic.Bool

	mu                 sync.Mutex
	handshake, session time.Time // zero: none
	phase              time.Time
	idle               time.Duration
	libRead, libWrite  time.Time // what the protocol library asked for
	read               time.Time // what the socket has
}

func newLimitedConn(c net.Conn, cl *ConnLimiter, addr string) *LimitedConn {
	now := time.Now()
	lc := &LimitedConn{Conn: c, cl: cl, addr: addr, accepted: now, idle: cl.lim.IdleTimeout}
	if d := cl.lim.HandshakeTimeout; d > 0 {
		lc.handshake = now.Add(d)
	}
	if d := cl.lim.SessionTimeout; d > 0 {
		lc.session = now.Add(d)
	}
	lc.mu.Lock()
	lc.applyWrite()
	lc.mu.Unlock()
	return lc
}

// earliest returns the earliest non-zero time of ts, or zero.
func earliest(ts ...time.Time) time.Time {
	var e time.Time
	for _, t := range ts {
		if !t.IsZero() && (e.IsZero() || t.Before(e)) {
			e = t
		}
	}
	return e
}

// Addr returns the peer's IP address, as the per-address cap counts it.
func (c *LimitedConn) Addr() string { return c.addr }

// Accepted returns when the connection was accepted.
func (c *LimitedConn) Accepted() time.Time { return c.accepted }

// EndHandshake ends the handshake phase: HandshakeTimeout no longer applies.
func (c *LimitedConn) EndHandshake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handshake = time.Time{}
	c.applyWrite()
}

// SetIdleTimeout sets the bound of each wait for the peer's bytes (0: none).
func (c *LimitedConn) SetIdleTimeout(d time.Duration) {
	c.mu.Lock()
	c.idle = d
	c.mu.Unlock()
}

// SetPhaseDeadline sets a deadline for the reads of the current unit of the protocol (a command
// line, a message, a login), whatever the gaps between its bytes; the zero time removes it.
func (c *LimitedConn) SetPhaseDeadline(t time.Time) {
	c.mu.Lock()
	c.phase = t
	c.mu.Unlock()
}

// Read reads with the earliest deadline in force (see [LimitedConn]).
func (c *LimitedConn) Read(p []byte) (int, error) {
	if c.expired.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	c.mu.Lock()
	err := c.applyRead()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.expired.Store(true)
	}
	return n, err
}

// SetReadDeadline sets the protocol library's read deadline, bounded as [LimitedConn] says.
func (c *LimitedConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.libRead = t
	return c.applyRead()
}

// SetWriteDeadline sets the write deadline, bounded by the handshake and session ones.
func (c *LimitedConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.libWrite = t
	return c.applyWrite()
}

// SetDeadline sets both deadlines.
func (c *LimitedConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// applyRead sets the socket's read deadline; the caller holds c.mu.
func (c *LimitedConn) applyRead() error {
	d := earliest(c.handshake, c.session, c.phase, c.libRead)
	if c.idle > 0 {
		d = earliest(d, time.Now().Add(c.idle))
	}
	if d.Equal(c.read) {
		return nil
	}
	c.read = d
	return c.Conn.SetReadDeadline(d)
}

// applyWrite sets the socket's write deadline; the caller holds c.mu.
func (c *LimitedConn) applyWrite() error {
	return c.Conn.SetWriteDeadline(earliest(c.handshake, c.session, c.libWrite))
}

// Close closes the connection and frees its place in the caps, once.
func (c *LimitedConn) Close() error {
	c.once.Do(func() { c.cl.release(c.addr) })
	return c.Conn.Close()
}
