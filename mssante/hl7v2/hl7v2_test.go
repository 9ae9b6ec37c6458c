package hl7v2_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante/hl7v2"
)

// mdmT02 has the shape of the MDM^T02 of CI-SIS Trans-CDA-R2 (MSH, EVN, PID, PV1, TXA, OBX with
// the CDA in base64, PRT for sender and recipient, the MetaDMPMSS OBX), written from the
// guide's tables with made-up values.
const mdmT02 = "MSH|^~\\&|DPI-X|Hopital-X|PFI-X|Hopital-X|202612070931||MDM^T02^MDM_T02|MSG0001|P|2.6|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2\r" +
	"EVN||20261207093000\r" +
	"PID|||248000000000000^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~IPP42^^^HOP&1.2.3&ISO^PI||MARTIN^JEANNE^JEANNE MARIE^^^^L||19800101|F\r" +
	"PV1|1|I\r" +
	"TXA|1|11490-0|TEXT|202612070930||||||||1.2.250.1.213.1.1.9.1234^Hopital-X|||||AU\r" +
	"OBX|1|ED|11490-0^Lettre de sortie^LN||^text^XML^Base64^PENsaW5pY2FsRG9jdW1lbnQvPg==||||||F\r" +
	"PRT||UC||SB^^participation|810000000001^DURAND^PAUL^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS\r" +
	"PRT||UC||RCT^^participation|810000000002^DUPONT^ANNE^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS||||||||||^NET^X.400^anne.dupont@hopital.mssante.fr\r" +
	"OBX|2|CWE|DESTMSSANTEPS^Destinataire^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F\r"

func TestParseMDMShape(t *testing.T) {
	m, err := hl7v2.Parse([]byte(mdmT02), nil)
	if err != nil {
		t.Fatal(err)
	}
	if code, ev := m.Type(); code != "MDM" || ev != "T02" || m.ControlID() != "MSG0001" {
		t.Fatalf("type %s^%s id %q", code, ev, m.ControlID())
	}
	msh := m.Segment("MSH")
	if msh.Get(1, 1) != "|" || msh.Get(2, 1) != "^~\\&" || msh.Get(12, 1) != "2.6" || msh.Get(21, 2) != "CISIS_CDA_HL7_V2" {
		t.Fatalf("MSH fields: %q %q %q %q", msh.Get(1, 1), msh.Get(2, 1), msh.Get(12, 1), msh.Get(21, 2))
	}
	pid := m.Segment("PID")
	if pid.Reps(3) != 2 || pid.At(3, 0, 1, 1) != "248000000000000" || pid.At(3, 0, 4, 2) != "1.2.250.1.213.1.4.8" || pid.At(3, 1, 5, 1) != "PI" {
		t.Fatalf("PID-3: %d reps, %q %q", pid.Reps(3), pid.At(3, 0, 1, 1), pid.At(3, 0, 4, 2))
	}
	prt := m.All("PRT")
	if len(prt) != 2 || prt[1].Get(4, 1) != "RCT" || prt[1].Get(15, 4) != "anne.dupont@hopital.mssante.fr" {
		t.Fatalf("PRT: %d, %q", len(prt), prt[1].Get(15, 4))
	}
	if got := m.All("OBX")[0].Get(5, 5); got != "PENsaW5pY2FsRG9jdW1lbnQvPg==" {
		t.Fatalf("OBX-5.5 %q", got)
	}
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != mdmT02 {
		t.Fatalf("round trip differs:\n%q\n%q", out, mdmT02)
	}
}

