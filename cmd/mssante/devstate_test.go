package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/testenv"
)

// devProcess is "mssante dev" running as its own process, from the built binary.
type devProcess struct {
	cmd    *exec.Cmd
	out    *testenv.Buffer
	exited chan error
}

func startDevProcess(t *testing.T, bin, work string, environ []string) *devProcess {
	t.Helper()
	d := &devProcess{cmd: exec.Command(bin, "dev"), out: &testenv.Buffer{}, exited: make(chan error, 1)}
	d.cmd.Dir, d.cmd.Env = work, environ
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// waitReady waits for "Ready.", or for the process to exit (returned).
func (d *devProcess) waitReady(t *testing.T) (exited bool, err error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(d.out.String(), "Ready.") {
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", d.out.String())
		}
		select {
		case err := <-d.exited:
			d.exited <- err
			return true, err
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false, nil
}

// One "mssante dev" per sandbox folder: a second one is refused with the PID of the first; a
// lock left by a killed one is taken over. Meanwhile the other commands, run bare in the same
// folder, find the trust space by the shared default.
func TestDevStateLockAndDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mssante")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work := t.TempDir()
	environ := append(os.Environ(), "XDG_STATE_HOME=")
	first := startDevProcess(t, bin, work, environ)
	if exited, err := first.waitReady(t); exited {
		t.Fatalf("first: exited %v\n%s", err, first.out.String())
	}

	second := startDevProcess(t, bin, work, environ)
	exited, err := second.waitReady(t)
	want := fmt.Sprintf("is in use by process %d", first.cmd.Process.Pid)
	if !exited || err == nil || !strings.Contains(second.out.String(), want) || strings.Contains(second.out.String(), "starting") {
		t.Fatalf("second mssante dev on the same folder: exited %v (%v), want refused with %q:\n%s", exited, err, want, second.out.String())
	}

	for _, args := range [][]string{{"selftest"}, {"doctor", "--domain", "hopital.dev.mssante.fr"}} {
		c := exec.Command(bin, args...)
		c.Dir, c.Env = work, environ
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("bare %v in the folder of mssante dev: %v\n%s", args, err, out)
		}
	}

	first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.exited
	first.exited <- nil
	third := startDevProcess(t, bin, work, environ)
	if exited, err := third.waitReady(t); exited {
		t.Fatalf("after kill -9 of the holder: exited %v\n%s", err, third.out.String())
	}
	third.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-third.exited:
		third.exited <- err
		if err != nil {
			t.Fatalf("after SIGINT: %v\n%s", err, third.out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("no stop within a minute of SIGINT")
	}
}
