// Package luhn computes the Luhn (ISO/IEC 7812-1 annex B) check digit that RPPS, FINESS, SIREN
// and SIRET numbers end with.
package luhn

import "errors"

// Valid reports whether the decimal digits s pass the Luhn check. s must hold only digits.
func Valid(s string) bool {
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// Digit returns the check digit that makes digits+digit pass the Luhn check.
func Digit(digits string) (byte, error) {
	if digits == "" {
		return 0, errors.New("luhn: input is not all digits")
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, errors.New("luhn: input is not all digits")
		}
	}
	for d := byte('0'); d <= '9'; d++ {
		if Valid(digits + string(d)) {
			return d, nil
		}
	}
	panic("unreachable")
}
