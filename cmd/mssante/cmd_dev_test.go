package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
)

// runningDev is "mssante dev" running in the background of a test.
type runningDev struct {
	out, errb *testenv.Buffer
	stop      context.CancelFunc
	done      chan int
	stopped   bool
}

func startDev(t *testing.T, args ...string) *runningDev {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &runningDev{out: &testenv.Buffer{}, errb: &testenv.Buffer{}, stop: cancel, done: make(chan int, 1)}
	go func() {
		d.done <- run(ctx, append([]string{"dev"}, args...), &env{stdin: strings.NewReader(""), stdout: d.out, stderr: d.errb})
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(d.out.String(), "Ready.") {
		select {
		case code := <-d.done:
			cancel()
			t.Fatalf("mssante dev exited %d before it was ready:\n%s\n%s", code, d.out, d.errb)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("mssante dev not ready:\n%s\n%s", d.out, d.errb)
		}
	}
	t.Cleanup(func() { d.interrupt(t) })
	return d
}

// interrupt is Ctrl-C: the command must stop cleanly and exit 0.
func (d *runningDev) interrupt(t *testing.T) {
	t.Helper()
	if d.stopped {
		return
	}
	d.stopped = true
	d.stop()
	select {
	case code := <-d.done:
		if code != 0 {
			t.Errorf("mssante dev exited %d after Ctrl-C:\n%s", code, d.errb)
		}
	case <-time.After(time.Minute):
		t.Fatal("mssante dev did not stop within a minute of Ctrl-C")
	}
}

// tryCommands returns the command lines printed under "Try", without the program name.
func tryCommands(t *testing.T, out string) [][]string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "Try, in another terminal")
	if !ok {
		t.Fatalf("no commands printed:\n%s", out)
	}
	var cmds [][]string
	for _, line := range strings.Split(rest, "\n")[1:] {
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		for _, prog := range []string{"go run ./cmd/mssante ", "mssante "} {
			if strings.HasPrefix(line, prog) {
				cmds = append(cmds, strings.Fields(strings.TrimPrefix(line, prog)))
				break
			}
		}
	}
	return cmds
}

