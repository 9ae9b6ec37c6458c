package hl7bridge_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/bal"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// TestHL7BridgeANSActions sends the three MDM examples of CI-SIS Trans-CDA-R2 in a checkout of
// ansforge/hl7V2-exemples named by MSSANTE_HL7V2_EXAMPLES (opt-in: the examples are not copied
// here): the first transmission (T02) and the replacement (T10) are answered AA, and the
// recipient reads in the second mail's XDM metadata the RPLC association to the entry of the
// first; the deletion (T04) is refused AE 201.
//
// Two changes make the examples deliverable in the trust space, neither touching what the
// bridge checks of the action: the recipient is a BAL of the sandbox, and each CDA gets the
// setId that the examples lack and the checks of mssante/cda require (the same for both versions,
// as versions of one document share it) and the type code of a report whose XDS classCode
// mssante/xdm knows (11502-2 for the examples' 18748-4, a row its table lacks). Each message also gets its own MSH-10: the three
// share one, and the bridge would answer the second and third from its journal of the first.
func TestHL7BridgeANSActions(t *testing.T) {
	dir := os.Getenv("MSSANTE_HL7V2_EXAMPLES")
	if dir == "" {
		t.Skip("MSSANTE_HL7V2_EXAMPLES not set (a checkout of ansforge/hl7V2-exemples)")
	}
	base := filepath.Join(dir, "Vague 2", "Trans_Doc-CDA-HL7V2", "TRANSMISSION_DOCS_CDA_EN_HL7V2_V2.1", "MDM")
	e := startBridge(t, nil)
	example := func(file, id string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(base, file))
		if err != nil {
			t.Fatal(err)
		}
		raw := strings.Replace(strings.ReplaceAll(string(data), "adam.hoda@test-ci-sis.mssante.fr", doc), "|015|", "|"+id+"|", 1)
		m, err := hl7v2.Parse([]byte(raw), nil)
		if err != nil {
			t.Fatal(err)
		}
		obx := m.All("OBX")[0]
		x, err := base64.StdEncoding.DecodeString(obx.Get(5, 5))
		if err != nil {
			// The deletion example's base64 is cut short; the bridge refuses that message
			// before reading its document.
			t.Logf("%s: %v", file, err)
			return []byte(raw)
		}
		x = []byte(strings.Replace(string(x), "<versionNumber", `<setId root="1.2.250.1.71.4.2.2.120456789.71024000080"/><versionNumber`, 1))
		x = []byte(strings.Replace(string(x), `code="18748-4"`, `code="11502-2"`, 1))
		obx.Set(5, "", obx.Get(5, 2), obx.Get(5, 3), obx.Get(5, 4), base64.StdEncoding.EncodeToString(x))
		out, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ack := send(t, e, example("Suppression MDM/message_MDM_CR_Radio_DEL_N1.er7", "ANS-DEL"))
	if code, _, _ := hl7v2.AckOf(ack); code != "AE" || ack.Segment("ERR").Get(3, 1) != "201" {
		out, _ := ack.Encode()
		t.Fatalf("deletion: ACK %q", strings.ReplaceAll(string(out), "\r", "\n"))
	}

	recv := sandboxClient(t, e.dir, doc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := make(chan *bal.Incoming, 2)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- recv.Watch(wctx, func(_ context.Context, in *bal.Incoming) error {
			if strings.HasPrefix(in.MessageID, "hl7-") {
				got <- in
			}
			return nil
		}, nil)
	}()
	defer func() { stop(); <-done }()
	entry := func(file, id string) string {
		t.Helper()
		ack := send(t, e, example(file, id))
		if code, _, _ := hl7v2.AckOf(ack); code != "AA" {
			out, _ := ack.Encode()
			t.Fatalf("%s: ACK %q", file, strings.ReplaceAll(string(out), "\r", "\n"))
		}
		select {
		case in := <-got:
			docs := in.Documents()
			if len(docs) != 1 {
				t.Fatalf("%s: %d documents (XDM error %v)", file, len(docs), in.XDMError)
			}
			return docs[0].Entry.EntryUUID + " " + docs[0].Entry.Replaces
		case <-ctx.Done():
			t.Fatalf("%s: no mail", file)
		}
		return ""
	}
	first, _, _ := strings.Cut(entry("Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1_Base64.er7", "ANS-INIT"), " ")
	second, replaces, _ := strings.Cut(entry("Remplacement MDM/message_MDM_CR_Radio_RPLC_N1.er7", "ANS-RPLC"), " ")
	if replaces != first || second == first {
		t.Fatalf("replacement entry %s replaces %q, first entry %s", second, replaces, first)
	}
}
