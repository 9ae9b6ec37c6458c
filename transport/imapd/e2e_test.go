package imapd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/transport/mailbox"
)

// TestRelayedToAPPBAL sends a message from a BAL of one sandbox connector to the APP BAL of
// the other (submission, queue, mutual-TLS relay, local delivery into the mailbox store) and
// reads it back over IMAPS with the APP BAL's certificate: the bytes served are the bytes
// stored, and they end with the message as it was submitted (the relay only prepends its
// trace fields).
func TestRelayedToAPPBAL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two connectors")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sb, err := sandbox.Start(ctx, &sandbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	var from, to string
	for _, op := range sb.Info.Operators {
		for _, b := range op.BALs {
			if op.Name == "hopital" && b.Type == "PER" && from == "" {
				from = b.Address
			}
			if op.Name == "cabinet" && b.Type == "APP" {
				to = b.Address
			}
		}
	}
	if from == "" || to == "" {
		t.Fatalf("sandbox BALs: from %q to %q", from, to)
	}
	// a 300 KB base64 attachment: long lines of the exact bytes must survive
	att := make([]byte, 220<<10)
	rand.New(rand.NewSource(8)).Read(att)
	enc := base64.StdEncoding.EncodeToString(att)
	var body bytes.Buffer
	for len(enc) > 76 {
		body.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	body.WriteString(enc + "\r\n")
	id := fmt.Sprintf("e2e-%d@hopital", time.Now().UnixNano())
	msg := []byte("From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: =?utf-8?q?Compte_rendu_d=27=C3=A9chographie?=\r\nMessage-ID: <" + id + ">\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nBonjour, ci-joint le compte rendu.\r\n" +
		"--b1\r\nContent-Type: application/zip; name=IHE_XDM.ZIP\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body.String() + "--b1--\r\n")
	if err := sb.Info.Submit(ctx, from, []string{to}, msg); err != nil {
		t.Fatal(err)
	}
	got, err := sb.Info.WaitFor(ctx, to, func(raw []byte) bool { return bytes.Contains(raw, []byte("<"+id+">")) })
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(got, msg) {
		t.Fatalf("IMAP served %d bytes that do not end with the %d submitted", len(got), len(msg))
	}
	// and exactly what the store holds
	st := sb.Store("cabinet")
	mb, err := st.Mailbox(ctx, to, mailbox.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := st.Messages(ctx, mb.ID, 0)
	found := false
	for _, m := range ms {
		rc, _, err := st.Open(ctx, mb.ID, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := io.ReadAll(rc)
		rc.Close()
		if bytes.Contains(stored, []byte("<"+id+">")) {
			found = true
			if !bytes.Equal(stored, got) {
				t.Fatal("IMAP bytes differ from the stored message")
			}
		}
	}
	if !found {
		t.Fatal("message not in the APP BAL's store")
	}
}
