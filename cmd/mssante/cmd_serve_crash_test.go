package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestServeHelperProcess is the serve process that TestServeCrash kills; it does nothing in a
// normal test run.
func TestServeHelperProcess(t *testing.T) {
	cfg := os.Getenv("MSSANTE_SERVE_HELPER")
	if cfg == "" {
		t.Skip("helper process of TestServeCrash")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, []string{"serve", "--config", cfg}, &env{stdout: os.Stdout, stderr: os.Stderr}))
}

// Crash test: under load from 4 relay clients, the serve process is killed with SIGKILL three
// times; after the last restart every message that got a 250 is delivered, and none twice.
func TestServeCrash(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	logf, _ := os.Create(f.dir + "/serve.log")
	defer logf.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
		cmd.Env = append(os.Environ(), "MSSANTE_SERVE_HELPER="+f.config)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	var (
		mu     sync.Mutex
		acked  = map[int]bool{}
		seq    atomic.Int64
		stop   atomic.Bool
		nAcked atomic.Int64
		wg     sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c, err := f.relayClient()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				for !stop.Load() {
					n := int(seq.Add(1))
					if err := sendOne(c, n); err != nil {
						break // killed, or refused: not acknowledged, so not counted
					}
					mu.Lock()
					acked[n] = true
					mu.Unlock()
					nAcked.Add(1)
				}
				c.Close()
			}
		}()
	}
	const kills = 3
	cmd := start()
	for k := 1; k <= kills; k++ {
		target := int64(k * 150)
		waitUntil(t, "acknowledged messages", 120*time.Second, func() bool { return nAcked.Load() >= target })
		cmd.Process.Kill() // SIGKILL: no shutdown, no flush
		cmd.Wait()
		cmd = start()
	}
	waitUntil(t, "more messages after the last restart", 120*time.Second, func() bool { return nAcked.Load() >= kills*150+50 })
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	total := len(acked)
	mu.Unlock()
	waitUntil(t, "every acknowledged message delivered", 120*time.Second, func() bool {
		d := f.delivered(t)
		for n := range acked {
			if d[n] == 0 {
				return false
			}
		}
		return true
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	d := f.delivered(t)
	dups, unacked := 0, 0
	for n, k := range d {
		if k > 1 {
			dups++
		}
		if !acked[n] {
			unacked++ // the 250 was lost with the kill: the sender would send it again
		}
	}
	// Deliveries attempted twice (the crash came between the mailbox write and the queue's
	// state update): the audit log shows them, the idempotent mailbox absorbed them.
	repeated := 0
	if b, err := os.ReadFile(filepath.Join(f.dir, "audit", "audit.jsonl")); err == nil {
		seen := map[string]int{}
		for _, line := range strings.Split(string(b), "\n") {
			var r struct{ Event, MsgID string }
			if json.Unmarshal([]byte(line), &r) == nil && r.Event == "delivered" {
				if seen[r.MsgID]++; seen[r.MsgID] == 2 {
					repeated++
				}
			}
		}
	}
	t.Logf("crash test: %d kills, %d messages acknowledged with 250, %d delivered, %d delivered twice, "+
		"%d delivered without a 250 seen by the client, %d deliveries repeated after a kill and absorbed by the idempotent mailbox",
		kills, total, len(d), dups, unacked, repeated)
	if dups != 0 {
		t.Fatalf("%d messages delivered twice", dups)
	}
}
