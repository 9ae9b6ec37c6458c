package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mssante-go/sdk/internal/testenv"
	"github.com/mssante-go/sdk/transport/node"
)

// A reload with a new configuration applies changed routes to delivery at once, names the
// settings that need a restart (result and log line), and, when it fails, applies nothing.
func TestReloadConfig(t *testing.T) {
	s := newSpace(t, "a.mssante.test", "b.mssante.test")
	a, b := s.ops[0], s.ops[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, doneB := s.start(t, ctx, b, nil)

	// a starts with a route to b that nobody answers.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	cfg := s.config(t, a)
	cfg.Delivery.Routes[b.domain] = deadAddr
	var logs testenv.Buffer
	n, err := node.New(ctx, cfg, &node.Options{Listeners: a.lns, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	doneA := make(chan error, 1)
	go func() { doneA <- n.Serve(ctx) }()
	msg := func(seq int) string {
		return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: t\r\nMessage-ID: <%d.reload@test>\r\n\r\nbonjour\r\n", a.appBAL(), b.appBAL(), seq)
	}
	s.submit(t, a, a.appBAL(), b.appBAL(), msg(1))
	waitUntil(t, "a deferred delivery", func() bool { return n.Queue().Stats().Messages == 1 })

	// A reload that fails (the key is unreadable) applies nothing, the routes included.
	good := s.config(t, a)
	key := filepath.Join(a.dir, "server.key.pem")
	keyPEM, _ := os.ReadFile(key)
	os.WriteFile(key, []byte("not a key"), 0o600)
	if res, err := n.ReloadConfig(good); err == nil {
		t.Fatalf("reload with a broken key: %v, no error", res)
	}
	if n.Queue().Stats().Messages != 1 {
		t.Fatal("the failed reload changed the routes")
	}
	os.WriteFile(key, keyPEM, 0o600)

	good.Limits.MaxRecipients = 7
	good.Log.Level = "debug"
	res, err := n.ReloadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Applied, []string{"delivery.routes"}) || !slices.Equal(res.RestartNeeded, []string{"limits.max_recipients", "log.level"}) {
		t.Errorf("result %+v", res)
	}
	if want := "restart needed for: limits.max_recipients, log.level"; !strings.Contains(logs.String(), want) || !strings.Contains(res.String(), want) {
		t.Errorf("no %q in the log:\n%s\nor the result %q", want, logs.String(), res)
	}
	waitUntil(t, "delivery on the new route", func() bool { return len(s.inbox(t, b)) == 1 })

	// The same file again: the routes are in use, the restart is still needed.
	res, err = n.ReloadConfig(good)
	if err != nil || len(res.Applied) != 0 || len(res.RestartNeeded) != 2 {
		t.Errorf("second reload: %+v %v", res, err)
	}
	cancel()
	for _, d := range []chan error{doneA, doneB} {
		if err := <-d; err != nil {
			t.Error(err)
		}
	}
}
