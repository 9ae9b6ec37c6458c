package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/queue"
)

// dialDeliverer delivers to the destination at *addr over TCP: a refused connection is an
// unreachable destination (451 4.4.1), a connection accepted is taken as a delivery.
func dialDeliverer(addr *atomic.Value) queue.Deliverer {
	return queue.DelivererFunc(func(ctx context.Context, j *queue.Job) []queue.Result {
		rs := make([]queue.Result, len(j.Rcpts))
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", addr.Load().(string))
		for i := range rs {
			if err != nil {
				rs[i] = queue.Result{Err: err, Status: "451 4.4.1 connection refused", Unreachable: true}
			} else {
				rs[i] = queue.Result{Status: "250 2.0.0 ok", RemoteMTA: "mx.dead.test"}
			}
		}
		if c != nil {
			c.Close()
		}
		return rs
	})
}

// The queue commands on the queue that the nodes of a cluster share in PostgreSQL ([store]
// backend = "postgres"): messages deferred by a node because their destination is dead are
// listed and shown with their last reply and never their content; hold, retry, delete and
// flush change the database, and the running node acts on them within seconds whatever the
// back-off says; every action is audited.
func TestQueueCommandsPostgres(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	conf := storeConfig(t, pg)
	cfg := []string{"--config", conf}
	ctx := context.Background()
	// A node of the cluster, delivering to a destination where nothing listens, whose retries
	// wait an hour.
	n1, err := queue.OpenPostgres(ctx, pg.DSN(), &queue.PostgresOptions{Node: "n1", Poll: 100 * time.Millisecond,
		Schedule: queue.Schedule{First: time.Hour, Max: 2 * time.Hour, SuspendAfter: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	var peer atomic.Value
	peer.Store(fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	enq := func(seq int, rcpt string) string {
		msg := fmt.Sprintf("From: <dr@a.test>\r\nTo: Jean Martin <%s>\r\nSubject: Compte rendu du patient\r\nX-Seq: %d\r\n\r\nCORPS SECRET\r\n", rcpt, seq)
		id, err := n1.Enqueue(ctx, &queue.Envelope{From: "dr@a.test", Source: "submission",
			Rcpts: []*queue.Recipient{{Addr: rcpt}}}, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a, b, c := enq(1, "x@dead.test"), enq(2, "1234567890123@patient.mssante.fr"), enq(3, "y@dead.test")
	rctx, stop := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); n1.Run(rctx, dialDeliverer(&peer), nil) }()
	defer func() { stop(); <-runDone }()
	waitUntil(t, "a failed attempt on each message", 20*time.Second, func() bool {
		ms, err := n1.Inspect(ctx)
		if err != nil || len(ms) != 3 {
			return false
		}
		for _, m := range ms {
			if m.Rcpts[0].Attempts == 0 || m.Node != "" {
				return false
			}
		}
		return true
	})

	code, objs, stderr := queueJSON(t, append([]string{"list"}, cfg...)...)
	if code != 0 || len(objs) != 3 {
		t.Fatalf("list: %d %v %s", code, objs, stderr)
	}
	rc := byID(objs, a)["rcpts"].([]any)[0].(map[string]any)
	if rc["state"] != "pending" || rc["attempts"].(float64) != 1 || rc["last_code"] != "451 4.4.1" || rc["addr"] != "x@dead.test" {
		t.Fatalf("list, deferred recipient: %v", rc)
	}
	if next, err := time.Parse(time.RFC3339, rc["next_attempt"].(string)); err != nil || time.Until(next) < 30*time.Minute {
		t.Fatalf("list, next attempt: %v %v", rc["next_attempt"], err)
	}
	if got := byID(objs, b)["rcpts"].([]any)[0].(map[string]any)["addr"]; got != "INS@patient.mssante.fr" {
		t.Fatalf("list shows a patient address as %v", got)
	}
	code, out, _ := runCmd(t, append([]string{"queue", "list"}, cfg...)...)
	if code != 0 || !strings.Contains(out, "-- 3 messages, 3 recipients pending, 0 held") || strings.Contains(out, "1234567890123") {
		t.Fatalf("list, text: %q", out)
	}
	code, objs, _ = queueJSON(t, append([]string{"show", a, "--headers"}, cfg...)...)
	line, _ := json.Marshal(objs)
	if code != 0 || len(objs) != 1 || strings.Contains(string(line), "Compte rendu") || strings.Contains(string(line), "CORPS") ||
		strings.Contains(string(line), "Jean Martin") {
		t.Fatalf("show: %d %s", code, line)
	}
	hs := map[string]map[string]any{}
	for _, h := range objs[0]["headers"].([]any) {
		hs[h.(map[string]any)["name"].(string)] = h.(map[string]any)
	}
	if hs["Subject"]["withheld"] != true || hs["To"]["value"] != "<x@dead.test>" || hs["X-Seq"]["withheld"] != true {
		t.Fatalf("show --headers: %v", hs)
	}
	if code, _, stderr := runCmd(t, append([]string{"queue", "show", "0000000000000-0000000000000000"}, cfg...)...); code != 1 ||
		!strings.Contains(stderr, "message not found") {
		t.Fatalf("show of an unknown ID: %d %q", code, stderr)
	}

	// The destinations come back; the node would wait an hour. A is held, B retried now, C
	// deleted: B alone is delivered, by the running node, within seconds.
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	peer.Store(sink.Addr().String())
	code, objs, stderr = queueJSON(t, append([]string{"hold", a}, cfg...)...)
	if code != 0 || len(objs) != 1 || objs[0]["outcome"] != "done" || objs[0]["via"] != "database" {
		t.Fatalf("hold: %d %v %s", code, objs, stderr)
	}
	start := time.Now()
	code, out, stderr = runCmd(t, append([]string{"queue", "retry", b}, cfg...)...)
	if code != 0 || out != b+": retry scheduled (by database)\n" {
		t.Fatalf("retry: %d %q %s", code, out, stderr)
	}
	code, out, stderr = runCmd(t, append([]string{"queue", "delete", c, "0000000000000-0000000000000000"}, cfg...)...)
	if code != 1 || !strings.Contains(out, c+": deleted (by database)") || !strings.Contains(stderr, "message not found") {
		t.Fatalf("delete: %d %q %q", code, out, stderr)
	}
	waitUntil(t, "the retried message delivered", 10*time.Second, func() bool { _, err := n1.Get(b); return err != nil })
	t.Logf("retry to delivery: %v (back-off 1h)", time.Since(start))
	code, objs, _ = queueJSON(t, append([]string{"list"}, cfg...)...)
	if code != 0 || len(objs) != 1 || objs[0]["id"] != a || objs[0]["held"] != true {
		t.Fatalf("list after hold, retry, delete: %v", objs)
	}

	// Flush leaves the held message alone, and lifts the suspension of dead.test (two
	// failures); released, A is flushed and delivered, which the suspension would have
	// deferred for an hour.
	if s := n1.Stats(); s.Suspended != 1 {
		t.Fatalf("Stats.Suspended = %d, want dead.test", s.Suspended)
	}
	code, out, _ = runCmd(t, append([]string{"queue", "flush"}, cfg...)...)
	if code != 0 || !strings.Contains(out, "-- flush: 0 messages, 1 held left alone, 1 destination suspensions lifted") {
		t.Fatalf("flush with only a held message: %d %q", code, out)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := n1.Get(a); err != nil {
		t.Fatalf("a held message was delivered: %v", err)
	}
	if code, out, _ = runCmd(t, append([]string{"queue", "release", a}, cfg...)...); code != 0 {
		t.Fatalf("release: %d %q", code, out)
	}
	code, objs, _ = queueJSON(t, append([]string{"flush"}, cfg...)...)
	if code != 0 || len(objs) != 1 || objs[0]["id"] != a || objs[0]["action"] != "flush" || objs[0]["via"] != "database" {
		t.Fatalf("flush: %d %v", code, objs)
	}
	waitUntil(t, "the flushed message delivered", 10*time.Second, func() bool { _, err := n1.Get(a); return err != nil })

	ab, err := os.ReadFile(filepath.Join(filepath.Dir(conf), "audit", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ab), "Compte rendu") || strings.Contains(string(ab), "CORPS") {
		t.Fatal("content in the audit log")
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(ab)), "\n") {
		var r audit.Record
		json.Unmarshal([]byte(l), &r)
		if !strings.Contains(r.Actor, fmt.Sprintf("uid %d", os.Getuid())) || r.Source != "admin" {
			t.Errorf("audit record without its actor: %s", l)
		}
		got = append(got, fmt.Sprintf("%s %s %s", r.Event, r.MsgID, r.Reason))
	}
	want := []string{"queue_held " + a + " done", "queue_retried " + b + " done", "queue_deleted " + c + " done",
		"queue_deleted 0000000000000-0000000000000000 not_found", "queue_released " + a + " done", "queue_retried " + a + " done"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Flush on the spool's files, no node running: every message not held is made due now, the
// held one keeps its schedule.
func TestQueueFlushSpool(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "serve.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`hostname = "mx.a.test"
domains = ["a.test"]
spool_dir = "%[1]s/spool"
[tls]
cert_file = "%[1]s/c.pem"
key_file = "%[1]s/k.pem"
[whitelist]
file = "%[1]s/w.xml"
[audit]
dir = "%[1]s/audit"
`, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(&queue.Options{Dir: filepath.Join(dir, "spool"), Schedule: queue.Schedule{First: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		id, err := q.Enqueue(context.Background(), &queue.Envelope{From: "dr@a.test", Rcpts: []*queue.Recipient{{Addr: "x@dead.test"}}},
			strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var peer atomic.Value
	peer.Store(fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	q.RunOnce(context.Background(), dialDeliverer(&peer), nil)
	q.Hold(ids[0])
	q.Close()
	code, objs, stderr := queueJSON(t, "flush", "--config", conf)
	if code != 0 || len(objs) != 2 || objs[0]["via"] != "spool" || objs[0]["outcome"] != "done" {
		t.Fatalf("flush: %d %v %s", code, objs, stderr)
	}
	for i, id := range ids {
		m, err := queue.InspectMessage(filepath.Join(dir, "spool"), id)
		if err != nil {
			t.Fatal(err)
		}
		if due := time.Until(m.Rcpts[0].NextAttempt) < time.Minute; due != (i > 0) {
			t.Errorf("message %d (held %v): next attempt %v", i, m.Held, m.Rcpts[0].NextAttempt)
		}
	}
}

// A database that does not answer (its server stopped with SIGSTOP) makes the queue commands
// fail after --timeout, never hang.
func TestQueuePostgresTimeout(t *testing.T) {
	pg := peers.StartPostgres(t, nil)
	conf := storeConfig(t, pg)
	if code, _, stderr := runCmd(t, "queue", "list", "--config", conf); code != 0 {
		t.Fatalf("list: %d %s", code, stderr)
	}
	b, err := os.ReadFile(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGSTOP)
	defer syscall.Kill(pid, syscall.SIGCONT)
	for _, args := range [][]string{{"list"}, {"hold", "0000000000000-0000000000000000"}, {"flush"}} {
		start := time.Now()
		code, _, stderr := runCmd(t, append(append([]string{"queue"}, args...), "--config", conf, "--timeout", "1s")...)
		if took := time.Since(start); code != 1 || took > 10*time.Second || !strings.Contains(stderr, "did not answer within --timeout") {
			t.Errorf("%v with the database stopped: exit %d after %v: %s", args, code, took, stderr)
		}
	}
}
