package node

import (
	"strings"
	"testing"
)

// The queue's leases carry the node's name, as "mssante queue list" shows it, and differ
// between two processes of one node.
func TestLeaseName(t *testing.T) {
	a, b := leaseName("mss-b"), leaseName("mss-b")
	if !strings.HasPrefix(a, "mss-b-") || a == b {
		t.Fatalf("lease names %q and %q", a, b)
	}
}
