package bal_test

import (
	"context"
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/mssante"
	"github.com/mssante-go/sdk/mssante/cda"
)

// startSandbox runs a trust space in a folder of the test and returns the folder, as
// "mssante dev" leaves it for other processes.
func startSandbox(t *testing.T) string { return startSandboxWith(t, &sandbox.Options{}) }

// startSandboxWith starts a trust space with opts (Dir is set here) and returns its folder.
func startSandboxWith(t *testing.T, opts *sandbox.Options) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	opts.Dir = dir
	sb, err := sandbox.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	return dir
}

// sandboxClient is the client of the BAL addr of the trust space in dir, configured from the
// folder alone.
func sandboxClient(t *testing.T, dir, addr string) *bal.Client {
	t.Helper()
	o, err := bal.OptionsFromSandbox(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	o.StateDir, o.NIL = t.TempDir(), "DEV000000"
	o.MinBackoff, o.MaxBackoff, o.PollInterval = 20*time.Millisecond, 500*time.Millisecond, 2*time.Second
	c, err := bal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendLetter(t *testing.T, ctx context.Context, c *bal.Client, from, to string) *bal.SendResult {
	t.Helper()
	msg, err := bal.NewDocumentMessage(mssante.MustAddress("DPI", from), []mssante.Address{mssante.MustAddress("", to)},
		cda.Sample(cda.KindN1), &bal.DocumentOptions{WantMDN: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Send(ctx, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A DPI configured from the sandbox folder alone sends a lettre de liaison to the practice's
// software, which integrates it; Await returns its final receipt, "processed", then returns it
// again at once from the outbox.
func TestOptionsFromSandboxSendAwait(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	dir := startSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet

	recv := sandboxClient(t, dir, to)
	rctx, rstop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- recv.Watch(rctx, func(context.Context, *bal.Incoming) error { return nil }, nil) }()
	defer func() { rstop(); <-done }()

	c := sandboxClient(t, dir, from)
	res := sendLetter(t, ctx, c, from, to)
	// A letter for the DPI's own BAL arrives too: Await is not its reader.
	ordinary := sendLetter(t, ctx, recv, to, from)
	got, err := c.Await(ctx, "<"+res.MessageID+">")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Recipient != to || got[0].Status != bal.StatusProcessed || !got[0].Final ||
		got[0].MessageID != res.MessageID {
		t.Fatalf("Await = %+v, want one final processed receipt for %s", got, to)
	}

	// The DPI's integrating process (a state folder of its own) still finds the letter that
	// arrived while Await watched: Await left it unflagged, unanswered.
	integrator := sandboxClient(t, dir, from)
	ictx, istop := context.WithCancel(ctx)
	handed := make(chan string, 4)
	idone := make(chan error, 1)
	go func() {
		idone <- integrator.Watch(ictx, func(_ context.Context, m *bal.Incoming) error {
			handed <- m.MessageID
			return nil
		}, nil)
	}()
	select {
	case id := <-handed:
		if id != ordinary.MessageID {
			t.Errorf("the integrator was handed %s, want %s", id, ordinary.MessageID)
		}
	case <-ctx.Done():
		t.Fatal("the letter that arrived during Await never reached the integrating watcher")
	}
	istop()
	<-idone

	// Already final: no mailbox needed.
	quick, qcancel := context.WithTimeout(ctx, time.Second)
	defer qcancel()
	again, err := c.Await(quick, res.MessageID)
	if err != nil || len(again) != 1 || again[0] != got[0] {
		t.Fatalf("second Await = %+v, %v; want %+v", again, err, got[0])
	}
}

// Nobody integrates the letter: Await gives up with ctx, returning the recipient as it
// stands (not final). A Message-ID the outbox does not hold is fs.ErrNotExist.
func TestAwaitTimeoutAndUnknown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	dir := startSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	c := sandboxClient(t, dir, from)
	res := sendLetter(t, ctx, c, from, to)

	short, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	got, err := c.Await(short, res.MessageID)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Await = %v, want context.DeadlineExceeded", err)
	}
	if len(got) != 1 || got[0].Final || (got[0].Status != bal.StatusSubmitted && got[0].Status != bal.StatusDelivered) {
		t.Fatalf("Await = %+v, want %s submitted or delivered, not final", got, to)
	}

	if _, err := c.Await(ctx, "unknown@"+sandbox.Hopital); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Await(unknown) = %v, want fs.ErrNotExist", err)
	}
}

// The folder's mistakes are named: no trust space, an address that is not one of its BALs. A
// PER BAL, without a certificate, logs in with its password.
func TestOptionsFromSandboxErrors(t *testing.T) {
	if _, err := bal.OptionsFromSandbox(t.TempDir(), "dpi@"+sandbox.Hopital); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty folder: %v, want fs.ErrNotExist", err)
	}
	if testing.Short() {
		t.Skip("starts a trust space")
	}
	dir := startSandbox(t)
	if _, err := bal.OptionsFromSandbox(dir, "nobody@"+sandbox.Hopital); !errors.Is(err, bal.ErrConfig) {
		t.Errorf("unknown BAL: %v, want ErrConfig", err)
	}
	o, err := bal.OptionsFromSandbox(dir, "jean.dupont@"+sandbox.Hopital)
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth != bal.AuthPlain || o.Username != "jean.dupont@"+sandbox.Hopital || o.Password == "" ||
		len(o.TLS.Certificates) != 0 || o.Whitelist == nil || o.TLS.Trust == nil ||
		o.Submission.Security != bal.StartTLS || o.IMAP.Security != bal.ImplicitTLS {
		t.Errorf("PER BAL options = %+v", o)
	}
	o, err = bal.OptionsFromSandbox(dir, "dpi@"+sandbox.Hopital)
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth != "" || len(o.TLS.Certificates) != 1 || o.Whitelist.CheckDomain(sandbox.Cabinet) != nil {
		t.Errorf("APP BAL options = %+v", o)
	}
}
