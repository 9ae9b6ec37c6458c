package transport

import (
	"context"
	"crypto/tls"
	"net"
)

// Dialer opens mutual-TLS connections to MSSanté servers (implicit TLS) or upgrades connections
// after STARTTLS, with the configuration of ClientConfig. The zero value uses the IGC-Santé
// root, TLS 1.2 and no client certificate.
type Dialer struct {
	// Options configure the TLS client (trust store, client certificate, clock, …).
	Options TLSOptions
	// Config is the base configuration cloned for each connection; nil = empty.
	Config *tls.Config
	// NetDialer dials the TCP connection; nil = a zero net.Dialer.
	NetDialer *net.Dialer
}

// DialContext connects to addr ("host:port") and performs the TLS handshake, verifying the
// server's certificate for host. Cancelling ctx aborts both the connect and a stuck handshake:
// the connection is closed and the context's error returned. Certificate refusals are
// *CertError values (see ClassifyError).
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errorf("dial %s: %w", addr, err)
	}
	nd := d.NetDialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	conn, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, errorf("dial %s: %w", addr, err)
	}
	tc, err := d.Client(ctx, conn, host)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// Client runs the client side of the TLS handshake on conn (for example after an SMTP or IMAP
// STARTTLS) towards serverName. On failure conn is closed. Cancelling ctx aborts the handshake.
func (d *Dialer) Client(ctx context.Context, conn net.Conn, serverName string) (*tls.Conn, error) {
	o := d.Options.defaults()
	cfg, err := ClientConfig(d.Config, serverName, &o)
	if err != nil {
		conn.Close()
		return nil, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		tc.Close()
		if ctx.Err() != nil {
			return nil, errorf("TLS handshake with %s: %w", serverName, ctx.Err())
		}
		return nil, errorf("TLS handshake with %s: %w", serverName, o.Trust.ClassifyError(err, o.Time()))
	}
	return tc, nil
}

// Server runs the server side of the TLS handshake on conn with cfg (from ServerConfig).
// Cancelling ctx aborts a stuck handshake. On failure conn is closed and the error (typed by
// ServerConfig's checks) returned.
func Server(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	tc := tls.Server(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		tc.Close()
		if ctx.Err() != nil {
			return nil, errorf("TLS handshake: %w", ctx.Err())
		}
		return nil, errorf("TLS handshake: %w", err)
	}
	return tc, nil
}
