package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A test binary killed (a timeout's SIGQUIT, a SIGKILL, a crash) runs no t.Cleanup: its
// PostgreSQL server would outlive it, holding memory and a folder. Two guards: on Linux the
// server gets a signal when the test binary dies (startWithParent), and every StartPostgres
// first stops the servers and removes the folders that dead test binaries left (sweepOrphans),
// whatever stopped the first guard.

// ownerFile, in a cluster's folder, names the test process that owns it: its PID and start
// time (a PID alone may be reused by another process).
const ownerFile = "owner"

// processStart returns the start time of process pid in clock ticks since boot, from
// /proc ("" when the process is gone or /proc is absent).
func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	// After "pid (comm)": state is field 3, starttime field 22.
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// writeOwner records this process as the owner of the cluster folder dir.
func writeOwner(dir string) error {
	pid := os.Getpid()
	return os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", pid, processStart(pid))), 0o644)
}

// orphaned reports whether the cluster folder dir belongs to a test process that has ended.
// A folder without an owner file is not ours to judge.
func orphaned(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	return processStart(pid) != f[1]
}

// sweepOrphans stops the servers of the cluster folders under the temporary folder whose
// owners have ended, and removes those folders.
func sweepOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pg*"))
	for _, d := range dirs {
		if !orphaned(d) {
			continue
		}
		stopStale(filepath.Join(d, "data"))
		os.RemoveAll(d)
	}
}

// stopStale stops the postmaster named by the postmaster.pid of data, if it still runs
// there: an immediate shutdown (SIGQUIT), then SIGKILL after 10 s.
func stopStale(data string) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return
	}
	lines := strings.SplitN(string(b), "\n", 3)
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 || len(lines) < 2 {
		return
	}
	// The PID may have been reused since: only a process started in this data folder is
	// stopped (its command line names it).
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), strings.TrimSpace(lines[1])) {
		return
	}
	children := childrenOf(pid)
	syscall.Kill(pid, syscall.SIGQUIT)
	for deadline := time.Now().Add(10 * time.Second); processStart(pid) != ""; {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitGone(children)
}
