package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/statelock"
)

// The sandbox folder is the state folder of "mssante dev". Every command that reads it takes
// it with the same flag and the same default, so that after "mssante dev" in a folder, the
// other commands run bare in that folder find it.
const (
	sandboxFlag  = "sandbox"
	sandboxUsage = "sandbox folder of \"mssante dev\" (default $XDG_STATE_HOME/mssante/dev when XDG_STATE_HOME is set, else ./mssante-dev)"
)

// defaultDevState is the sandbox folder when none is given.
func defaultDevState() string {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "mssante", "dev")
	}
	return "mssante-dev"
}

// sandboxFlags registers --sandbox on fs, and oldName (when not empty) as its former name,
// both into dir.
func sandboxFlags(fs *flag.FlagSet, dir *string, oldName string) {
	fs.StringVar(dir, sandboxFlag, "", sandboxUsage)
	if oldName != "" {
		fs.StringVar(dir, oldName, "", "old name of --"+sandboxFlag)
	}
}

// loadSandbox reads the description of the trust space in dir, with a message that says what
// to do when there is none.
func loadSandbox(dir string) (*sandbox.Info, error) {
	if _, err := os.Stat(filepath.Join(dir, sandbox.InfoFile)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no trust space in %s: start one with \"mssante dev --sandbox %s\", or give the folder of a running one with --sandbox DIR", dir, dir)
	}
	return sandbox.Load(dir)
}

// sandboxBALs lists the addresses of the BALs of a trust space, for a message.
func sandboxBALs(info *sandbox.Info) string {
	var a []string
	for _, op := range info.Operators {
		for _, b := range op.BALs {
			a = append(a, b.Address)
		}
	}
	return strings.Join(a, ", ")
}

// devLockName is the lock file of a sandbox folder; it holds the PID of the "mssante dev" that
// uses the folder.
const devLockName = "dev.lock"

// lockDevState takes the sandbox folder dir for this process, so that a second "mssante dev"
// does not start a second trust space over the same mailboxes and spool.
func lockDevState(dir string) (unlock func(), err error) {
	unlock, err = statelock.Lock(dir, devLockName)
	var le *statelock.LockedError
	if errors.As(err, &le) {
		holder := "another process"
		if le.PID > 0 {
			holder = fmt.Sprintf("process %d", le.PID)
		}
		return nil, fmt.Errorf("the sandbox folder %s is in use by %s (another \"mssante dev\"): stop it, or give another folder with --%s DIR",
			dir, holder, sandboxFlag)
	}
	return unlock, err
}
