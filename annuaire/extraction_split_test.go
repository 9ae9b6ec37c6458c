package annuaire

import (
	"strings"
	"testing"
)

// TestSplitNoFalseSeparator: a '}' (0x7D) just after a '|' in the same eight bytes was once
// taken for a separator by the eight-bytes-at-a-time split.
func TestSplitNoFalseSeparator(t *testing.T) {
	cols := make([]string, NumColumns)
	for i := range cols {
		cols[i] = "}"
	}
	cols[ColType], cols[ColAddress], cols[ColCountry] = "PER", "a}b@x.fr", "FRANCE"
	line := strings.Join(cols, "|")
	f, err := ParseLine(line)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f {
		if f[i] != cols[i] {
			t.Fatalf("field %d = %q, want %q", i, f[i], cols[i])
		}
	}
	x := loadText(t, HeaderLine+"\n"+line+"\n")
	if got := x.Lookup(nil, "A}B@X.FR"); len(got) != 1 || got[0].Postal.Country != "FRANCE" || got[0].Structure.Service != "}" {
		t.Fatalf("Lookup = %+v", got)
	}
}
