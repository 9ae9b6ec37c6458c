package node_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mssante-go/sdk/internal/peers"
	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/mailbox"
	"github.com/mssante-go/sdk/transport/node"
	"github.com/mssante-go/sdk/transport/queue"
)

// TestNodeProcess is a node of TestPostgresNodesKilledUnderSubmissions: "mssante serve" as
// a child process, on the configuration file it is given, until SIGTERM or SIGKILL. It does
// nothing in a normal run.
func TestNodeProcess(t *testing.T) {
	path := os.Getenv("MSSANTE_NODE_CONFIG")
	if path == "" {
		t.Skip("helper process of TestPostgresNodesKilledUnderSubmissions")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg, err := node.LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Serve(ctx); err != nil {
		t.Fatal(err)
	}
}

// Three nodes, each its own process, over one PostgreSQL ([store] backend = "postgres"):
// messages are submitted across them (SASL EXTERNAL, to the APP BAL of the same operator, so
// that each is queued on one node and delivered by any into the shared store) while node 2
// is killed with SIGKILL and restarted, twice. Every message answered 250 is in the INBOX
// exactly once, no other message is there twice, and the queue ends empty: one final state
// per recipient, the dead node's messages taken over within the lease.
func TestPostgresNodesKilledUnderSubmissions(t *testing.T) {
	total := 2000
	if testing.Short() {
		total = 300
	}
	pg := peers.StartPostgres(t, nil)
	s := newSpace(t, "a.mssante.test")
	a := s.ops[0]
	for _, l := range a.lns {
		l.Close()
	}
	type proc struct {
		config, submission string
		cmd                *exec.Cmd
		exited             chan struct{}
	}
	nodes := make([]*proc, 3)
	for i := range nodes {
		o := &operator{dir: fmt.Sprintf("%s-%d", a.dir, i), domain: a.domain, server: a.server, app: a.app, lns: map[string]net.Listener{}}
		if err := os.MkdirAll(o.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, _, err := o.server.WriteFiles(o.dir, "server"); err != nil {
			t.Fatal(err)
		}
		sub := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		o.store = fmt.Sprintf("[store]\nbackend = \"postgres\"\ndsn = %q\n[node]\nname = \"node-%d\"", pg.DSN(), i)
		o.extra = fmt.Sprintf("[submission]\nlisten = %q\nlisten_tls = \"\"\n[relay]\nlisten = \"127.0.0.1:%d\"\n[log]\nlevel = \"error\"\n", sub, testenv.FreePort(t))
		p := &proc{config: filepath.Join(o.dir, "serve.toml"), submission: sub}
		o.queue = "lease = \"3s\""
		text := s.configTOML(o)
		if err := os.WriteFile(p.config, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := node.LoadConfigFile(p.config); err != nil {
			t.Fatalf("node %d: %v\n%s", i, err, text)
		}
		nodes[i] = p
	}
	start := func(p *proc) {
		t.Helper()
		p.cmd = exec.Command(os.Args[0], "-test.run=^TestNodeProcess$")
		p.cmd.Env = append(os.Environ(), "MSSANTE_NODE_CONFIG="+p.config)
		p.cmd.Stderr = os.Stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p.exited = make(chan struct{})
		go func(c *exec.Cmd, ch chan struct{}) { c.Wait(); close(ch) }(p.cmd, p.exited)
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if c, err := net.Dial("tcp", p.submission); err == nil {
				c.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s not listening after 60 s", p.config)
			}
		}
	}
	for _, p := range nodes {
		start(p)
	}
	t.Cleanup(func() {
		for _, p := range nodes {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(20 * time.Second):
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
	})

	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		refused  atomic.Int64
		next     atomic.Int64
		sent     atomic.Int64
	)
	send := func(worker int) {
		var c *smtp.Client
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		for {
			i := next.Add(1)
			if i > int64(total) {
				return
			}
			id := fmt.Sprintf("<fault%d@a.mssante.test>", i)
			msg := "From: " + a.appBAL() + "\r\nTo: " + a.appBAL() + "\r\nSubject: fault\r\nMessage-ID: " + id + "\r\n\r\nbody\r\n"
			for attempt := 0; ; attempt++ {
				if c == nil {
					p := nodes[(int(i)+worker+attempt)%3]
					var err error
					c, err = smtp.DialStartTLS(p.submission, s.clientTLS(a, a.app))
					if err == nil {
						err = c.Auth(sasl.NewExternalClient(""))
					}
					if err != nil {
						if c != nil {
							c.Close()
							c = nil
						}
						time.Sleep(50 * time.Millisecond)
						continue
					}
				}
				err := c.SendMail(a.appBAL(), []string{a.appBAL()}, strings.NewReader(msg))
				sent.Add(1)
				if err == nil {
					mu.Lock()
					accepted[id] = true
					mu.Unlock()
					break
				}
				refused.Add(1)
				c.Close()
				c = nil
				if attempt > 20 {
					break
				}
			}
			if i%50 == 0 && c != nil { // spread the load over the nodes
				c.Quit()
				c = nil
			}
		}
	}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() { send(w) })
	}
	killed := 0
	for _, at := range []int64{int64(total) / 3, 2 * int64(total) / 3} {
		for next.Load() < at {
			time.Sleep(20 * time.Millisecond)
		}
		nodes[1].cmd.Process.Signal(syscall.SIGKILL)
		<-nodes[1].exited
		killed++
		time.Sleep(500 * time.Millisecond)
		start(nodes[1])
	}
	wg.Wait()
	mu.Lock()
	nAccepted := len(accepted)
	mu.Unlock()
	t.Logf("%d messages accepted of %d, %d refusals or cut sessions retried, node 2 killed %d times", nAccepted, total, refused.Load(), killed)
	if nAccepted < total*9/10 {
		t.Fatalf("only %d of %d messages accepted", nAccepted, total)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := mailbox.OpenPostgres(ctx, pg.DSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := queue.OpenPostgres(ctx, pg.DSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var inbox *mailbox.MailboxInfo
	for {
		inbox, err = st.Mailbox(ctx, a.appBAL(), mailbox.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		if qs := q.Stats(); qs.Messages == 0 && int(inbox.Messages) >= nAccepted {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after 3 min: %d messages in the INBOX, %+v in the queue, %d accepted", inbox.Messages, q.Stats(), nAccepted)
		}
		time.Sleep(200 * time.Millisecond)
	}
	headers, err := st.Headers(ctx, inbox.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	idRE := regexp.MustCompile(`Message-ID: (<fault\d+@a\.mssante\.test>)`)
	for _, h := range headers {
		if m := idRE.FindSubmatch(h); m != nil {
			seen[string(m[1])]++
		}
	}
	for id := range accepted {
		if seen[id] != 1 {
			t.Errorf("%s, answered 250, is in the INBOX %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s is in the INBOX %d times", id, n)
		}
	}
	t.Logf("INBOX: %d messages (%d accepted, %d more committed by a node killed before its 250)", len(seen), nAccepted, len(seen)-nAccepted)
}
