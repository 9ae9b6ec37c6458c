//go:build !unix

package main

import "os"

// flockExclusive does not lock where flock(2) is not available: two "mssante dev" on the same
// folder are then the user's to avoid.
func flockExclusive(*os.File) error { return nil }