// The README's main command: the trust space comes up, prints its endpoints and BALs, and the
// three commands it prints work as printed; Ctrl-C stops it; a restart keeps its state.
func TestDevCommandsWorkAsPrinted(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	d := startDev(t, "--state", state)
	out := d.out.String()
	for _, want := range []string{
		"Operator hopital (hopital.dev.mssante.fr)", "Operator cabinet (cabinet.dev.mssante.fr, test.dev.mssante.fr)",
		"BAL APP dpi@hopital.dev.mssante.fr", "BAL PER jean.dupont@hopital.dev.mssante.fr", "BAL ORG accueil@cabinet.dev.mssante.fr",
		"Responder    reponse.automatique@test.dev.mssante.fr", "Whitelist    https://127.0.0.1:",
		filepath.Join(state, "hopital", "bal", "dpi.crt.pem"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	cmds := tryCommands(t, out)
	if len(cmds) != 3 {
		t.Fatalf("want 3 commands, got %q", cmds)
	}
	info, err := sandbox.Load(state)
	if err != nil {
		t.Fatal(err)
	}
	wants := map[string]string{
		"selftest": "selftest passed",
		"send":     "marie.durand@cabinet.dev.mssante.fr      accepted (250",
		"annuaire": "marie.durand@cabinet.dev.mssante.fr",
	}
	for _, args := range cmds {
		var o, eb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		code := run(ctx, args, &env{stdin: strings.NewReader(""), stdout: &o, stderr: &eb})
		cancel()
		if code != 0 {
			t.Fatalf("%q: exit %d\n%s\n%s", args, code, o.String(), eb.String())
		}
		if want := wants[args[0]]; want == "" || !strings.Contains(o.String(), want) {
			t.Fatalf("%q: output lacks %q:\n%s", args, want, o.String())
		}
	}
	// The lettre de liaison sent by the second command is in the recipient's mailbox.
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	_, err = info.WaitFor(wctx, "marie.durand@"+sandbox.Cabinet, func(raw []byte) bool { return bytes.Contains(raw, []byte("IHE_XDM.ZIP")) })
	wcancel()
	if err != nil {
		t.Fatalf("the lettre de liaison did not arrive: %v", err)
	}
	balCert, err := os.ReadFile(filepath.Join(state, "hopital", "bal", "dpi.crt.pem"))
	if err != nil {
		t.Fatal(err)
	}
	d.interrupt(t)
	if !strings.Contains(d.out.String(), "mssante dev: stopped") {
		t.Fatalf("no clean stop:\n%s", d.out.String())
	}

	// Restart: same certificates, the messages of the first run still there, and the printed
	// commands still work.
	d2 := startDev(t, "--state", state)
	again, _ := os.ReadFile(filepath.Join(state, "hopital", "bal", "dpi.crt.pem"))
	if !bytes.Equal(balCert, again) {
		t.Fatal("restart re-issued the BAL certificate")
	}
	info2, _ := sandbox.Load(state)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msgs, err := info2.Messages(ctx, "dpi@"+sandbox.Hopital)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("the responder's answer of the first run is gone: %d messages, %v", len(msgs), err)
	}
	var o bytes.Buffer
	if code := run(ctx, tryCommands(t, d2.out.String())[0], &env{stdout: &o, stderr: &o}); code != 0 {
		t.Fatalf("selftest after restart: %d\n%s", code, o.String())
	}
}

func TestDevUsage(t *testing.T) {
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	if code := run(context.Background(), []string{"dev", "extra-arg"}, e); code != 2 {
		t.Fatalf("extra argument: exit %d, want 2", code)
	}
	if code := run(context.Background(), []string{"dev", "--bogus"}, e); code != 2 {
		t.Fatalf("unknown flag: exit %d, want 2", code)
	}
	t.Setenv("XDG_STATE_HOME", "/x")
	if got := defaultDevState(); got != "/x/mssante/dev" {
		t.Fatal(got)
	}
}

// The README's first command as a user runs it: the built binary, on the PATH, in its own
// process; the printed commands run through a shell exactly as printed; SIGINT stops it.
func TestDevBinaryCommandsAsPrinted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	sh := testenv.Require(t, "sh")
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "mssante"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work := t.TempDir()
	environ := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "XDG_STATE_HOME=")
	dev := exec.Command(filepath.Join(bin, "mssante"), "dev")
	dev.Dir, dev.Env = work, environ
	out := &testenv.Buffer{}
	dev.Stdout, dev.Stderr = out, out
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- dev.Wait() }()
	waited := false
	defer func() {
		if !waited {
			dev.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "Ready.") {
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", out.String())
		}
		select {
		case err := <-exited:
			waited = true
			t.Fatalf("exited: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	_, rest, _ := strings.Cut(out.String(), "Try, in another terminal")
	var lines []string
	for _, l := range strings.Split(rest, "\n")[1:] {
		if l = strings.TrimSpace(l); l == "" {
			break
		}
		lines = append(lines, l)
	}
	if len(lines) != 3 {
		t.Fatalf("want 3 commands:\n%s", out.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "mssante ") {
			t.Fatalf("the binary is on the PATH, yet the command is %q", l)
		}
		c := exec.Command(sh, "-c", l)
		c.Dir, c.Env = work, environ
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", l, err, b)
		}
	}
	dev.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		waited = true
		if err != nil || !strings.Contains(out.String(), "mssante dev: stopped") {
			t.Fatalf("after SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("no stop within a minute of SIGINT")
	}
	if _, err := os.Stat(filepath.Join(work, "mssante-dev", "sandbox.json")); err != nil {
		t.Fatalf("default state folder: %v", err)
	}
}
