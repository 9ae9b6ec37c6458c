//go:build !unix

package statelock

import "os"

// Flock does not lock where flock(2) is not available: two processes on the same folder are
// then the user's to avoid.
func Flock(*os.File, bool) error { return nil }

// flockProbe finds no holder where flock(2) is not available.
func flockProbe(*os.File) error { return nil }
