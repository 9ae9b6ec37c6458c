package postcode

import "testing"

func TestDepartement(t *testing.T) {
	for cp, want := range map[string]string{"40107": "40", "97405": "974", "98800": "988", "20000": "2A", "20199": "2A",
		"20250": "2B", "2A000": "", "401": "", "401070": ""} {
		if got := Departement(cp); got != want {
			t.Errorf("Departement(%q) = %q, want %q", cp, got, want)
		}
	}
}
