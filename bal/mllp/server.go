package mllp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Handler answers one message. It returns the reply to frame back (the ACK); an error closes
// the connection without a reply, so that the sender resends later: a handler returns an
// error only when it could neither take the message in charge nor refuse it.
type Handler func(ctx context.Context, msg []byte) ([]byte, error)

// Options configure a Server. Zero fields take the defaults.
type Options struct {
	Handler Handler // required
	// IdleTimeout bounds the wait for the next message on a connection (default 5 minutes);
	// ReadTimeout bounds the reading of one message once it started (default 1 minute);
	// WriteTimeout bounds the writing of a reply (default 30 s).
	IdleTimeout, ReadTimeout, WriteTimeout time.Duration
	// MaxMessageBytes caps one message (default 32 MiB): the IG's documents are CDA with an
	// embedded PDF, in base64.
	MaxMessageBytes int
	// Oversize, when set, answers a message longer than MaxMessageBytes: it gets the first
	// MaxMessageBytes of it (enough for its MSH) once the rest has been read and discarded
	// (at most 16 times MaxMessageBytes or 256 MiB, within ReadTimeout), and returns the reply (an AE)
	// so that the sender does not resend it for ever. When nil, the connection is closed.
	Oversize Handler
	// MaxConns caps the connections served at once (default 64); more wait in the backlog.
	MaxConns int
	Logger   *slog.Logger
}

// Server is an MLLP listener: one goroutine per connection, one message at a time on each.
type Server struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]bool // true while a message is being handled
	wg        sync.WaitGroup
}

// NewServer checks the options and returns a server ready to Serve.
func NewServer(opts *Options) (*Server, error) {
	if opts == nil || opts.Handler == nil {
		return nil, errors.New("mllp: Options.Handler is required")
	}
	o := *opts
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 32 << 20
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 64
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{opts: o, log: log, ctx: ctx, cancel: cancel, sem: make(chan struct{}, o.MaxConns),
		listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]bool{}}, nil
}

// Serve accepts connections on l until Close or Shutdown; it then returns ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	backoff := 5 * time.Millisecond
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			return ErrServerClosed
		}
		c, err := l.Accept()
		if err != nil {
			<-s.sem
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.sem
			return ErrServerClosed
		}
		s.conns[c] = false
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) setBusy(c net.Conn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed && !busy {
		return false
	}
	s.conns[c] = busy
	return !s.closed || busy
}

func (s *Server) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		<-s.sem
		s.wg.Done()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		if _, err := r.Peek(1); err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(s.opts.ReadTimeout))
		var discard int64
		if s.opts.Oversize != nil {
			discard = max(16*int64(s.opts.MaxMessageBytes), 256<<20)
		}
		msg, err := readFrame(r, s.opts.MaxMessageBytes, discard)
		handler := s.opts.Handler
		if errors.Is(err, ErrTooLarge) && msg != nil && discard > 0 {
			s.log.Warn("mllp: message too large", "remote", c.RemoteAddr().String(), "limit", s.opts.MaxMessageBytes)
			handler, err = s.opts.Oversize, nil
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Warn("mllp: connection dropped", "remote", c.RemoteAddr().String(), "err", err)
			}
			return
		}
		if !s.setBusy(c, true) {
			return
		}
		reply, err := s.handle(handler, msg)
		if err != nil {
			s.log.Warn("mllp: message not acknowledged", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		c.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		if err := WriteFrame(c, reply); err != nil {
			s.log.Warn("mllp: reply not written", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		if !s.setBusy(c, false) {
			return
		}
	}
}

func (s *Server) handle(h Handler, msg []byte) (reply []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("mllp: handler panic: %v", p)
		}
	}()
	return h(s.ctx, msg)
}

// Close stops the listeners and closes every connection at once, cancelling handlers.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Shutdown stops the listeners, closes idle connections and waits for the messages being
// handled to be answered, or for ctx; then it closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c, busy := range s.conns {
		if !busy {
			c.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}
