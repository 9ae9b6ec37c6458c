package mssante

import (
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// officialNIRKey computes the key the way INSEE states it, independently of nirKey: for
// Corsica, replace the letter by 0 and subtract 1 000 000 (2A) or 2 000 000 (2B).
func officialNIRKey(nir string) int {
	sub := int64(0)
	switch nir[5:7] {
	case "2A":
		nir, sub = nir[:6]+"0"+nir[7:], 1000000
	case "2B":
		nir, sub = nir[:6]+"0"+nir[7:], 2000000
	}
	n, _ := new(big.Int).SetString(nir, 10)
	n.Sub(n, big.NewInt(sub))
	return 97 - int(new(big.Int).Mod(n, big.NewInt(97)).Int64())
}

func TestParseINS(t *testing.T) {
	tests := []struct {
		name, value, oid string
		want             string
		err              error
	}{
		{"ANS LDL-SES example, test OID", "279035121518989", OIDINSNIRTest, "279035121518989", nil},
		{"ANS IG patient address example", "146026322000196", OIDINSNIR, "146026322000196", nil},
		{"spaces removed", "1 46 02 63 220 001 96", OIDINSNIR, "146026322000196", nil},
		{"Corsica 2A", "185052A12345633", OIDINSNIR, "185052A12345633", nil},
		{"Corsica 2b lower case", "185052b12345660", OIDINSNIA, "185052B12345660", nil},
		{"NIA test OID", "146026322000196", OIDINSNIATest, "146026322000196", nil},
		{"wrong key", "146026322000197", OIDINSNIR, "", ErrINS},
		{"Corsica wrong key", "185052A12345660", OIDINSNIR, "", ErrINS},
		{"letter outside department", "1460263A2000196", OIDINSNIR, "", ErrINS},
		{"A without leading 2", "185053A12345633", OIDINSNIR, "", ErrINS},
		{"14 characters", "14602632200019", OIDINSNIR, "", ErrINS},
		{"16 characters", "1460263220001960", OIDINSNIR, "", ErrINS},
		{"bad sex digit", "546026322000196", OIDINSNIR, "", ErrINS},
		{"non-digit key", "1460263220001A6", OIDINSNIR, "", ErrINS},
		{"empty", "", OIDINSNIR, "", ErrINS},
		{"unknown OID", "146026322000196", "1.2.250.1.213.1.4.12", "", ErrINSOID},
		{"IPP OID", "146026322000196", "1.2.3.4", "", ErrINSOID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseINS(tt.value, tt.oid)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if !strings.HasPrefix(err.Error(), "mssante: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil || got.Value != tt.want || got.OID != tt.oid {
				t.Fatalf("got %+v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestNIRKeyMatchesOfficialRule(t *testing.T) {
	for _, nir := range []string{"2790351215189", "1460263220001", "185052A123456", "185052B123456",
		"2850799123456", "1000000000000", "8991299999999", "301022B000001"} {
		got, err := NIRKey(nir)
		if err != nil {
			t.Fatal(err)
		}
		if want := officialNIRKey(nir); atoi(got) != want {
			t.Errorf("NIRKey(%s) = %s, official rule gives %02d", nir, got, want)
		}
		if _, err := ParseINS(nir+got, OIDINSNIR); err != nil {
			t.Errorf("ParseINS(%s%s): %v", nir, got, err)
		}
	}
	if _, err := NIRKey("12345"); !errors.Is(err, ErrINS) {
		t.Errorf("short NIR: %v", err)
	}
	if _, err := NIRKey("1850520X23456"); !errors.Is(err, ErrINS) {
		t.Errorf("letter: %v", err)
	}
}

func TestINSTestOIDs(t *testing.T) {
	for oid, test := range map[string]bool{OIDINSNIR: false, OIDINSNIA: false, OIDINSNIRTest: true, OIDINSNIATest: true} {
		if got := (INS{Value: "146026322000196", OID: oid}).IsTest(); got != test {
			t.Errorf("IsTest(%s) = %v", oid, got)
		}
	}
}

func TestQualified(t *testing.T) {
	base := func() *Patient {
		return &Patient{
			INS: INS{Value: "279035121518989", OID: OIDINSNIRTest},
			Traits: Traits{BirthName: "PAT-TROIS", FirstGivenName: "DOMINIQUE", BirthDate: time.Date(1979, 3, 1, 0, 0, 0, 0, time.UTC),
				Sex: SexFemale, BirthPlace: "51215"},
		}
	}
	if !base().Qualified() {
		t.Fatal("complete identity not qualified")
	}
	for name, mutate := range map[string]func(*Patient){
		"no INS":        func(p *Patient) { p.INS = INS{} },
		"bad key":       func(p *Patient) { p.INS.Value = "279035121518988" },
		"no OID":        func(p *Patient) { p.INS.OID = "" },
		"no birth name": func(p *Patient) { p.BirthName = " " },
		"no first name": func(p *Patient) { p.FirstGivenName = "" },
		"no birth date": func(p *Patient) { p.BirthDate = time.Time{} },
		"sex unknown":   func(p *Patient) { p.Sex = SexUnknown },
		"sex empty":     func(p *Patient) { p.Sex = "" },
	} {
		p := base()
		mutate(p)
		if p.Qualified() {
			t.Errorf("%s: qualified", name)
		}
	}
	var nilp *Patient
	if nilp.Qualified() {
		t.Error("nil patient qualified")
	}
}

func TestProfessionalAndStructureIDs(t *testing.T) {
	type parse func(string) (string, error)
	tests := []struct {
		name  string
		fn    parse
		in    string
		valid bool
		err   error
	}{
		{"RPPS ANS example", ParseRPPS, "01234567897", true, ErrRPPS},
		{"RPPS generated", ParseRPPS, "10003456786", true, ErrRPPS},
		{"RPPS bad Luhn", ParseRPPS, "01234567898", false, ErrRPPS},
		{"RPPS 10 digits", ParseRPPS, "0123456789", false, ErrRPPS},
		{"RPPS letter", ParseRPPS, "0123456789A", false, ErrRPPS},
		{"ADELI", ParseADELI, "751234567", true, ErrADELI},
		{"ADELI Corsica", ParseADELI, "2A1234567", true, ErrADELI},
		{"ADELI 8 digits", ParseADELI, "75123456", false, ErrADELI},
		{"ADELI letter", ParseADELI, "75123C567", false, ErrADELI},
		{"FINESS ANS example", ParseFINESS, "750803447", true, ErrFINESS},
		{"FINESS AP-HP", ParseFINESS, "750712184", true, ErrFINESS},
		{"FINESS Corsica", ParseFINESS, "2A0000014", true, ErrFINESS},
		{"FINESS bad Luhn", ParseFINESS, "750803448", false, ErrFINESS},
		{"FINESS 10 digits", ParseFINESS, "7508034470", false, ErrFINESS},
		{"SIREN", ParseSIREN, "732829320", true, ErrSIREN},
		{"SIREN bad", ParseSIREN, "732829321", false, ErrSIREN},
		{"SIRET", ParseSIRET, "73282932000074", true, ErrSIRET},
		{"SIRET bad Luhn", ParseSIRET, "73282932000075", false, ErrSIRET},
		{"SIRET bad SIREN part", ParseSIRET, "73282932100065", false, ErrSIRET},
		{"SIRET La Poste sum 19", ParseSIRET, "35600000000014", false, ErrSIRET},
		{"SIRET La Poste sum 20", ParseSIRET, "35600000000015", true, ErrSIRET},
		{"SIRET 13 digits", ParseSIRET, "7328293200007", false, ErrSIRET},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.fn(tt.in)
			if tt.valid {
				if err != nil || got != tt.in {
					t.Fatalf("got %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestNationalIDs(t *testing.T) {
	tests := []struct {
		name      string
		oid, in   string
		kind      IDKind
		value     string
		wantError bool
	}{
		{"PS RPPS", OIDIdNatPS, "801234567897", KindRPPS, "01234567897", false},
		{"PS ADELI", OIDIdNatPS, "0751234567", KindADELI, "751234567", false},
		{"PS cabinet ADELI internal", OIDIdNatPS, "1751234567/42", KindCabinetADELI, "751234567/42", false},
		{"PS FINESS internal", OIDIdNatPS, "3750803447/MED001", KindFINESSInternal, "750803447/MED001", false},
		{"PS SIREN internal", OIDIdNatPS, "4732829320/7", KindSIRENInternal, "732829320/7", false},
		{"PS SIRET internal", OIDIdNatPS, "573282932000074/X1", KindSIRETInternal, "73282932000074/X1", false},
		{"PS cabinet RPPS internal", OIDIdNatPS, "601234567897/1", KindCabinetRPPSInternal, "01234567897/1", false},
		{"Struct FINESS", OIDIdNatStruct, "1750803447", KindFINESS, "750803447", false},
		{"Struct SIREN", OIDIdNatStruct, "2732829320", KindSIREN, "732829320", false},
		{"Struct SIRET", OIDIdNatStruct, "373282932000074", KindSIRET, "73282932000074", false},
		{"Struct RPPS-rang", OIDIdNatStruct, "40123456789701", KindRPPSRang, "0123456789701", false},
		{"Struct cabinet ADELI", OIDIdNatStruct, "0751234567", KindCabinetADELI, "751234567", false},
		{"PS RPPS bad Luhn", OIDIdNatPS, "801234567898", 0, "", true},
		{"PS unknown prefix 9", OIDIdNatPS, "901234567897", 0, "", true},
		{"PS prefix 2 unused", OIDIdNatPS, "2732829320", 0, "", true},
		{"PS FINESS internal no local", OIDIdNatPS, "3750803447", 0, "", true},
		{"PS FINESS internal empty local", OIDIdNatPS, "3750803447/", 0, "", true},
		{"PS internal id with space", OIDIdNatPS, "3750803447/A B", 0, "", true},
		{"Struct FINESS bad", OIDIdNatStruct, "1750803448", 0, "", true},
		{"Struct SIRET bad", OIDIdNatStruct, "373282932000075", 0, "", true},
		{"Struct RPPS-rang no rank", OIDIdNatStruct, "401234567897", 0, "", true},
		{"Struct prefix 8", OIDIdNatStruct, "801234567897", 0, "", true},
		{"too short", OIDIdNatPS, "8", 0, "", true},
		{"unknown OID", "1.2.3", "801234567897", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNationalID(tt.oid, tt.in)
			if tt.wantError {
				if !errors.Is(err, ErrNationalID) {
					t.Fatalf("err = %v, want ErrNationalID", err)
				}
				return
			}
			if err != nil || n.Kind != tt.kind || n.Value != tt.value {
				t.Fatalf("got %+v, %v", n, err)
			}
			if n.String() != tt.in || n.OID() != tt.oid {
				t.Errorf("format: %s %s", n.String(), n.OID())
			}
			again, err := NewNationalID(n.Structure, n.Kind, n.Value)
			if err != nil || again != n {
				t.Errorf("NewNationalID round trip: %+v %v", again, err)
			}
		})
	}
	if _, err := NewNationalID(false, KindFINESS, "750803447"); !errors.Is(err, ErrNationalID) {
		t.Errorf("PS FINESS without internal id: %v", err)
	}
	if _, err := NewNationalID(true, KindRPPS, "01234567897"); !errors.Is(err, ErrNationalID) {
		t.Errorf("structure RPPS has no prefix: %v", err)
	}
}
