package bal_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport/psc"
)

// tokenClient is the client of a PER BAL of the trust space that logs in with mech and a token
// of the practitioner clientID from the sandbox's Pro Santé Connect stand-in; calls counts the
// tokens asked for.
func tokenClient(t *testing.T, dir, addr string, mech bal.AuthMechanism, src bal.TokenSource) *bal.Client {
	return tokenClientLog(t, dir, addr, mech, src, nil)
}

// tokenClientLog is tokenClient with a logger.
func tokenClientLog(t *testing.T, dir, addr string, mech bal.AuthMechanism, src bal.TokenSource, log *slog.Logger) *bal.Client {
	t.Helper()
	o, err := bal.OptionsFromSandbox(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL = t.TempDir(), "DEV000000"
	o.MinBackoff, o.MaxBackoff, o.PollInterval = 20*time.Millisecond, 500*time.Millisecond, 2*time.Second
	o.Auth, o.Password, o.TokenSource, o.Logger = mech, "", src, log
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A practitioner sends with XOAUTH2 (submission) and another reads with OAUTHBEARER (IMAP, Watch),
// both with tokens of the sandbox's OpenID provider; a token source whose session ended stops
// Watch with ErrAuth.
func TestPSCTokenSendAndWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	dir := startSandbox(t)
	info, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from, to := "jean.dupont@"+sandbox.Hopital, "marie.durand@"+sandbox.Cabinet
	var calls atomic.Int32
	recv := tokenClient(t, dir, to, bal.AuthOAUTHBEARER, func(ctx context.Context) (string, error) {
		calls.Add(1)
		return info.PSCToken(ctx, "marie.durand")
	})
	got := make(chan string, 4)
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- recv.Watch(rctx, func(_ context.Context, m *bal.Incoming) error { got <- m.Message.From.Addr; return nil }, nil)
	}()
	defer func() { rstop(); <-done }()

	send := tokenClient(t, dir, from, bal.AuthXOAUTH2, func(ctx context.Context) (string, error) {
		return info.PSCToken(ctx, "jean.dupont")
	})
	sendLetter(t, ctx, send, from, to)
	select {
	case f := <-got:
		if f != from {
			t.Fatalf("received from %q", f)
		}
	case <-ctx.Done():
		t.Fatal("the letter sent with XOAUTH2 was not read with OAUTHBEARER")
	}
	if calls.Load() == 0 {
		t.Fatal("the token source was not asked")
	}

	ended := tokenClient(t, dir, to, bal.AuthXOAUTH2, func(context.Context) (string, error) { return "", psc.ErrSessionEnded })
	if err := ended.Watch(ctx, func(context.Context, *bal.Incoming) error { return nil }, nil); !errors.Is(err, bal.ErrAuth) {
		t.Fatalf("Watch with an ended session: %v, want ErrAuth", err)
	}
}

// A Watch opened with a token outlives the server's sessions: the connectors end token
// sessions (BYE, IDLE included) after psc session_length, or at the token's expiry with
// end_with_token, and the client reconnects with a fresh token from its source, again and
// again, and keeps receiving.
func TestPSCTokenReconnect(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	for name, opts := range map[string]*sandbox.Options{
		"session_length": {PSCSessionLength: 2 * time.Second},
		"end_with_token": {PSCTokenLifetime: 2 * time.Second, PSCEndWithToken: true},
	} {
		t.Run(name, func(t *testing.T) { testTokenReconnect(t, opts) })
	}
}

func testTokenReconnect(t *testing.T, opts *sandbox.Options) {
	dir := startSandboxWith(t, opts)
	info, err := sandbox.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from, to := "jean.dupont@"+sandbox.Hopital, "marie.durand@"+sandbox.Cabinet
	var mu sync.Mutex
	tokens := map[string]bool{}
	warnings := &warnCounter{}
	recv := tokenClientLog(t, dir, to, bal.AuthOAUTHBEARER, func(ctx context.Context) (string, error) {
		tok, err := info.PSCToken(ctx, "marie.durand")
		mu.Lock()
		tokens[tok] = true
		mu.Unlock()
		return tok, err
	}, slog.New(warnings))
	distinct := func() int { mu.Lock(); defer mu.Unlock(); return len(tokens) }
	got := make(chan string, 4)
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- recv.Watch(rctx, func(_ context.Context, m *bal.Incoming) error { got <- m.Message.From.Addr; return nil }, nil)
	}()
	defer func() { rstop(); <-done }()

	// Three sessions at least: two ends, each followed by a login with a new token.
	for distinct() < 3 {
		select {
		case err := <-done:
			t.Fatalf("Watch returned after %d tokens: %v", distinct(), err)
		case <-ctx.Done():
			t.Fatalf("%d tokens asked for in 2 min, want 3 (a reconnection at each session end)", distinct())
		case <-time.After(100 * time.Millisecond):
		}
	}
	send := tokenClient(t, dir, from, bal.AuthXOAUTH2, func(ctx context.Context) (string, error) {
		return info.PSCToken(ctx, "jean.dupont")
	})
	sendLetter(t, ctx, send, from, to)
	select {
	case f := <-got:
		if f != from {
			t.Fatalf("received from %q", f)
		}
	case <-ctx.Done():
		t.Fatal("the letter was not received after the reconnections")
	}
	if n := warnings.n.Load(); n > 0 {
		t.Errorf("%d warnings logged: the routine end of a token session is no warning", n)
	}
}

// warnCounter is a slog handler that counts the warnings and errors.
type warnCounter struct{ n atomic.Int32 }

func (w *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.n.Add(1)
	}
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }
