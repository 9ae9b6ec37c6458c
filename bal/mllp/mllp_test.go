package mllp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal/mllp"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

func msg(id string) []byte {
	return []byte("MSH|^~\\&|DPI|HOP|PFI|HOP|20261207093000||MDM^T02^MDM_T02|" + id + "|P|2.6\rEVN||20261207093000\r")
}

// ackHandler answers AA to every message and records the control ids it saw.
type ackHandler struct {
	mu  sync.Mutex
	ids []string
}

func (h *ackHandler) handle(_ context.Context, b []byte) ([]byte, error) {
	m, err := hl7v2.Parse(b, nil)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.ids = append(h.ids, m.ControlID())
	h.mu.Unlock()
	ack, err := hl7v2.Ack(m, hl7v2.AckOptions{Code: hl7v2.AckAccept, ControlID: "A" + m.ControlID(), Time: time.Now()})
	if err != nil {
		return nil, err
	}
	return ack.Encode()
}

func (h *ackHandler) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...)
}

func serve(t *testing.T, opts *mllp.Options) string {
	t.Helper()
	srv, err := mllp.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, mllp.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

func TestMLLPRoundTrip(t *testing.T) {
	h := &ackHandler{}
	addr := serve(t, &mllp.Options{Handler: h.handle})
	c := mllp.Dial(addr, nil)
	defer c.Close()
	for _, id := range []string{"1", "2", "3"} {
		ack, err := c.Send(context.Background(), msg(id))
		if err != nil {
			t.Fatal(err)
		}
		if code, got, _ := hl7v2.AckOf(ack); code != "AA" || got != id {
			t.Fatalf("ACK %s %s", code, got)
		}
	}
	if got := strings.Join(h.seen(), ","); got != "1,2,3" {
		t.Fatalf("handled %s", got)
	}
	if _, err := c.Send(context.Background(), []byte("not hl7")); !errors.Is(err, mllp.ErrInvalid) {
		t.Fatalf("invalid message: %v", err)
	}
}

// TestMLLPPythonSender: Debian's python3-hl7 mllp_send, an independent MLLP client, sends two
// messages to our server and prints the ACKs.
func TestMLLPPythonSender(t *testing.T) {
	send := testenv.Require(t, "mllp_send")
	h := &ackHandler{}
	addr := serve(t, &mllp.Options{Handler: h.handle})
	host, port, _ := net.SplitHostPort(addr)
	f := filepath.Join(t.TempDir(), "in.hl7")
	if err := os.WriteFile(f, append(append(msg("P1"), '\n'), msg("P2")...), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(send, "--loose", "-p", port, "-f", f, host).CombinedOutput()
	if err != nil {
		t.Fatalf("mllp_send: %v\n%s", err, out)
	}
	for _, id := range []string{"P1", "P2"} {
		if !bytes.Contains(out, []byte("MSA|AA|"+id)) {
			t.Fatalf("no ACK for %s in\n%q", id, out)
		}
	}
}

func TestMLLPResendAfterLostConnection(t *testing.T) {
	var calls atomic.Int32
	h := &ackHandler{}
	addr := serve(t, &mllp.Options{Handler: func(ctx context.Context, b []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("lost") // the server drops the connection without an ACK
		}
		return h.handle(ctx, b)
	}})
	c := mllp.Dial(addr, &mllp.ClientOptions{Attempts: 2})
	defer c.Close()
	ack, err := c.Send(context.Background(), msg("R1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, id, _ := hl7v2.AckOf(ack); id != "R1" || calls.Load() != 2 {
		t.Fatalf("ack %s after %d calls", id, calls.Load())
	}
}

func TestMLLPAckCorrelation(t *testing.T) {
	// A peer that first answers with the ACK of an earlier message, then the right one.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := mllp.ReadFrame(bufio.NewReader(conn), 1<<20); err != nil {
			return
		}
		mllp.WriteFrame(conn, []byte("MSH|^~\\&|PFI||||||ACK|9|P|2.6\rMSA|AA|OLD\r"))
		mllp.WriteFrame(conn, []byte("MSH|^~\\&|PFI||||||ACK|10|P|2.6\rMSA|AE|NEW\r"))
	}()
	c := mllp.Dial(l.Addr().String(), nil)
	defer c.Close()
	ack, err := c.Send(context.Background(), msg("NEW"))
	if err != nil {
		t.Fatal(err)
	}
	if code, id, _ := hl7v2.AckOf(ack); code != "AE" || id != "NEW" {
		t.Fatalf("got %s %s", code, id)
	}
}

