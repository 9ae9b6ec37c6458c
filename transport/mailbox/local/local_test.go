package local

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/transport/connector"
	"github.com/mssante-go/sdk/transport/mailbox"
)

func TestDelivery(t *testing.T) {
	ctx := context.Background()
	st, err := mailbox.OpenSQLite(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.AddBAL(ctx, &mailbox.BAL{Address: "dpi@h.test.mssante.fr", Type: mailbox.APP, CertDN: "CN=dpi"})
	d := New(st)
	if err := d.Lookup(ctx, "DPI@h.test.mssante.fr"); err != nil {
		t.Fatal(err)
	}
	if err := d.Lookup(ctx, "nobody@h.test.mssante.fr"); !errors.Is(err, connector.ErrNoMailbox) {
		t.Fatalf("Lookup(unknown) = %v", err)
	}
	msg := "Subject: x\r\n\r\nbody\r\n"
	for i := 0; i < 2; i++ { // the retry of the same delivery stores nothing more
		if err := d.Deliver(ctx, "dpi@h.test.mssante.fr", "Q1/dpi@h.test.mssante.fr", strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Deliver(ctx, "nobody@h.test.mssante.fr", "Q2/x", strings.NewReader(msg)); !errors.Is(err, connector.ErrNoMailbox) {
		t.Fatalf("Deliver(unknown) = %v", err)
	}
	mb, _ := st.Mailbox(ctx, "dpi@h.test.mssante.fr", mailbox.Inbox)
	if mb.Messages != 1 {
		t.Fatalf("%d messages, want 1", mb.Messages)
	}
	rc, _, _ := st.Open(ctx, mb.ID, 1)
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != msg {
		t.Fatalf("stored %q", b)
	}

	// A suspended BAL takes no new mail, at RCPT or at delivery; resumed, it does again.
	on, off := true, false
	if _, err := st.ChangeListing(ctx, "dpi@h.test.mssante.fr", mailbox.ListingChange{Suspended: &on}); err != nil {
		t.Fatal(err)
	}
	if err := d.Lookup(ctx, "dpi@h.test.mssante.fr"); !errors.Is(err, connector.ErrMailboxDisabled) {
		t.Fatalf("Lookup(suspended) = %v, want ErrMailboxDisabled", err)
	}
	if err := d.Deliver(ctx, "dpi@h.test.mssante.fr", "Q3/dpi@h.test.mssante.fr", strings.NewReader(msg)); !errors.Is(err, connector.ErrMailboxDisabled) {
		t.Fatalf("Deliver(suspended) = %v, want ErrMailboxDisabled", err)
	}
	if _, err := st.ChangeListing(ctx, "dpi@h.test.mssante.fr", mailbox.ListingChange{Suspended: &off}); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(ctx, "dpi@h.test.mssante.fr", "Q4/dpi@h.test.mssante.fr", strings.NewReader(msg)); err != nil {
		t.Fatalf("Deliver(resumed) = %v", err)
	}
}
