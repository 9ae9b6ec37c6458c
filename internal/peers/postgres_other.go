//go:build !linux

package peers

import "os/exec"

// startWithParent starts cmd; without a parent-death signal, a server left by a killed test
// binary is stopped by the next StartPostgres (sweepOrphans).
func startWithParent(cmd *exec.Cmd) error { return cmd.Start() }
