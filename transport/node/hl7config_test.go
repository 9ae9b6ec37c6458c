package node_test

import (
	"strings"
	"testing"

	"github.com/mssante-go/sdk/transport/node"
)

// TestHL7ConfigCheck: the [hl7] section is off by default, and a wrong one is refused with
// each mistake named.
func TestHL7ConfigCheck(t *testing.T) {
	var off node.HL7Config
	if err := off.Check(); err != nil {
		t.Fatalf("empty section: %v", err)
	}
	ok := node.HL7Config{Listen: "127.0.0.1:2575", BAL: "dpi@hopital.mssante.fr", Sandbox: "/tmp/dev", StateDir: "/tmp/s"}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	bad := node.HL7Config{Listen: "2575", DPI: "nohost", BAL: "dpi", MaxMessageBytes: -1}
	err := bad.Check()
	if err == nil {
		t.Fatal("bad section accepted")
	}
	for _, want := range []string{"hl7.listen", "hl7.dpi", "hl7.bal", "hl7.state_dir", "without sandbox", "hl7.max_message_bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: does not name %s", err, want)
		}
	}
}
