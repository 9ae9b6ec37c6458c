package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/mssante-go/sdk/transport"
)

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("httpapi: server closed")

// ServerOptions configure NewServer.
type ServerOptions struct {
	// TLS is the server's IGC-Santé certificate and the trust store client certificates are
	// verified against, as for submission (transport.ServerConfig): TLS 1.2 minimum, a client
	// certificate is asked for; OptionalClientCert is set so that a bearer token may stand in
	// for it (the Handler's Auth decides).
	TLS transport.TLSOptions
	// GetCertificate, when set, supplies the server certificate instead of TLS.Certificates
	// (hot swap of a renewed certificate).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound each connection;
	// defaults 10 s, 2 min, 3 min, 2 min. MaxHeaderBytes defaults to 64 KiB.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// Logger receives the server's errors (TLS handshakes refused); nil discards.
	Logger *slog.Logger
}

// Server serves a Handler over TLS.
type Server struct {
	srv *http.Server
}

// NewServer returns a Server for h.
func NewServer(h http.Handler, opts *ServerOptions) (*Server, error) {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	o.TLS.OptionalClientCert = true
	cfg, err := transport.ServerConfig(&tls.Config{NextProtos: []string{"h2", "http/1.1"}, GetCertificate: o.GetCertificate}, &o.TLS)
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, 10*time.Second)
	def(&o.ReadTimeout, 2*time.Minute)
	def(&o.WriteTimeout, 3*time.Minute)
	def(&o.IdleTimeout, 2*time.Minute)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{srv: &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, IdleTimeout: o.IdleTimeout,
		MaxHeaderBytes: o.MaxHeaderBytes, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}, nil
}

// Serve accepts TLS connections on l until Close or Shutdown; it returns ErrServerClosed then.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(tls.NewListener(l, s.srv.TLSConfig))
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// Close closes the listeners and connections at once.
func (s *Server) Close() error { return s.srv.Close() }

// Shutdown stops accepting and waits for the requests in progress, until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
