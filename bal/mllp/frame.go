// Package mllp carries HL7v2 messages over TCP with the Minimal Lower Layer Protocol (HL7 MLLP,
// release 1): each message is framed as 0x0B, the message, 0x1C 0x0D. It holds the framer, a
// [Server] that answers one message at a time per connection, and a [Client] that sends a
// message and waits for the ACK whose MSA-2 echoes its MSH-10, redialling and resending on a
// lost connection (the receiver recognises the resend by MSH-10).
//
// Every read has a deadline and a size cap; a frame cut by the peer or larger than the cap ends
// the connection with a named error. The package does not interpret messages beyond MSH-10 and
// MSA: package hl7bridge does.
//
// Specifications (docs/references.md): HL7 MLLP; HL7 v2 ch. 2 (MSH-10, MSA-2); CI-SIS
// Trans-CDA-R2, which makes MLLP the preferred transport between the DPI and the platform.
//
// Start with [NewServer] and [Dial].
package mllp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Frame bytes of MLLP release 1.
const (
	startBlock = 0x0B
	endBlock   = 0x1C
	carriage   = 0x0D
)

// Errors of the framer, the server and the client.
var (
	// ErrFraming: bytes outside a frame, or 0x1C not followed by 0x0D.
	ErrFraming = errors.New("mllp: framing error")
	// ErrTooLarge: a frame longer than the cap.
	ErrTooLarge = errors.New("mllp: message too large")
	// ErrTruncated: the connection ended inside a frame.
	ErrTruncated = errors.New("mllp: connection ended inside a message")
	// ErrInvalid: a message to send contains a frame byte, or is not HL7v2.
	ErrInvalid = errors.New("mllp: invalid message")
	// ErrServerClosed is returned by Serve after Close or Shutdown.
	ErrServerClosed = errors.New("mllp: server closed")
	// ErrNoAck: the peer did not acknowledge (no ACK, or none with our control id).
	ErrNoAck = errors.New("mllp: no acknowledgment")
)

// ReadFrame reads the next frame from r and returns its content. Line ends (CR, LF) between
// frames are skipped, as some senders write them; any other byte outside a frame is an
// error. io.EOF is returned only when r ends cleanly between frames.
func ReadFrame(r *bufio.Reader, maxBytes int) ([]byte, error) {
	msg, err := readFrame(r, maxBytes, 0)
	if err != nil {
		return nil, err
	}
	return msg, nil
}

// readFrame is ReadFrame. On ErrTooLarge it also returns the first maxBytes of the frame, for a
// server that answers from its MSH; with discard > 0 it first reads the rest of the frame, up
// to discard more bytes, so that the connection can go on (else the error is final).
func readFrame(r *bufio.Reader, maxBytes int, discard int64) ([]byte, error) {
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if c == startBlock {
			break
		}
		if c != '\r' && c != '\n' {
			return nil, fmt.Errorf("%w: byte 0x%02x before the start of a frame", ErrFraming, c)
		}
	}
	var buf bytes.Buffer
	tooLarge := false
	var skipped int64
	for {
		chunk, err := r.ReadSlice(endBlock)
		switch {
		case tooLarge:
			skipped += int64(len(chunk))
			if skipped > discard {
				return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
			}
		case buf.Len()+len(chunk) > maxBytes+1:
			buf.Write(chunk[:max(0, min(len(chunk), maxBytes-buf.Len()))])
			if discard <= 0 {
				return buf.Bytes(), fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
			}
			tooLarge = true
		default:
			buf.Write(chunk)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if err == io.EOF {
				return nil, ErrTruncated
			}
			return nil, err
		}
		c, err := r.ReadByte()
		if err == io.EOF {
			return nil, ErrTruncated
		}
		if err != nil {
			return nil, err
		}
		if c != carriage {
			return nil, fmt.Errorf("%w: 0x1C followed by 0x%02x", ErrFraming, c)
		}
		if tooLarge {
			return buf.Bytes(), fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
		}
		msg := buf.Bytes()[:buf.Len()-1]
		if bytes.IndexByte(msg, startBlock) >= 0 {
			return nil, fmt.Errorf("%w: 0x0B inside a frame", ErrFraming)
		}
		return msg, nil
	}
}

// WriteFrame writes msg as one frame. A message containing 0x0B or 0x1C cannot be framed.
func WriteFrame(w io.Writer, msg []byte) error {
	if bytes.IndexByte(msg, startBlock) >= 0 || bytes.IndexByte(msg, endBlock) >= 0 {
		return fmt.Errorf("%w: contains a frame byte", ErrInvalid)
	}
	b := make([]byte, 0, len(msg)+3)
	b = append(b, startBlock)
	b = append(b, msg...)
	b = append(b, endBlock, carriage)
	_, err := w.Write(b)
	return err
}