func TestMLLPNoAck(t *testing.T) {
	var calls atomic.Int32
	addr := serve(t, &mllp.Options{Handler: func(ctx context.Context, b []byte) ([]byte, error) {
		calls.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	c := mllp.Dial(addr, &mllp.ClientOptions{AckTimeout: 200 * time.Millisecond, Attempts: 2})
	defer c.Close()
	start := time.Now()
	if _, err := c.Send(context.Background(), msg("N1")); !errors.Is(err, mllp.ErrNoAck) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	// Cancelling the context ends the wait at once.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c2 := mllp.Dial(addr, &mllp.ClientOptions{AckTimeout: time.Minute})
	defer c2.Close()
	if _, err := c2.Send(ctx, msg("N2")); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("cancel: %v", err)
	}
}

// TestMLLPServerRefusals: bytes outside a frame, a frame cut by the peer, an oversized frame
// and an idle peer each end the connection without calling the handler.
func TestMLLPServerRefusals(t *testing.T) {
	h := &ackHandler{}
	addr := serve(t, &mllp.Options{Handler: h.handle, MaxMessageBytes: 1024, IdleTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	for name, in := range map[string]string{
		"garbage":      "GET / HTTP/1.1\r\n\r\n",
		"cut":          "\x0bMSH|^~\\&|A",
		"bad end":      "\x0bMSH|^~\\&|A\x1cX",
		"oversized":    "\x0b" + strings.Repeat("x", 4096) + "\x1c\r",
		"idle":         "",
		"nested start": "\x0bMSH\x0b|^~\\&|A\x1c\r",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, in)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(make([]byte, 16))
			if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %d, %v: the server should have closed the connection", n, err)
			}
		})
	}
	if len(h.seen()) != 0 {
		t.Fatalf("handler called for %v", h.seen())
	}
}

func TestMLLPShutdown(t *testing.T) {
	release, inFlight := make(chan struct{}), make(chan struct{}, 1)
	srv, err := mllp.NewServer(&mllp.Options{Handler: func(ctx context.Context, b []byte) ([]byte, error) {
		inFlight <- struct{}{}
		<-release
		return (&ackHandler{}).handle(ctx, b)
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	c := mllp.Dial(l.Addr().String(), &mllp.ClientOptions{Attempts: 1})
	defer c.Close()
	res := make(chan error, 1)
	go func() { _, err := c.Send(context.Background(), msg("S1")); res <- err }()
	<-inFlight
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	// Shutdown has begun once the listener refuses connections.
	for {
		c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("in-flight message lost on Shutdown: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(l); !errors.Is(err, mllp.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if _, err := mllp.NewServer(nil); err == nil {
		t.Fatal("NewServer without handler")
	}
}

func TestFrameWriteRefusal(t *testing.T) {
	if err := mllp.WriteFrame(io.Discard, []byte("a\x1cb")); !errors.Is(err, mllp.ErrInvalid) {
		t.Fatal(err)
	}
	var b bytes.Buffer
	mllp.WriteFrame(&b, []byte("x"))
	if b.String() != "\x0bx\x1c\r" {
		t.Fatalf("%q", b.String())
	}
	got, err := mllp.ReadFrame(bufio.NewReader(strings.NewReader("\r\n"+b.String())), 10)
	if err != nil || string(got) != "x" {
		t.Fatalf("%q %v", got, err)
	}
}

// TestMLLPOversize: with Options.Oversize, a message over the cap is read to its end and
// answered (here AE from its MSH), and the connection goes on with the next message.
func TestMLLPOversize(t *testing.T) {
	h := &ackHandler{}
	var heads atomic.Int32
	addr := serve(t, &mllp.Options{Handler: h.handle, MaxMessageBytes: 1024,
		Oversize: func(ctx context.Context, head []byte) ([]byte, error) {
			heads.Add(1)
			if len(head) > 1024 {
				t.Errorf("head of %d bytes", len(head))
			}
			line, _, _ := strings.Cut(string(head), "\r")
			m, err := hl7v2.Parse([]byte(line), nil)
			if err != nil {
				return nil, err
			}
			ack, err := hl7v2.Ack(m, hl7v2.AckOptions{Code: hl7v2.AckError, ControlID: "X", Time: time.Now(),
				Errors: []hl7v2.ErrorDetail{{Condition: hl7v2.CondOtherHL7}}})
			if err != nil {
				return nil, err
			}
			return ack.Encode()
		}})
	c := mllp.Dial(addr, &mllp.ClientOptions{Attempts: 1})
	defer c.Close()
	big := append(msg("BIG"), []byte("NTE|1||"+strings.Repeat("x", 100<<10)+"\r")...)
	ack, err := c.Send(context.Background(), big)
	if err != nil {
		t.Fatal(err)
	}
	if code, id, _ := hl7v2.AckOf(ack); code != "AE" || id != "BIG" || heads.Load() != 1 {
		t.Fatalf("oversized: %s %s", code, id)
	}
	ack, err = c.Send(context.Background(), msg("NEXT"))
	if err != nil {
		t.Fatal(err)
	}
	if code, id, _ := hl7v2.AckOf(ack); code != "AA" || id != "NEXT" {
		t.Fatalf("next: %s %s", code, id)
	}
}
