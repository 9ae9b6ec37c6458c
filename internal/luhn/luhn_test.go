package luhn

import "testing"

func TestDigit(t *testing.T) {
	for in, want := range map[string]byte{"1000345678": '6', "75080344": '7', "7328293200007": '4'} {
		d, err := Digit(in)
		if err != nil || d != want {
			t.Errorf("Digit(%s) = %c, %v; want %c", in, d, err, want)
		}
		if !Valid(in + string(want)) {
			t.Errorf("Valid(%s%c) = false", in, want)
		}
	}
	if _, err := Digit("12a"); err == nil {
		t.Error("non-digits accepted")
	}
}
