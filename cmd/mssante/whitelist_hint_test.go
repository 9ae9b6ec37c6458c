package main

import (
	"strings"
	"testing"
)

// A list refused because its signer has expired since says which flag verifies it.
func TestWhitelistExpiredSignerHint(t *testing.T) {
	f := realWhitelist(t)
	code, _, errs := wlRun(t, "", "whitelist", "verify", "--at", "2026-11-28", f)
	if code != 1 || !strings.Contains(errs, "add --list-date") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("exit %d, %q", code, errs)
	}
}
