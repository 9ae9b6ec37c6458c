package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/samplepdf"
	"github.com/mssante-go/sdk/internal/sandbox"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/mssante"
)

// buildBinary builds mssante into a temporary folder, for tests that need separate processes
// (flock(2) locks and the mailbox are what processes share, not memory).
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "mssante")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is one mssante command running as its own process.
type proc struct {
	cmd    *exec.Cmd
	out    *testenv.Buffer
	exited chan error
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), out: &testenv.Buffer{}, exited: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-p.exited:
			p.exited <- err
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// wait returns the exit error of p, failing the test when p runs past d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.exited:
		p.exited <- err
		return err
	case <-time.After(d):
		t.Fatalf("%v still running after %v:\n%s", p.cmd.Args, d, p.out.String())
		return nil
	}
}

// waitFor polls cond until it holds, failing the test after d with what p printed.
func waitFor(t *testing.T, p *proc, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case err := <-p.exited:
			p.exited <- err
			t.Fatalf("waiting for %s: %v exited (%v):\n%s", what, p.cmd.Args, err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v:\n%s", what, d, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastUID reads the receive checkpoint of a state folder: how far its watcher went.
func lastUID(state string) uint32 {
	var cp struct {
		LastUID uint32 `json:"last_uid"`
	}
	data, err := os.ReadFile(filepath.Join(state, "inbox", "checkpoint.json"))
	if err != nil || json.Unmarshal(data, &cp) != nil {
		return 0
	}
	return cp.LastUID
}

// The web tier sends, a daemon watches, each with its own state folder: the daemon meets the
// DSN of a message it did not send first, and must leave it in the mailbox, so that the
// sender, following its receipts later with its own state, still gets "delivered". Three
// processes.
func TestReceiptsReachTheSendingStateFolder(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sb := startSandbox(t, ctx, dir)
	work := t.TempDir()
	pdf := filepath.Join(work, "lettre.pdf")
	if err := os.WriteFile(pdf, samplepdf.Page("Lettre de liaison (test)"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpi, to := "dpi@"+sandbox.Hopital, "logiciel@"+sandbox.Cabinet
	daemonState, webState := filepath.Join(work, "daemon"), filepath.Join(work, "web")

	daemon := startProc(t, bin, "receive", "--sandbox", dir, "--mailbox", dpi, "--state", daemonState,
		"--for", "2m", "--poll", "1s")

	send := startProc(t, bin, "send", "--sandbox", dir, "--from", dpi, "--to", to, "--state", webState,
		"--pdf", pdf, "--ins", "279035121518989", "--ins-oid", mssante.OIDINSNIRTest, "--birth-name", "PAT-TROIS",
		"--given", "DOMINIQUE", "--birth-date", "1979-03-28", "--sex", "F", "--birth-place", "51215",
		"--author-id", "801234567897", "--author-family", "DAVID", "--author-given", "Charles",
		"--org-id", "1750803447", "--org-name", "Hôpital Exemple")
	if err := send.wait(t, time.Minute); err != nil {
		t.Fatalf("send: %v\n%s", err, send.out.String())
	}
	line, _, _ := strings.Cut(send.out.String(), "\n")
	msgID := strings.TrimSuffix(strings.TrimPrefix(line, "Message-ID <"), ">")
	if msgID == line || !strings.Contains(send.out.String(), "accepted") {
		t.Fatalf("send printed:\n%s", send.out.String())
	}

	// The DSN reaches the BAL, and the daemon passes over it.
	if _, err := sb.Info.WaitFor(ctx, dpi, func(raw []byte) bool {
		return strings.Contains(string(raw), "delivery-status") && strings.Contains(string(raw), msgID)
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, daemon, time.Minute, "the daemon to pass over the DSN", func() bool { return lastUID(daemonState) >= 1 })

	// The web tier follows its receipts alone: --receipts-only leaves the rest to the daemon.
	collect := startProc(t, bin, "receive", "--sandbox", dir, "--mailbox", dpi, "--state", webState,
		"--receipts-only", "--count", "1", "--for", "50s", "--poll", "1s")
	if err := collect.wait(t, time.Minute); err != nil {
		t.Fatalf("watch with the sender's state: %v\n%s", err, collect.out.String())
	}
	want := "receipt <" + msgID + "> " + to + ": delivered"
	if !strings.Contains(collect.out.String(), want) {
		t.Errorf("watch with the sender's state printed no %q:\n%s\ndaemon:\n%s", want, collect.out.String(), daemon.out.String())
	}
	if strings.Contains(daemon.out.String(), "receipt <") {
		t.Errorf("the daemon reported a receipt of a message it did not send:\n%s", daemon.out.String())
	}
	daemon.cmd.Process.Signal(os.Interrupt)
	if err := daemon.wait(t, time.Minute); err != nil {
		t.Errorf("daemon: %v\n%s", err, daemon.out.String())
	}
}

// One process per state folder: a second one, sending or watching, is refused at once with
// the PID of the holder, before touching the outbox or the mailbox.
func TestStateFolderLockedAgainstSecondProcess(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startSandbox(t, ctx, dir)
	dpi := "dpi@" + sandbox.Hopital
	state := filepath.Join(t.TempDir(), "state")
	first := startProc(t, bin, "receive", "--sandbox", dir, "--mailbox", dpi, "--state", state, "--for", "2m", "--poll", "1s")
	want := "in use by process " + strconv.Itoa(first.cmd.Process.Pid)
	waitFor(t, first, time.Minute, "the first watcher to hold the folder", func() bool {
		b, _ := os.ReadFile(filepath.Join(state, "bal.lock"))
		return strings.TrimSpace(string(b)) == strconv.Itoa(first.cmd.Process.Pid)
	})
	pdf := filepath.Join(t.TempDir(), "x.pdf")
	os.WriteFile(pdf, samplepdf.Page("x"), 0o600)
	for _, args := range [][]string{
		{"receive", "--sandbox", dir, "--mailbox", dpi, "--state", state, "--for", "5s"},
		{"send", "--sandbox", dir, "--from", dpi, "--to", "logiciel@" + sandbox.Cabinet, "--state", state,
			"--pdf", pdf, "--ins", "279035121518989", "--ins-oid", mssante.OIDINSNIRTest, "--birth-name", "X",
			"--given", "Y", "--birth-date", "1979-03-28", "--sex", "F", "--birth-place", "51215",
			"--author-id", "801234567897", "--author-family", "Z", "--author-given", "W",
			"--org-id", "1750803447", "--org-name", "O"},
	} {
		second := startProc(t, bin, args...)
		err := second.wait(t, 30*time.Second)
		if err == nil || !strings.Contains(second.out.String(), want) {
			t.Errorf("second %s on the same state folder: %v, want refused with %q:\n%s", args[0], err, want, second.out.String())
		}
		if strings.Contains(second.out.String(), "Message-ID") {
			t.Errorf("second send on a held state folder sent:\n%s", second.out.String())
		}
	}
	first.cmd.Process.Signal(os.Interrupt)
	if err := first.wait(t, time.Minute); err != nil {
		t.Errorf("first: %v\n%s", err, first.out.String())
	}
}