func TestParseTolerant(t *testing.T) {
	lf := strings.ReplaceAll(mdmT02, "\r", "\r\n") + "\n\n"
	m, err := hl7v2.Parse([]byte(lf), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Segments) != 9 {
		t.Fatalf("%d segments", len(m.Segments))
	}
	// Other encoding characters, an unknown escape kept as written, hex and delimiter escapes.
	alt := "MSH#!*%@#A#B\rNTE#1#x%F%y%S%z%T%w%R%v%E%u%X0D0A%t%H%s%.br%\r"
	m, err = hl7v2.Parse([]byte(alt), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Segment("NTE").Get(2, 1); got != "x#y!z@w*v%u\r\nt%H%s%.br%" {
		t.Fatalf("unescape %q", got)
	}
	if got := m.Segment("MSH").Get(3, 1); got != "A" {
		t.Fatalf("MSH-3 %q", got)
	}
}

func TestCharsets(t *testing.T) {
	latin := []byte("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||FRA|8859/1\rNTE|1||caf\xe9\r")
	m, err := hl7v2.Parse(latin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Segment("NTE").Get(3, 1); got != "café" {
		t.Fatalf("8859/1 %q", got)
	}
	latin15 := []byte("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||FRA|8859/15\rNTE|1||\xa4\r")
	if m, err = hl7v2.Parse(latin15, nil); err != nil || m.Segment("NTE").Get(3, 1) != "€" {
		t.Fatalf("8859/15: %v", err)
	}
	bad := []byte("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||FRA|UNICODE UTF-8\rNTE|1||caf\xe9\r")
	if _, err := hl7v2.Parse(bad, nil); !errors.Is(err, hl7v2.ErrCharset) {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	other := []byte("MSH|^~\\&|A||||||ADT^A01|1|P|2.5|||||FRA|ISO IR87\r")
	if _, err := hl7v2.Parse(other, nil); !errors.Is(err, hl7v2.ErrCharset) {
		t.Fatalf("unsupported charset: %v", err)
	}
}

func TestParseRefusals(t *testing.T) {
	big := "MSH|^~\\&|A\r" + strings.Repeat("NTE|1\r", 20)
	for _, tc := range []struct {
		name, in string
		opts     *hl7v2.ReadOptions
		want     error
	}{
		{"empty", "", nil, hl7v2.ErrMalformed},
		{"no MSH", "PID|1|2\r", nil, hl7v2.ErrMalformed},
		{"short MSH", "MSH|^~", nil, hl7v2.ErrMalformed},
		{"repeated delimiter", "MSH|^^\\&|A\r", nil, hl7v2.ErrMalformed},
		{"letter delimiter", "MSH|^~a&|A\r", nil, hl7v2.ErrMalformed},
		{"MSH-2 too long", "MSH|^~\\&x|A\r", nil, hl7v2.ErrMalformed},
		{"bad segment name", "MSH|^~\\&|A\rpid|1\r", nil, hl7v2.ErrMalformed},
		{"long segment name", "MSH|^~\\&|A\rPIDX|1\r", nil, hl7v2.ErrMalformed},
		{"too many bytes", big, &hl7v2.ReadOptions{MaxBytes: 50}, hl7v2.ErrTooLarge},
		{"too many segments", big, &hl7v2.ReadOptions{MaxSegments: 10}, hl7v2.ErrTooLarge},
		{"too many fields", "MSH|^~\\&|A\rNTE" + strings.Repeat("|", 30) + "\r", &hl7v2.ReadOptions{MaxFields: 20}, hl7v2.ErrTooLarge},
		{"too many components", "MSH|^~\\&|A\rNTE|" + strings.Repeat("^", 30) + "\r", &hl7v2.ReadOptions{MaxParts: 20}, hl7v2.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := hl7v2.Parse([]byte(tc.in), tc.opts); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBuildStrict(t *testing.T) {
	m := hl7v2.New(hl7v2.Standard())
	m.Segments[0].Set(3, "DPI").Set(9, "ACK", "T02", "ACK").Set(10, "1").Set(12, "2.6")
	m.Add("NTE").Set(3, "a|b^c~d\\e&f\r\ng")
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "MSH|^~\\&|DPI||||||ACK^T02^ACK|1||2.6\rNTE|||a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\X0D\\\\X0A\\g\r"
	if string(out) != want {
		t.Fatalf("got %q", out)
	}
	back, err := hl7v2.Parse(out, nil)
	if err != nil || back.Segment("NTE").Get(3, 1) != "a|b^c~d\\e&f\r\ng" {
		t.Fatalf("round trip: %v %q", err, back.Segment("NTE").Get(3, 1))
	}
	for name, bad := range map[string]*hl7v2.Message{
		"no segments":   {Delims: hl7v2.Standard()},
		"first not MSH": {Delims: hl7v2.Standard(), Segments: []*hl7v2.Segment{{Name: "PID"}}},
		"bad name":      func() *hl7v2.Message { m := hl7v2.New(hl7v2.Standard()); m.Add("pi"); return m }(),
		"two MSH":       func() *hl7v2.Message { m := hl7v2.New(hl7v2.Standard()); m.Add("MSH"); return m }(),
		"bad delims":    hl7v2.New(hl7v2.Delimiters{Field: '|', Component: '|', Repetition: '~', Escape: '\\', Subcomponent: '&'}),
	} {
		if _, err := bad.Encode(); !errors.Is(err, hl7v2.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAck(t *testing.T) {
	req, err := hl7v2.Parse([]byte(mdmT02), nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 9, 32, 0, 0, time.UTC)
	ack, err := hl7v2.Ack(req, hl7v2.AckOptions{Code: hl7v2.AckError, ControlID: "ACK1", Time: at,
		Errors: []hl7v2.ErrorDetail{{Segment: "MSH", Sequence: 1, Field: 12, Condition: hl7v2.CondUnsupportedVersion}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ack.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "MSH|^~\\&|PFI-X|Hopital-X|DPI-X|Hopital-X|20261207093200||ACK^T02^ACK|ACK1|P|2.6|||||FRA|UNICODE UTF-8\r" +
		"MSA|AE|MSG0001\rERR||MSH^1^12|203^Unsupported version^messageErrorCondition|E\r"
	if string(out) != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
	code, id, ok := hl7v2.AckOf(ack)
	if !ok || code != "AE" || id != "MSG0001" {
		t.Fatalf("AckOf %q %q %v", code, id, ok)
	}
	if _, err := hl7v2.Ack(req, hl7v2.AckOptions{Code: "XX", ControlID: "1"}); !errors.Is(err, hl7v2.ErrInvalid) {
		t.Fatalf("bad code: %v", err)
	}
}

// TestHL7PythonParser has Debian's python3-hl7 parse what Encode writes: an independent reader
// agrees on the fields, repetitions, components and the escaped text.
func TestHL7PythonParser(t *testing.T) {
	send := testenv.Require(t, "mllp_send") // python3-hl7; its interpreter has the hl7 module
	py := filepath.Join(filepath.Dir(send), "python3")
	m, err := hl7v2.Parse([]byte(mdmT02), nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Add("NTE").Set(3, "a|b^c&d")
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "m.hl7")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `import hl7,sys
m = hl7.parse(open(sys.argv[1], encoding="utf-8", newline="").read())
print(m.segment("MSH")[9])
print(m.segments("PRT")[1][15][0][3])
print(m.segment("PID")[3][1][4])
print(m.unescape(str(m.segment("NTE")[3])))
`
	cmd := exec.Command(py, "-c", script, f)
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3-hl7: %v\n%s", err, got)
	}
	want := "MDM^T02^MDM_T02\nanne.dupont@hopital.mssante.fr\nPI\na|b^c&d\n"
	if !bytes.Equal(got, []byte(want)) {
		t.Fatalf("python3-hl7 read\n%s\nwant\n%s", got, want)
	}
}
