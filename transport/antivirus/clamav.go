// Package antivirus scans mail content before it is accepted: the [Scanner] the connector's
// SMTP servers call after TLS termination, between DATA and queueing, and [ClamAV], a Scanner
// speaking the clamd protocol (clamd(8), docs/references.md: zINSTREAM, zPING) over a Unix or
// TCP socket.
//
// A scanner never passes a message it could not check: an error that is not a [VirusError]
// wraps [ErrScanner], and the server answers it with a temporary failure (451 4.7.1), or a
// permanent one with connector.ServerOptions.ScanUnavailablePermanent.
//
// The public ANS texts do not say whether or how an operator scans mail. Scanning is optional:
// the servers scan when connector.ServerOptions.Scanner is set, which transport/node does from
// the clamd setting of its [scanner] table.
//
// Start with [ClamAV]: fill Network and Addr and set it as the servers' Scanner;
// [ClamAV.Ping] checks that clamd answers.
package antivirus

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Scanner checks a message after TLS termination, between DATA and queueing. Scan returns
// nil for a clean message, a *VirusError for a detected one (554 5.7.1), any other error when
// it could not tell (451 4.7.1 by default: never a silent pass).
type Scanner interface {
	Scan(ctx context.Context, msg io.Reader) error
}

// VirusError reports content the scanner detected.
type VirusError struct {
	Signature string
}

func (e *VirusError) Error() string { return "antivirus: content detected: " + e.Signature }

// ErrScanner is wrapped by the errors of a scanner that did not give a verdict.
var ErrScanner = errors.New("antivirus: scanner unavailable")

// ClamAV is a Scanner speaking the clamd protocol (INSTREAM, clamd(8) "zINSTREAM") over a Unix
// or TCP socket.
type ClamAV struct {
	// Network is "unix" or "tcp"; Addr the socket path or host:port.
	Network, Addr string
	// Timeout bounds one scan (default 30 s).
	Timeout time.Duration
	// ChunkSize is the size of INSTREAM chunks (default 64 KiB; clamd's StreamMaxLength
	// still bounds the whole stream).
	ChunkSize int
}

// dial connects to clamd, with the deadline of ctx on the connection.
func (c *ClamAV) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.Network, c.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScanner, err)
	}
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	return conn, nil
}

// Scan implements Scanner.
func (c *ClamAV) Scan(ctx context.Context, msg io.Reader) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := c.stream(conn, msg); err != nil {
		return fmt.Errorf("%w: %w", ErrScanner, err)
	}
	reply, err := bufio.NewReader(io.LimitReader(conn, 4096)).ReadString(0)
	if err != nil && !(err == io.EOF && reply != "") {
		return fmt.Errorf("%w: reading reply: %w", ErrScanner, err)
	}
	return parseClamReply(reply)
}

func (c *ClamAV) stream(conn net.Conn, msg io.Reader) error {
	size := c.ChunkSize
	if size <= 0 {
		size = 64 << 10
	}
	w := bufio.NewWriterSize(conn, size+4)
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return err
	}
	buf := make([]byte, size)
	var hdr [4]byte
	for {
		n, err := io.ReadFull(msg, buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			w.Write(hdr[:])
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	w.Write([]byte{0, 0, 0, 0})
	return w.Flush()
}

// parseClamReply reads "stream: OK", "stream: NAME FOUND" or "... ERROR".
func parseClamReply(reply string) error {
	reply = strings.TrimRight(reply, "\x00\r\n ")
	body, ok := strings.CutPrefix(reply, "stream: ")
	switch {
	case ok && body == "OK":
		return nil
	case ok && strings.HasSuffix(body, " FOUND"):
		sig := strings.TrimSuffix(body, " FOUND")
		if sig == "" || len(sig) > 200 {
			return fmt.Errorf("%w: malformed reply", ErrScanner)
		}
		return &VirusError{Signature: sig}
	}
	if len(reply) > 200 {
		reply = reply[:200]
	}
	return fmt.Errorf("%w: clamd: %q", ErrScanner, reply)
}

// Ping checks that clamd answers (zPING → PONG).
func (c *ClamAV) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return fmt.Errorf("%w: %w", ErrScanner, err)
	}
	b, _ := io.ReadAll(io.LimitReader(conn, 64))
	if !bytes.HasPrefix(b, []byte("PONG")) {
		return fmt.Errorf("%w: no PONG", ErrScanner)
	}
	return nil
}
