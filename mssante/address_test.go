package mssante

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, name, addr string
		ok             bool
	}{
		{"Jean.Dupont@Medecin.Test.MSSante.fr", "", "jean.dupont@medecin.test.mssante.fr", true},
		{"Dr Hélène Lefèvre <h.lefevre@hopital.mssante.fr>", "Dr Hélène Lefèvre", "h.lefevre@hopital.mssante.fr", true},
		{"=?utf-8?q?Dr_H=C3=A9l=C3=A8ne?= <h@x.mssante.fr>", "Dr Hélène", "h@x.mssante.fr", true},
		{"146026322000196@patient.mssante.fr", "", "146026322000196@patient.mssante.fr", true},
		{"a+b_c-d@sous-domaine.mssante.fr", "", "a+b_c-d@sous-domaine.mssante.fr", true},
		{"pas une adresse", "", "", false},
		{"a@localhost", "", "", false},
		{"a..b@x.fr", "", "", false},
		{".a@x.fr", "", "", false},
		{"a@-x.fr", "", "", false},
		{"a@x_y.fr", "", "", false},
		{"a@x..fr", "", "", false},
		{"é@x.fr", "", "", false},
		{"a@exämple.fr", "", "", false},
		{"a@x.fr\r\nBcc: b@y.fr", "", "", false},
		{"Name\n <a@x.fr>", "", "", false},
		{strings.Repeat("a", 65) + "@x.fr", "", "", false},
		{"a@" + strings.Repeat("x", 250) + ".fr", "", "", false},
	}
	for _, tt := range tests {
		a, err := ParseAddress(tt.in)
		if tt.ok != (err == nil) {
			t.Errorf("%q: err = %v", tt.in, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrAddress) {
				t.Errorf("%q: %v does not wrap ErrAddress", tt.in, err)
			}
			continue
		}
		if a.Name != tt.name || a.Addr != tt.addr {
			t.Errorf("%q: got %+v", tt.in, a)
		}
		back, err := ParseAddress(a.String())
		if err != nil || back != a {
			t.Errorf("%q: String round trip %q -> %+v %v", tt.in, a.String(), back, err)
		}
	}
}

func TestPatientAddress(t *testing.T) {
	p := samplePatient()
	a, err := PatientAddress(p)
	if err != nil || a.Addr != "279035121518989@patient.mssante.fr" || !a.IsPatient() {
		t.Fatalf("%+v %v", a, err)
	}
	ins, err := PatientINS(a)
	if err != nil || ins.Value != p.INS.Value {
		t.Errorf("PatientINS: %+v %v", ins, err)
	}
	// The IG example.
	if ins, err := PatientINS(MustAddress("", "146026322000196@patient.mssante.fr")); err != nil || ins.Value != "146026322000196" {
		t.Errorf("IG example: %v", err)
	}
	if _, err := PatientINS(MustAddress("", "146026322000197@patient.mssante.fr")); !errors.Is(err, ErrINS) {
		t.Errorf("bad key accepted: %v", err)
	}
	if _, err := PatientINS(MustAddress("", "x@medecin.mssante.fr")); !errors.Is(err, ErrAddress) {
		t.Errorf("non-patient address: %v", err)
	}
	for name, mutate := range map[string]func(*Patient){
		"unqualified (no sex)": func(p *Patient) { p.Sex = "" },
		"no birth date":        func(p *Patient) { p.BirthDate = time.Time{} },
		"bad key":              func(p *Patient) { p.INS.Value = "279035121518988" },
		"NIA":                  func(p *Patient) { p.INS.OID = OIDINSNIATest },
	} {
		q := samplePatient()
		mutate(q)
		if _, err := PatientAddress(q); !errors.Is(err, ErrNotQualified) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := PatientAddress(nil); !errors.Is(err, ErrNotQualified) {
		t.Errorf("nil: %v", err)
	}
}

func TestBALType(t *testing.T) {
	for _, s := range []string{"PER", "org", " APP ", "CAB"} {
		if _, err := ParseBALType(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", "PERS", "XYZ"} {
		if _, err := ParseBALType(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"a@b.fr", "Dr X <x@y.mssante.fr>", "=?utf-8?q?=C3=A9?= <a@b.fr>", "\"a b\"@c.fr", "a@b.fr\r\nX: y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		if hasCtl(a.Addr) || hasCtl(a.Name) || a.Addr != strings.ToLower(a.Addr) {
			t.Fatalf("accepted %+v", a)
		}
		back, err := ParseAddress(a.String())
		if err != nil || back.Addr != a.Addr {
			t.Fatalf("round trip of %q: %+v %v", a.String(), back, err)
		}
	})
}

func FuzzParseINS(f *testing.F) {
	f.Add("279035121518989", OIDINSNIRTest)
	f.Add("185052A12345633", OIDINSNIR)
	f.Add("1 46 02 63 220 001 96", OIDINSNIR)
	f.Fuzz(func(t *testing.T, v, oid string) {
		ins, err := ParseINS(v, oid)
		if err != nil {
			return
		}
		key, err := NIRKey(ins.Value[:13])
		if err != nil || key != ins.Value[13:] || !ins.Valid() {
			t.Fatalf("accepted %q with key %q (%v)", ins.Value, key, err)
		}
	})
}

func FuzzParseNationalID(f *testing.F) {
	f.Add(OIDIdNatPS, "801234567897")
	f.Add(OIDIdNatStruct, "1750803447")
	f.Add(OIDIdNatPS, "3750803447/MED001")
	f.Fuzz(func(t *testing.T, oid, s string) {
		n, err := ParseNationalID(oid, s)
		if err != nil {
			return
		}
		if n.String() != strings.ToUpper(s) && n.String() != s {
			t.Fatalf("%q formatted back as %q", s, n.String())
		}
	})
}

// Errors may end up in logs: they must not carry an INS or a patient's name.
func TestErrorsCarryNoHealthData(t *testing.T) {
	_, err := ParseAddress("146026322000196@patient.mssante.fr, 279035121518989@patient.mssante.fr")
	if err == nil || strings.Contains(err.Error(), "146026322000196") || strings.Contains(err.Error(), "279035121518989") {
		t.Errorf("address error: %v", err)
	}
	m := sampleMessage()
	m.Subject = "autre sujet"
	_, err = m.WriteTo(&strings.Builder{}, nil)
	if err == nil || strings.Contains(strings.ToUpper(err.Error()), "PAT-TROIS") || strings.Contains(err.Error(), "Dominique") {
		t.Errorf("compose error: %v", err)
	}
	_, err = ReadMessage(strings.NewReader("From: a@b.fr\r\nTo: 146026322000196@patient.mssante.fr <\r\n\r\nx"), nil)
	if err == nil || strings.Contains(err.Error(), "146026322000196") {
		t.Errorf("read error: %v", err)
	}
}
