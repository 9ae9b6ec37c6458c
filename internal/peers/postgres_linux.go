package peers

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// starter runs the functions sent to it on one OS thread that lives as long as the process:
// the parent-death signal is sent when the thread that forked the child ends, not the
// process, and the Go runtime may end a thread that a goroutine left locked.
var starter = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: this thread is not given back
		for f := range ch {
			f()
		}
	}()
	return ch
})

// startWithParent starts cmd so that the kernel sends it SIGINT (PostgreSQL's fast shutdown)
// when this process ends, however it ends.
func startWithParent(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	errc := make(chan error, 1)
	starter() <- func() { errc <- cmd.Start() }
	return <-errc
}
