package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/audit"
	"github.com/mssante-go/sdk/transport/queue"
)

// queueJSON runs a queue command with --json and returns its lines as objects.
func queueJSON(t *testing.T, args ...string) (int, []map[string]any, string) {
	t.Helper()
	code, out, stderr := runCmd(t, append([]string{"queue"}, append(args, "--json")...)...)
	var objs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("queue %v: not JSON lines: %q", args, out)
		}
		objs = append(objs, m)
	}
	return code, objs, stderr
}

func byID(objs []map[string]any, id string) map[string]any {
	for _, o := range objs {
		if o["id"] == id {
			return o
		}
	}
	return nil
}

// The queue commands on a real spool, with and without a node running: a held message is
// not delivered until released, a retry delivers a deferred message at once, a delete is
// silent, and every action is audited with the OS account and never the content.
func TestQueueCommands(t *testing.T) {
	f := newServeFixture(t, t.TempDir())
	b, _ := os.ReadFile(f.config)
	conf := strings.Replace(string(b), "retry_first = \"100ms\"\nretry_max = \"500ms\"", "retry_first = \"1h\"\nretry_max = \"2h\"", 1)
	conf = strings.Replace(conf, "[submission]\n", "[auth]\nallow_passwords = true\n[submission]\nallow_plain = true\n", 1)
	// The peer operator's MX: a port where nothing listens.
	conf += fmt.Sprintf("[delivery]\nroutes = { %q = \"127.0.0.1:%d\" }\n", peerDomain, testenv.FreePort(t))
	if conf == string(b) || os.WriteFile(f.config, []byte(conf), 0o600) != nil {
		t.Fatal("fixture configuration changed: no [queue] retry settings to replace")
	}
	cfg := []string{"--config", f.config}

	// Before the node starts: A due now, C deferred for an hour after a failure.
	q, err := queue.Open(&queue.Options{Dir: f.spool, Schedule: queue.Schedule{First: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	enq := func(seq int) string {
		msg := fmt.Sprintf("From: <dr@%s>\r\nTo: <dr@%s>\r\nSubject: Compte rendu du patient\r\nX-Seq: %d\r\n\r\nCORPS SECRET\r\n", ourDomain, ourDomain, seq)
		id, err := q.Enqueue(context.Background(), &queue.Envelope{From: "dr@" + ourDomain, Source: "submission",
			Rcpts: []*queue.Recipient{{Addr: "dr@" + ourDomain}}}, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a, c := enq(1), enq(2)
	q.Hold(a) // only C is attempted below
	q.RunOnce(context.Background(), queue.DelivererFunc(func(context.Context, *queue.Job) []queue.Result {
		return []queue.Result{{Err: errors.New("busy"), Status: "451 4.3.0 mailbox busy"}}
	}), nil)
	q.Release(a)
	q.Close()

	// No node: hold works on the files.
	code, objs, stderr := queueJSON(t, append([]string{"hold", a}, cfg...)...)
	if code != 0 || len(objs) != 1 || objs[0]["outcome"] != "done" || objs[0]["via"] != "spool" {
		t.Fatalf("hold without a node: %d %v %s", code, objs, stderr)
	}
	code, objs, stderr = queueJSON(t, append([]string{"list"}, cfg...)...)
	if code != 0 || len(objs) != 2 {
		t.Fatalf("list: %d %v %s", code, objs, stderr)
	}
	if m := byID(objs, a); m == nil || m["held"] != true || m["from"] != "dr@"+ourDomain || m["size"].(float64) == 0 {
		t.Fatalf("list, held message: %v", m)
	}
	rc := byID(objs, c)["rcpts"].([]any)[0].(map[string]any)
	if rc["state"] != "pending" || rc["attempts"].(float64) != 1 || rc["last_code"] != "451 4.3.0" || rc["addr"] != "dr@"+ourDomain {
		t.Fatalf("list, deferred recipient: %v", rc)
	}
	if next, err := time.Parse(time.RFC3339, rc["next_attempt"].(string)); err != nil || time.Until(next) < 30*time.Minute {
		t.Fatalf("list, next attempt: %v %v", rc["next_attempt"], err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", f.config}, &env{stdout: io.Discard, stderr: &errb})
	}()
	// A message for the unreachable operator, submitted to the running node.
	u := submitUnreachable(t, f)
	waitUntil(t, "a failed attempt to the unreachable operator", 20*time.Second, func() bool {
		m, err := queue.InspectMessage(f.spool, u)
		return err == nil && m.Rcpts[0].Attempts > 0
	})
	code, objs, _ = queueJSON(t, append([]string{"show", u, "--headers"}, cfg...)...)
	if code != 0 || len(objs) != 1 {
		t.Fatalf("show: %d %v", code, objs)
	}
	line, _ := json.Marshal(objs[0])
	if strings.Contains(string(line), "Compte rendu") || strings.Contains(string(line), "CORPS") {
		t.Fatalf("show printed the subject or the body: %s", line)
	}
	rc = objs[0]["rcpts"].([]any)[0].(map[string]any)
	if rc["addr"] != "x@"+peerDomain || rc["state"] != "pending" || !strings.HasPrefix(rc["last_code"].(string), "4") || rc["last_status"] == "" {
		t.Fatalf("show, unreachable recipient: %v", rc)
	}
	hs := map[string]map[string]any{}
	for _, h := range objs[0]["headers"].([]any) {
		hs[h.(map[string]any)["name"].(string)] = h.(map[string]any)
	}
	if hs["Subject"]["withheld"] != true || hs["To"]["value"] != "<x@"+peerDomain+">" {
		t.Fatalf("show --headers: %v", hs)
	}
	_, out, _ := runCmd(t, append([]string{"queue", "show", u, "--headers"}, cfg...)...)
	if !strings.Contains(out, "Subject: (withheld)") || strings.Contains(out, "Compte rendu") || strings.Contains(out, "CORPS") {
		t.Fatalf("show --headers, text: %s", out)
	}

	// The node runs: A stays held, C waits for its hour.
	time.Sleep(1500 * time.Millisecond)
	if got := f.delivered(t); len(got) != 0 {
		t.Fatalf("delivered while held or deferred: %v", got)
	}
	code, objs, stderr = queueJSON(t, append([]string{"release", a}, cfg...)...)
	if code != 0 || objs[0]["outcome"] != "done" || objs[0]["via"] != "serve" {
		t.Fatalf("release through serve: %d %v %s", code, objs, stderr)
	}
	waitUntil(t, "the released message delivered", 10*time.Second, func() bool { return f.delivered(t)[1] == 1 })
	start := time.Now()
	code, objs, stderr = queueJSON(t, append([]string{"retry", c}, cfg...)...)
	if code != 0 || objs[0]["outcome"] != "done" || objs[0]["via"] != "serve" {
		t.Fatalf("retry through serve: %d %v %s", code, objs, stderr)
	}
	waitUntil(t, "the retried message delivered", 10*time.Second, func() bool { return f.delivered(t)[2] == 1 })
	t.Logf("retry to delivery: %s", time.Since(start))

	// Flush through serve: the one message left, for the unreachable operator (which serve
	// may be attempting at that moment).
	code, objs, stderr = queueJSON(t, append([]string{"flush"}, cfg...)...)
	if code != 0 || len(objs) != 1 || objs[0]["id"] != u || objs[0]["via"] != "serve" || objs[0]["action"] != "flush" {
		t.Fatalf("flush through serve: %d %v %s", code, objs, stderr)
	}
	flushOutcome := objs[0]["outcome"].(string)
	if flushOutcome == "done" { // attempted again at once; its attempt over before the delete
		waitUntil(t, "the flushed message attempted", 10*time.Second, func() bool {
			m, err := queue.InspectMessage(f.spool, u)
			return err == nil && m.Rcpts[0].Attempts > 1
		})
		time.Sleep(200 * time.Millisecond)
	}
	code, out, stderr = runCmd(t, append([]string{"queue", "delete", u, "0000000000000-0000000000000000"}, cfg...)...)
	if code != 1 || !strings.Contains(out, u+": deleted (by serve)") || !strings.Contains(stderr, "message not found") {
		t.Fatalf("delete: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCmd(t, append([]string{"queue", "list"}, cfg...)...)
	if code != 0 || !strings.Contains(out, "-- 0 messages") {
		t.Fatalf("list after delete: %q", out)
	}
	time.Sleep(500 * time.Millisecond)
	if got := f.delivered(t); len(got) != 2 {
		t.Fatalf("a DSN or another message after a silent delete: %v", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, errb.String())
	}

	// The audit log: who, what, outcome; no content.
	ab, err := os.ReadFile(filepath.Join(f.dir, "audit", "audit.jsonl"))
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
		if strings.HasPrefix(string(r.Event), "queue_") {
			if !strings.Contains(r.Actor, fmt.Sprintf("uid %d", os.Getuid())) || r.Source != "admin" {
				t.Errorf("audit record without its actor: %s", l)
			}
			got = append(got, fmt.Sprintf("%s %s %s", r.Event, r.MsgID, r.Reason))
		}
	}
	want := []string{"queue_held " + a + " done", "queue_released " + a + " done", "queue_retried " + c + " done",
		"queue_retried " + u + " " + flushOutcome, "queue_deleted " + u + " done", "queue_deleted 0000000000000-0000000000000000 not_found"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// submitUnreachable submits, as the BAL dr, a message for the peer operator (routed to a
// closed port) and returns its queue ID, found in the spool.
func submitUnreachable(t *testing.T, f *serveFixture) string {
	t.Helper()
	var before map[string]bool
	waitUntil(t, "serve accepting a submission", 20*time.Second, func() bool {
		ms, _ := queue.Inspect(f.spool)
		before = map[string]bool{}
		for _, m := range ms {
			before[m.ID] = true
		}
		cl, err := smtp.DialStartTLS(fmt.Sprintf("127.0.0.1:%d", f.submission), &tls.Config{RootCAs: f.pki.Roots(), ServerName: "localhost"})
		if err != nil {
			return false
		}
		defer cl.Close()
		if err := cl.Auth(sasl.NewPlainClient("", "dr", "secret")); err != nil {
			t.Fatalf("auth: %v", err)
		}
		msg := fmt.Sprintf("From: <dr@%s>\r\nTo: Jean Martin <x@%s>\r\nSubject: Compte rendu du patient\r\n\r\nCORPS SECRET\r\n", ourDomain, peerDomain)
		if err := cl.SendMail("dr@"+ourDomain, []string{"x@" + peerDomain}, strings.NewReader(msg)); err != nil {
			t.Fatalf("submit: %v", err)
		}
		return true
	})
	ms, _ := queue.Inspect(f.spool)
	for _, m := range ms {
		if !before[m.ID] {
			return m.ID
		}
	}
	t.Fatal("the submitted message is not in the spool")
	return ""
}

// What show --headers and list may print: no INS, no display name, no subject, no file name.
func TestQueueRedaction(t *testing.T) {
	for _, c := range []struct{ name, value, want string }{
		{"To", `"Jean Martin" <1234567890123@patient.mssante.fr>, dr@x.fr`, "<INS@patient.mssante.fr>, <dr@x.fr>"},
		{"Received", "from a by b for <1234567890123@Patient.MSSante.fr>", "from a by b for <INS@patient.mssante.fr>"},
		{"Content-Type", `application/pdf; name="CR Jean Martin.pdf"`, "application/pdf"},
		{"Subject", "Compte rendu", ""},
		{"X-MSS-Custom", "anything", ""},
		{"From", "not an address list", ""},
	} {
		got, ok := traceHeader(queue.HeaderField{Name: c.name, Value: c.value})
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s: %q %v, want %q", c.name, got, ok, c.want)
		}
	}
	if got := replyCode("554 4.4.7 message expired: 451 4.4.1 down"); got != "554 4.4.7" {
		t.Errorf("replyCode: %q", got)
	}
	if got := replyCode("dial tcp: refused"); got != "" {
		t.Errorf("replyCode of an error: %q", got)
	}
}
